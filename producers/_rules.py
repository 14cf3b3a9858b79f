"""Validation rules, named in the schemas by the ``"modelog.rule"`` attribute.

Each rule is a function ``(value) -> value`` that raises ``ValueError(<the rule in words>)``.
The SDK calls them before publishing; the processor applies the same rules (through the
generated models) to what it reads, and dead-letters what breaks them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

MAX_NAME = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_ARTIFACT_PATH = 1000
MAX_BATCH = 100_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-. /:]*")
_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

NAME_RULE = (
    f"must be 1-{MAX_NAME} characters of letters, digits, '_', '-', '.', ' ', '/', ':' "
    "and start with a letter, digit or '_'"
)


def name(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.fullmatch(value):
        raise ValueError(NAME_RULE)
    return value


def ident(value: Any) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError("must be 1-64 characters of letters, digits, '_' or '-'")
    return value


def param_value(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_PARAM_VALUE:
        raise ValueError(f"must be text of at most {MAX_PARAM_VALUE} characters")
    return value


def tag_value(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
        raise ValueError(f"must be text of at most {MAX_TAG_VALUE} characters")
    return value


def tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of tag name to text")
    for k, v in value.items():
        try:
            name(k)
        except ValueError:
            raise ValueError(f"tag name {k!r} {NAME_RULE}") from None
        try:
            tag_value(v)
        except ValueError as exc:
            raise ValueError(f"tag {k!r} value {exc}") from None
    return value


def tags_nonempty(value: Any) -> dict[str, str]:
    tags(value)
    if not value:
        raise ValueError("must hold at least one tag")
    return value


def nonempty(value: Any) -> Any:
    if not value:
        raise ValueError("must hold at least one item")
    if len(value) > MAX_BATCH:
        raise ValueError(f"must hold at most {MAX_BATCH} items")
    return value


def nonneg(value: Any) -> int:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError("must be 64 lowercase hex digits")
    return value


def artifact_path(value: Any) -> str:
    if (
        not isinstance(value, str) or not value or len(value) > MAX_ARTIFACT_PATH
        or value.startswith("/") or ".." in value.split("/") or "\\" in value or "\x00" in value
    ):
        raise ValueError(f"must be a relative path of at most {MAX_ARTIFACT_PATH} characters without '..' or '\\'")
    return value


# Rules that are only a pattern and a length run inside pydantic-core (no Python call per value):
# rule -> (regex, max length, the rule in words). The words replace pydantic's message.
CONSTRAINTS: dict[str, tuple[str | None, int | None, str]] = {
    "name": (_NAME.pattern, MAX_NAME, NAME_RULE),
    "id": (_ID.pattern, 64, "must be 1-64 characters of letters, digits, '_' or '-'"),
    "sha256": (_SHA256.pattern, 64, "must be 64 lowercase hex digits"),
    "param_value": (None, MAX_PARAM_VALUE, f"must be text of at most {MAX_PARAM_VALUE} characters"),
}

RULES: dict[str, Callable[[Any], Any]] = {
    "name": name,
    "id": ident,
    "param_value": param_value,
    "tags": tags,
    "tags_nonempty": tags_nonempty,
    "nonempty": nonempty,
    "nonneg": nonneg,
    "sha256": sha256,
    "artifact_path": artifact_path,
}


# -- hot-path helpers used by the SDK -------------------------------------------------

def metric_value(value: Any) -> float:
    """A metric value: a real number (int, float, numpy scalar); NaN and +/-inf allowed; bool is not."""
    if isinstance(value, float):
        return value
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise ValueError("must be a real number (int or float; NaN and infinity allowed), not " + type(value).__name__)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a real number (int or float; NaN and infinity allowed), not " + type(value).__name__) from None
    if isinstance(value, complex):  # pragma: no cover - float(complex) already raises
        raise ValueError("must be a real number")
    return out


def step(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np  # numpy integer scalars are common in training loops

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise ValueError
        except (ImportError, ValueError):
            raise ValueError("must be an integer") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("must fit in 64 bits")
    return value


def param_text(value: Any) -> tuple[str, str]:
    """A param value as (text, type name). Scalars only: str, int, float, bool, None."""
    if value is None:
        return "None", "none"
    if isinstance(value, bool):
        return str(value), "bool"
    if isinstance(value, int):
        return str(value), "int"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value), "float"
    if isinstance(value, str):
        return value, "str"
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return param_text(value.item())
    except ImportError:  # pragma: no cover
        pass
    raise ValueError(f"must be a scalar (str, int, float, bool or None), not {type(value).__name__}")

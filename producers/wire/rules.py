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
from urllib.parse import unquote

from modelog.wire.tokens import ROLES, TOKEN_ID_RE, TOKEN_ID_RULE

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


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(/|$)|[A-Za-z]:")  # file:/..., s3://..., a drive C:
STORED_PATH_RULE = ("must be a relative path inside the run: no leading '/', no '..' or '.' segments (also not "
                    "percent-encoded, e.g. %2e%2e), no empty segments, no '\\', no scheme or drive (file:, C:)")


def stored_artifact_path(value: Any) -> str:
    """The strict rule for an artifact's path where it names bytes to store or fetch (SDK, CLI, API).

    :func:`artifact_path` is the rule events are decoded with (permissive: old events stay readable);
    this one also refuses what could escape a directory once joined to it, percent-encoded or not.
    """
    artifact_path(value)
    for form in {value, unquote(value)}:
        segments = form.split("/")
        if (form.startswith("/") or "\\" in form or "\x00" in form or _SCHEME.match(form)
                or any(seg in ("", ".", "..") for seg in segments)):
            raise ValueError(STORED_PATH_RULE)
    return value


# Semantic Versioning 2.0.0, the official regex (semver.org), without a leading "v".
SEMVER_RE = (r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
             r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
             r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
SEMVER_RULE = "must be a semantic version MAJOR.MINOR.PATCH[-prerelease][+build] (semver.org), e.g. 1.2.0"
ALIAS_RE = r"[a-z][a-z0-9_\-]{0,62}"
ALIAS_RULE = "must be 1-63 characters of lowercase letters, digits, '_' or '-', starting with a letter"
STAGES = ("development", "staging", "production", "deprecated", "archived")
PROMOTABLE_STAGES = ("development", "staging", "production")


def version(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError("must be a version number: an integer >= 1")
    return value


def semver(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not re.fullmatch(SEMVER_RE, value)):
        raise ValueError(SEMVER_RULE)
    return value


def alias(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not re.fullmatch(ALIAS_RE, value)):
        raise ValueError(ALIAS_RULE)
    return value


class PartError(ValueError):
    """A rule of a whole record broken by one of its parts: ``field`` names the part (``points``, ``columns.keys``)."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field


def metric_batch(record: Any) -> Any:
    """A ``MetricsLogged`` record: its points as records (``points``) or as arrays (``columns``), exactly one
    of the two, at least one and at most MAX_BATCH points."""
    from modelog.wire import metric_columns

    columns = record.get("columns")
    if columns is None:
        try:
            nonempty(record.get("points"))
        except ValueError as exc:
            raise PartError("points", f"{exc} (or give the batch as columns)") from None
        return record
    if record.get("points"):
        raise PartError("points", "must be empty when columns holds the batch")
    try:
        arrays = metric_columns.check(columns, name)
    except metric_columns.ColumnsError as exc:
        raise PartError(f"columns.{exc.field}", str(exc)) from None
    if arrays.points > MAX_BATCH:
        raise PartError("columns.key_index", f"must hold at most {MAX_BATCH} points")
    return record



def prediction_batch(record: Any) -> Any:
    """A ``PredictionsLogged`` record: one timestamp per request, and every column in one form (lists or
    buffers, decision 0025) holding one value per request; codes within the column's dictionary."""
    from modelog.wire import prediction_columns

    try:
        prediction_columns.check(record)
    except prediction_columns.ColumnsError as exc:
        raise PartError(exc.field, str(exc)) from None
    return record

# Rules that are only a pattern and a length run inside pydantic-core (no Python call per value):
# rule -> (regex, max length, the rule in words). The words replace pydantic's message.
CONSTRAINTS: dict[str, tuple[str | None, int | None, str]] = {
    "name": (_NAME.pattern, MAX_NAME, NAME_RULE),
    "id": (_ID.pattern, 64, "must be 1-64 characters of letters, digits, '_' or '-'"),
    "sha256": (_SHA256.pattern, 64, "must be 64 lowercase hex digits"),
    "param_value": (None, MAX_PARAM_VALUE, f"must be text of at most {MAX_PARAM_VALUE} characters"),
    "semver": (SEMVER_RE, 200, SEMVER_RULE),
    "alias": (ALIAS_RE, 63, ALIAS_RULE),
    "token_id": (TOKEN_ID_RE, 12, TOKEN_ID_RULE),
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
    "version": version,
    "semver": semver,
    "alias": alias,
    "metric_batch": metric_batch,
    "prediction_batch": prediction_batch,
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


# -- datasets and lineage ---------------------------------------------------------------
# Lineage node ids (see docs/lineage.md):
#   run:<run_id>   dataset:<name>@<sha256>   model:<name>/<version>
#   deployment:<model>/<environment>   artifact:<run_id>/<path>

MAX_URI = 4000
MAX_CODE_REF = 1000
MAX_COLUMN_TEXT = 1000
MAX_DESCRIPTION = 8000
NODE_KINDS = ("run", "dataset", "model", "deployment", "artifact")
NODE_RULE = ("must be a lineage node: run:<run_id>, dataset:<name>@<sha256 version>, model:<name>/<version>, "
             "deployment:<model>/<environment> or artifact:<run_id>/<path>")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*")
_HEX_PREFIX = re.compile(r"[0-9a-f]{8,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_node(value: Any, version_prefix: bool = False) -> tuple[str, tuple[str, ...]]:
    """Split a lineage node id into (kind, parts); raise ValueError(NODE_RULE) if it is not one.

    ``version_prefix`` accepts 8-64 hex digits as a dataset version (the CLI resolves the prefix).
    """
    if not isinstance(value, str) or len(value) > MAX_NAME + MAX_ARTIFACT_PATH + 100:
        raise ValueError(NODE_RULE)
    kind, sep, rest = value.partition(":")
    try:
        if not sep or kind not in NODE_KINDS:
            raise ValueError
        if kind == "run":
            return kind, (ident(rest),)
        if kind == "dataset":
            ds, at, ver = rest.rpartition("@")
            ok = (_HEX_PREFIX if version_prefix else _SHA256).fullmatch(ver)
            if not at or not ok:
                raise ValueError
            return kind, (name(ds), ver)
        if kind == "model":
            model, slash, ver = rest.rpartition("/")
            if not slash or not ver.isdigit() or ver.startswith("0") or not ver.isascii():
                raise ValueError
            return kind, (name(model), ver)
        if kind == "deployment":
            model, slash, env = rest.rpartition("/")
            if not slash:
                raise ValueError
            return kind, (name(model), name(env))
        run_id, slash, path = rest.partition("/")
        if not slash:
            raise ValueError
        return kind, (ident(run_id), artifact_path(path))
    except ValueError:
        raise ValueError(NODE_RULE) from None


def node(value: Any) -> str:
    parse_node(value)
    return value


def optional_name(value: Any) -> Any:
    return value if value is None else name(value)


def optional_nonneg(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError("must be an integer >= 0")
    return value


def uri(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_URI or not _URI.fullmatch(value):
        raise ValueError(f"must be a URI with a scheme (file:///..., s3://..., memory://...), at most {MAX_URI} "
                         "characters, without spaces or control characters")
    return value


def code_ref(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not value or len(value) > MAX_CODE_REF
                              or _CONTROL.search(value)):
        raise ValueError(f"must be 1-{MAX_CODE_REF} characters without control characters "
                         "(e.g. git:<commit>:path/to/transform.py)")
    return value


def column_text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_COLUMN_TEXT:
        raise ValueError(f"must be text of at most {MAX_COLUMN_TEXT} characters")
    return value


def optional_text(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_DESCRIPTION):
        raise ValueError(f"must be text of at most {MAX_DESCRIPTION} characters")
    return value


MAX_FACETS = 256 * 1024


def facets_json(value: Any) -> Any:
    """Null, or a JSON object as text (metadata facets, e.g. OpenLineage's) of at most MAX_FACETS characters."""
    if value is None:
        return value
    import json

    if not isinstance(value, str) or len(value) > MAX_FACETS:
        raise ValueError(f"must be a JSON object as text of at most {MAX_FACETS} characters")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"must be a JSON object as text of at most {MAX_FACETS} characters")
    return value


def token_id(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(TOKEN_ID_RE, value):
        raise ValueError(TOKEN_ID_RULE)
    return value


def roles(value: Any) -> list[str]:
    """API token roles (``modelog.wire.tokens.ROLES``): at least one, each a known role."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"must hold at least one role ({', '.join(ROLES)})")
    for role in value:
        if role not in ROLES:
            raise ValueError(f"must hold only roles among {', '.join(ROLES)} (got {role!r})")
    return value


KEY_ID_RE = r"ed25519:[0-9a-f]{32}"


def key_id(value: Any) -> str:
    """A signing key's id (``modelog.wire.signing.key_id_of``): ed25519: and 32 lowercase hex digits."""
    if not isinstance(value, str) or not re.fullmatch(KEY_ID_RE, value):
        raise ValueError("must be ed25519:<32 lowercase hex digits> (modelog keys list shows the ids)")
    return value


RULES.update({
    "key_id": key_id,
    "token_id": token_id,
    "roles": roles,
    "node": node,
    "optional_name": optional_name,
    "optional_nonneg": optional_nonneg,
    "uri": uri,
    "code_ref": code_ref,
    "column_text": column_text,
    "optional_text": optional_text,
    "facets_json": facets_json,
})

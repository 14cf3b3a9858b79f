"""Pydantic models generated from the ``.avsc`` files, so Python can never drift from the schemas.

Avro types map to Python types, unions with null to optionals, and a field's
``"modelog.rule"`` attribute adds the named rule from :mod:`modelog.wire.rules`.
``validate(event_type, record)`` checks a record and raises
:class:`modelog.ValidationError` naming the field path and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, Optional

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, StringConstraints
from typing_extensions import Annotated

from modelog.wire import rules as _rules
from modelog.wire.errors import ValidationError
from modelog.wire.schemas import current_schemas

_PRIMITIVES: dict[str, Any] = {
    "string": StrictStr,
    "long": StrictInt,
    "int": StrictInt,
    "double": float,
    "float": float,
    "boolean": StrictBool,
    "bytes": bytes,
    "null": type(None),
}


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=True)


def _python_type(avro: Any, models: dict[str, type[BaseModel]]) -> Any:
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        return models[avro]
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        inner = _python_type(branches[0], models) if len(branches) == 1 else Any
        return Optional[inner] if "null" in avro else inner
    kind = avro["type"]
    if kind == "record":
        return _record_model(avro, models)
    if kind == "enum":
        return Literal[tuple(avro["symbols"])]
    if kind == "array":
        return list[_python_type(avro["items"], models)]
    if kind == "map":
        return dict[StrictStr, _python_type(avro["values"], models)]
    return _python_type(kind, models)


def _record_model(schema: dict, models: dict[str, type[BaseModel]]) -> type[BaseModel]:
    fullname = schema["name"] if "." in schema["name"] else f"{schema.get('namespace', '')}.{schema['name']}"
    if fullname in models:
        return models[fullname]
    fields: dict[str, Any] = {}
    for f in schema["fields"]:
        typ = _python_type(f["type"], models)
        rule = f.get("modelog.rule")
        if rule in _rules.CONSTRAINTS:
            pattern, max_length, _ = _rules.CONSTRAINTS[rule]
            typ = Annotated[typ, StringConstraints(pattern=f"^(?:{pattern})$" if pattern else None,
                                                   max_length=max_length)]
        elif rule:
            typ = Annotated[typ, AfterValidator(_rules.RULES[rule])]
        default = f.get("default", ...)
        fields[f["name"]] = (typ, default)
    validators = {}
    if schema.get("modelog.rule"):  # a rule of the whole record (MetricsLogged: points or columns)
        whole = _rules.RULES[schema["modelog.rule"]]

        def _record_rule(self):
            whole(self.model_dump())
            return self

        validators["_record_rule"] = pydantic.model_validator(mode="after")(_record_rule)
    model = pydantic.create_model(fullname.rsplit(".", 1)[-1], __base__=_Base, __validators__=validators, **fields)
    models[fullname] = model
    models[fullname.rsplit(".", 1)[-1]] = model
    return model


_RULE_WORDS = {f"^(?:{p})$": words for p, _, words in _rules.CONSTRAINTS.values() if p}


@cache
def event_models() -> dict[str, type[BaseModel]]:
    """The model of every event type, by short name (``RunStarted`` ...)."""
    models: dict[str, type[BaseModel]] = {}
    return {name: _record_model(s.expanded, models) for name, s in current_schemas().items()}


def validate(event_type: str, record: dict[str, Any]) -> None:
    """Check ``record`` against the event's model; raise ValidationError naming the first broken field."""
    try:
        event_models()[event_type].model_validate(record)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        parts = [str(p) for p in err["loc"]]
        part = getattr(err.get("ctx", {}).get("error"), "field", None)  # a record rule names the broken part
        if part:
            parts.append(part)
        loc = ".".join(parts)
        msg = _RULE_WORDS.get(err.get("ctx", {}).get("pattern")) if err["type"] == "string_pattern_mismatch" else None
        if msg is None:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
        raise ValidationError(f"{event_type}.{loc}", err.get("input"), msg) from None


def tag_texts(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tag values as text, each name and value checked; raises ValidationError naming the tag."""
    out = {}
    for k, v in tags.items():
        try:
            _rules.name(k)
        except ValueError as exc:
            raise ValidationError("tag name", k, str(exc)) from None
        text = v if isinstance(v, str) else str(v)
        try:
            _rules.tag_value(text)
        except ValueError as exc:
            raise ValidationError(f"tags[{k!r}]", v, str(exc)) from None
        out[k] = text
    return out

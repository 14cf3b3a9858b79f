"""The .avsc files are the contract: plain fastavro reads them, models mirror them, versions are released."""

import copy
import json
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import load_schema

from factories import same, sample_records
from modelog.wire.codec import Codec
from modelog.wire.models import event_models
from modelog.wire.schemas import current_schemas, fingerprint, released_file, released_schemas
from modelog.schemas import SCHEMA_DIR

EVENT_FILES = sorted(SCHEMA_DIR.glob("modelog.events.*.avsc"))
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_every_issue_event_has_a_schema():
    assert set(current_schemas()) >= {"ExperimentCreated", "RunStarted", "ParamsLogged", "MetricsLogged",
                                      "TagsSet", "ArtifactLogged", "RunEnded"}


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.stem)
def test_plain_fastavro_loads_each_schema_and_round_trips_a_sample(path, tmp_path):
    schema = load_schema(str(path))
    event_type = path.stem.rsplit(".", 1)[-1]
    record = sample_records()[event_type]
    buf = tmp_path / "x.avro"
    with buf.open("wb") as fh:
        fastavro.writer(fh, schema, [record])
    with buf.open("rb") as fh:
        (back,) = list(fastavro.reader(fh))
    assert back["envelope"]["event_id"] == record["envelope"]["event_id"]
    first = schema["fields"][1]["name"]  # the first payload field, after the envelope
    assert back[first] == record[first]


@pytest.mark.parametrize("event_type", sorted(current_schemas()))
def test_current_schema_is_released(event_type):
    schema = current_schemas()[event_type]
    assert released_file(schema).exists(), (
        f"{event_type} changed without a release: run `modelog schemas --freeze` and add samples "
        "(python tests/samples/make_samples.py)")
    released = json.loads(released_file(schema).read_text())
    assert fingerprint(released) == schema.fingerprint


def _avro_fields(schema: dict) -> set[str]:
    return {f["name"] for f in schema["fields"]}


@pytest.mark.parametrize("event_type", sorted(current_schemas()))
def test_models_mirror_schema_fields(event_type):
    schema = current_schemas()[event_type].expanded
    model = event_models()[event_type]
    assert set(model.model_fields) == _avro_fields(schema)
    # nested records too
    for f in schema["fields"]:
        if isinstance(f["type"], dict) and f["type"].get("type") == "record":
            nested = model.model_fields[f["name"]].annotation
            assert set(nested.model_fields) == _avro_fields(f["type"])


@pytest.mark.parametrize("event_type", sorted(current_schemas()))
def test_every_sample_record_is_valid(event_type):
    event_models()[event_type].model_validate(sample_records()[event_type])


SAMPLE_FILES = sorted(SAMPLES.glob("*.bin"))


def _from_json(v):
    if v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    if isinstance(v, dict) and set(v) == {"$bytes_hex"}:
        return bytes.fromhex(v["$bytes_hex"])
    if isinstance(v, dict):
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def _contains(decoded, original) -> bool:
    """Every field the old writer wrote reads back the same (fields added since, nested ones included, may
    be there too, with their defaults)."""
    if isinstance(original, dict):
        return isinstance(decoded, dict) and all(k in decoded and _contains(decoded[k], v) for k, v in original.items())
    if isinstance(original, list) and original and isinstance(original[0], dict):
        return isinstance(decoded, list) and len(decoded) == len(original) and all(
            _contains(d, o) for d, o in zip(decoded, original))
    return same(decoded, original)


def test_samples_exist_for_every_released_version():
    released = {s.fingerprint.hex() for s in released_schemas().values()}
    sampled = {p.stem.split(".")[1] for p in SAMPLE_FILES}
    assert released <= sampled


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_old_samples_decode_with_current_reader(path):
    decoded = Codec().decode(path.read_bytes())
    original = _from_json(json.loads(path.with_suffix(".json").read_text()))
    assert decoded.event_type == path.stem.split(".")[0]
    assert decoded.writer_id == path.stem.split(".")[1]
    assert _contains(decoded.record, original)


def test_schema_resolution_fills_defaults_for_fields_an_old_writer_lacked():
    """An older writer without the optional 'description' field still decodes: the default fills in."""
    current = current_schemas()["ExperimentCreated"]
    old = json.loads(json.dumps(current.expanded))
    old["fields"] = [f for f in old["fields"] if f["name"] != "description"]
    codec = Codec()
    from modelog.wire.schemas import _make

    old_schema = _make(old)
    codec._writers[old_schema.fingerprint] = old_schema
    import io

    buf = io.BytesIO()
    record = {k: v for k, v in sample_records()["ExperimentCreated"].items() if k != "description"}
    fastavro.schemaless_writer(buf, old_schema.parsed, record)
    data = b"\xc3\x01" + old_schema.fingerprint + buf.getvalue()
    decoded = codec.decode(data)
    assert decoded.record["description"] is None
    assert decoded.record["experiment"] == "credit-risk"


def test_processor_rule_plan_covers_every_rule_in_the_schemas():
    from modelog.wire.rulecheck import plan

    for event_type, schema in current_schemas().items():
        declared = json.dumps(schema.expanded).count('"modelog.rule"')
        assert len(plan(event_type)) == declared, event_type


def _bad_points(r):
    r.update(columns=None, points=[{"key": k, "value": 1.0, "step": 0, "timestamp": 1} for k in ("a", "b", "bad key!")])


@pytest.mark.parametrize("event_type, mutate, field", [
    ("MetricsLogged", _bad_points, "MetricsLogged.points.2.key"),
    ("MetricsLogged", lambda r: r["columns"].update(keys=["loss", "bad key!"]), "MetricsLogged.columns.keys"),
    ("MetricsLogged", lambda r: r["columns"].update(keys=["loss"]), "MetricsLogged.columns.key_index"),
    ("MetricsLogged", lambda r: r["columns"].update(keys=["loss", "loss"]), "MetricsLogged.columns.keys"),
    ("MetricsLogged", lambda r: r["columns"].update(steps=b"\x00" * 12), "MetricsLogged.columns.steps"),
    ("MetricsLogged", lambda r: r["columns"].update(values=b"\x00" * 24), "MetricsLogged.columns.values"),
    ("MetricsLogged", lambda r: r.update(points=[{"key": "a", "value": 1.0, "step": 0, "timestamp": 1}]),
     "MetricsLogged.points"),
    ("MetricsLogged", lambda r: r.update(columns=None), "MetricsLogged.points"),
    ("ParamsLogged", lambda r: r["params"][1].update(value="x" * 7000), "ParamsLogged.params.1.value"),
    ("RunStarted", lambda r: r.update(tags={"ok": "y" * 9000}), "RunStarted.tags"),
    ("ArtifactLogged", lambda r: r.update(path="../etc/passwd"), "ArtifactLogged.path"),
    ("ArtifactLogged", lambda r: r.update(sha256="XYZ"), "ArtifactLogged.sha256"),
    ("TagsSet", lambda r: r.update(tags={}), "TagsSet.tags"),
])
def test_processor_rule_check_and_models_agree(event_type, mutate, field):
    """The processor's fast rule check and the SDK's pydantic models reject the same records."""
    from modelog import ValidationError
    from modelog.wire.models import validate
    from modelog.wire.rulecheck import check

    record = copy.deepcopy(sample_records()[event_type])
    check(event_type, record)
    validate(event_type, record)
    mutate(record)
    with pytest.raises(ValidationError) as fast:
        check(event_type, record)
    with pytest.raises(ValidationError) as full:
        validate(event_type, record)
    assert fast.value.field == field
    assert full.value.field.startswith(field)

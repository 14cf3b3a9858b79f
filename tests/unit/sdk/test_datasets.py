"""Datasets in the SDK: content hashing, schema inference, the events published, and what is refused."""

import hashlib
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import modelog
from modelog import Client, DatasetVersion, MemoryEmitter, NoActiveRunError, Settings, ValidationError
from modelog.sdk.datasets import dataframe_columns, describe, hash_dataframe, hash_directory, hash_file
from modelog.wire.models import validate


@pytest.fixture
def client(tmp_path):
    return Client(Settings.load(env={}, home=tmp_path, linger_ms=1), emitter=MemoryEmitter())


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": np.arange(5, dtype="int64"),
        "income": [1.5, np.nan, 3.25, -0.0, 1e300],
        "city": ["Oslo", None, "Lima", "Pune", "Åre"],
        "ok": [True, False, True, True, False],
        "at": pd.to_datetime(["2024-01-01T00:00", None, "2024-03-01T12:00", "1970-01-01T00:00", "2262-04-11T00:00"]),
    })


# -- hashing -------------------------------------------------------------------------

def test_streaming_file_hash_equals_hashlib_on_the_whole_file(tmp_path):
    data = os.urandom(3 * (1 << 20) + 12345)  # several chunks and a partial one
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert hash_file(path) == (hashlib.sha256(data).hexdigest(), len(data))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty) == (hashlib.sha256(b"").hexdigest(), 0)


def test_directory_hash_is_the_documented_construction(tmp_path):
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "b.csv").write_bytes(b"x\n1\n")
    (root / "sub" / "a.csv").write_bytes(b"y\n2\n")
    expected = hashlib.sha256(b"modelog-directory-v1\n")
    for rel, body in sorted([("b.csv", b"x\n1\n"), ("sub/a.csv", b"y\n2\n")]):
        expected.update(rel.encode() + b"\0" + hashlib.sha256(body).hexdigest().encode() + b"\n")
    assert hash_directory(root) == (expected.hexdigest(), 8)
    (root / "sub" / "a.csv").rename(root / "sub" / "c.csv")  # same bytes, another name: another version
    assert hash_directory(root)[0] != expected.hexdigest()


def test_dataframe_hash_is_the_documented_encoding():
    def feed(h, b):
        h.update(struct.pack("<Q", len(b)) + b)

    df = pd.DataFrame({"a": [1, 2], "s": ["x", None]})
    h = hashlib.sha256(b"modelog-dataframe-v1\0")
    h.update(struct.pack("<QQ", 2, 2))
    feed(h, b"a"), feed(h, b"int64"), feed(h, np.packbits([0, 0]).tobytes())
    feed(h, np.array([1, 2], "<i8").tobytes())
    feed(h, b"s"), feed(h, b"string"), feed(h, np.packbits([0, 1]).tobytes())
    feed(h, np.array([0, 1, 1], "<i8").tobytes()), feed(h, b"x")
    assert hash_dataframe(df) == h.hexdigest()


def test_same_content_same_version_in_another_process(tmp_path):
    """No dependence on Python's salted hash(), memory addresses or process state."""
    csv = tmp_path / "data.csv"
    frame().to_csv(csv, index=False)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_datasets import frame
        from modelog.sdk.datasets import hash_dataframe, hash_file
        print(hash_dataframe(frame()), hash_file({str(csv)!r})[0])
    """)
    outs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        outs.add(out.stdout.strip())
    assert outs == {f"{hash_dataframe(frame())} {hash_file(csv)[0]}"}


def test_a_file_and_a_reread_of_it_keep_their_versions(tmp_path, client):
    csv = tmp_path / "data.csv"
    frame().to_csv(csv, index=False)
    first = client.register_dataset("d", csv)
    copy = tmp_path / "elsewhere.csv"
    copy.write_bytes(csv.read_bytes())
    again = client.register_dataset("d", copy)
    assert first.version == again.version == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert first.uri != again.uri and again.uri == copy.resolve().as_uri()
    # a DataFrame read twice from the file, or round-tripped through Parquet, is one version
    assert hash_dataframe(pd.read_csv(csv)) == hash_dataframe(pd.read_csv(csv))
    pq.write_table(pa.Table.from_pandas(frame(), preserve_index=False), tmp_path / "d.parquet")
    assert hash_dataframe(pd.read_parquet(tmp_path / "d.parquet")) == hash_dataframe(frame())
    assert hash_dataframe(pq.read_table(tmp_path / "d.parquet")) == hash_dataframe(frame())  # an Arrow table too


@pytest.mark.parametrize("change", [
    lambda df: df[["income", "id", "city", "ok", "at"]],           # column order
    lambda df: df.assign(id=df["id"].astype("float64")),            # dtype: int64 -> double
    lambda df: df.assign(id=df["id"].astype("int32")),              # dtype: int64 -> int32
    lambda df: df.assign(city=df["city"].astype("category")),       # dtype: string -> dictionary
    lambda df: df.rename(columns={"city": "town"}),                 # a name
    lambda df: df.assign(income=df["income"].fillna(0.0)),          # a null becomes a value
    lambda df: df.assign(income=df["income"].replace(-0.0, 1e-300)),  # one value
    lambda df: df.iloc[::-1].reset_index(drop=True),                # row order
    lambda df: df.iloc[:4],                                         # a row fewer
    lambda df: df.set_index("city"),                                # a named index is hashed first: another order
])
def test_any_change_of_columns_types_or_values_changes_the_version(change):
    assert hash_dataframe(change(frame().copy())) != hash_dataframe(frame())


@pytest.mark.parametrize("same", [
    lambda df: df.assign(id=df["id"].astype("Int64")),                            # nullable int without nulls
    lambda df: df.assign(city=df["city"].astype(object)),                         # object strings (pandas 2)
    lambda df: df.assign(city=df["city"].astype("string")),                       # StringDtype
    lambda df: df.assign(income=df["income"].astype("Float64")),                  # nullable float: NaN -> NA
    lambda df: df.assign(at=df["at"].astype("datetime64[s]")),                    # another time unit
    lambda df: df.set_axis(range(10, 15)),                                         # an unnamed index is ignored
    lambda df: df.set_index("id"),                          # a named index is a column in front (id already is)
    lambda df: pa.Table.from_pandas(df, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype),
])
def test_representation_details_do_not_change_the_version(same):
    assert hash_dataframe(same(frame().copy())) == hash_dataframe(frame())


def test_filtered_frames_hash_like_their_reset_copies():
    df = frame()
    kept = df[df["ok"]]
    assert list(kept.index) == [0, 2, 3]
    assert hash_dataframe(kept) == hash_dataframe(kept.reset_index(drop=True))


# -- schema inference ---------------------------------------------------------------------

def test_dataframe_schema(tmp_path):
    assert dataframe_columns(frame()) == (("id", "int64"), ("income", "double"), ("city", "string"),
                                          ("ok", "bool"), ("at", "timestamp[ns]"))
    tz = pd.DataFrame({"t": pd.to_datetime(["2024-01-01T00:00Z"]), "c": pd.Categorical(["a"], ordered=True)})
    assert dataframe_columns(tz) == (("t", "timestamp[ns, tz=UTC]"), ("c", "dictionary<string, ordered>"))
    content = describe(frame(), "my data")
    assert (content.row_count, content.media_type) == (5, "application/x-pandas-dataframe")
    # the frame's in-memory size, values included (deep), index excluded
    assert content.uri == "memory://my%20data"
    assert content.size_bytes == int(frame().memory_usage(deep=True, index=False).sum())


def test_csv_schema_and_rows_through_pyarrow(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text('id,name,score\n1,"multi\nline",0.5\n2,b,1.5\n3,c,\n')
    content = describe(csv, "a")
    assert content.columns == (("id", "int64"), ("name", "string"), ("score", "double"))
    assert (content.row_count, content.media_type, content.size_bytes) == (3, "text/csv", csv.stat().st_size)
    assert content.uri == csv.resolve().as_uri()
    tsv = tmp_path / "a.tsv"
    tsv.write_text("x\ty\n1\ta\n")
    assert describe(tsv, "t").columns == (("x", "int64"), ("y", "string"))
    import gzip

    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(b"x,y\n1,a\n2,b\n"))
    content = describe(gz, "g")
    assert (content.columns, content.row_count, content.size_bytes) == (
        (("x", "int64"), ("y", "string")), 2, gz.stat().st_size)


def test_csv_whose_later_rows_break_the_inferred_types_still_counts_rows(tmp_path):
    csv = tmp_path / "late.csv"
    lines = ["n"] + [str(i) for i in range(200_000)] + ["not-a-number"]
    csv.write_text("\n".join(lines) + "\n")
    content = describe(csv, "late")
    assert content.columns == (("n", "int64"),)  # inferred from the first block
    assert content.row_count == 200_001


def test_parquet_file_and_directory(tmp_path):
    table = pa.table({"a": pa.array([1, 2, 3], pa.int32()), "b": ["x", "y", "z"]})
    pq.write_table(table, tmp_path / "one.parquet")
    content = describe(tmp_path / "one.parquet", "p")
    assert content.columns == (("a", "int32"), ("b", "string"))
    assert (content.row_count, content.media_type) == (3, "application/vnd.apache.parquet")
    part = tmp_path / "parts"
    part.mkdir()
    pq.write_table(table, part / "part-0.parquet")
    pq.write_table(table.slice(0, 1), part / "part-1.parquet")
    (part / "_SUCCESS").write_bytes(b"")
    content = describe(part, "parts")
    assert (content.columns, content.row_count, content.media_type) == (
        (("a", "int32"), ("b", "string")), 4, "inode/directory")
    assert content.version == hash_directory(part)[0]


def test_other_files_have_no_schema(tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00\x01")
    content = describe(blob, "w")
    assert (content.columns, content.row_count, content.media_type) == ((), None, "application/octet-stream")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    assert describe(broken, "b").columns == ()


# -- what is published -----------------------------------------------------------------------

def test_log_dataset_publishes_the_version_and_the_consumed_edge(client, tmp_path):
    csv = tmp_path / "train.csv"
    frame().to_csv(csv, index=False)
    with client.start_run(experiment="e") as run:
        train = run.log_dataset("applications", csv, role="train", description="Q3", tags={"src": "crm"})
        valid = run.log_dataset("applications-valid", frame(), role="validation")
        again = run.log_dataset("applications", csv, role="train")
    assert isinstance(train, DatasetVersion) and (train.node, train.uri) == (again.node, again.uri)
    assert (train.description, again.description) == ("Q3", None)
    assert train.node == f"dataset:applications@{hashlib.sha256(csv.read_bytes()).hexdigest()}"
    assert (train.row_count, train.columns[0], train.tags) == (5, ("id", "int64"), {"src": "crm"})
    assert valid.uri == "memory://applications-valid" and valid.version == hash_dataframe(frame())
    logged = [e for e in client.emitter.events if e.event_type == "DatasetVersionLogged"]
    edges = [e for e in client.emitter.events if e.event_type == "LineageRecorded"]
    for e in logged + edges:
        validate(e.event_type, e.record)
    assert [e.key for e in logged] == ["dataset:applications", "dataset:applications-valid", "dataset:applications"]
    assert logged[0].record["envelope"]["entity"] == {"type": "dataset", "key": "dataset:applications"}
    rec = logged[0].record
    assert (rec["version"], rec["row_count"], rec["media_type"], rec["description"], rec["derived_from"]) == (
        train.version, 5, "text/csv", "Q3", [])
    assert rec["columns"][:2] == [{"name": "id", "type": "int64"}, {"name": "income", "type": "double"}]
    assert [(e.record["src"], e.record["relation"], e.record["dst"], e.record["role"], e.key) for e in edges] == [
        (train.node, "consumed", f"run:{run.id}", "train", f"run:{run.id}"),
        (valid.node, "consumed", f"run:{run.id}", "validation", f"run:{run.id}"),
        (train.node, "consumed", f"run:{run.id}", "train", f"run:{run.id}"),
    ]


def test_register_dataset_with_derivation_and_user_declared_edges(client, tmp_path):
    raw_csv = tmp_path / "raw.csv"
    frame().to_csv(raw_csv, index=False)
    raw = client.register_dataset("raw", raw_csv)
    clean = client.register_dataset("clean", frame().dropna(), derived_from=[raw, f"dataset:other@{'a' * 64}"],
                                    transform="dropna", code_ref="git:abc123:etl/clean.py")
    rec = client.emitter.events[-1].record
    assert rec["derived_from"] == [
        {"dataset": "raw", "version": raw.version, "transform": "dropna", "code_ref": "git:abc123:etl/clean.py"},
        {"dataset": "other", "version": "a" * 64, "transform": "dropna", "code_ref": "git:abc123:etl/clean.py"}]
    assert clean.row_count == 4 and clean.version == hash_dataframe(frame().dropna())
    client.record_lineage(clean, "consumed", "run:r1", role="test")
    client.record_lineage("model:credit/3", "deployed", "deployment:credit/production")
    e1, e2 = client.emitter.events[-2:]
    assert (e1.record["src"], e1.record["dst"], e1.key, e1.record["envelope"]["entity"]["type"]) == (
        clean.node, "run:r1", "run:r1", "run")
    assert (e2.record["relation"], e2.key) == ("deployed", "deployment:credit/production")


def test_module_level_verbs(tmp_path):
    c = modelog.configure(Settings.load(env={}, home=tmp_path, linger_ms=1), emitter=MemoryEmitter())
    with pytest.raises(NoActiveRunError):
        modelog.log_dataset("d", frame())
    with modelog.start_run(experiment="e") as run:
        dv = modelog.log_dataset("d", frame(), role="test")
    reg = modelog.register_dataset("d2", frame(), derived_from=dv, transform="copy")
    modelog.record_lineage(run, "produced", reg)
    types = [e.event_type for e in c.emitter.events]
    assert types.count("DatasetVersionLogged") == 2 and types.count("LineageRecorded") == 2
    last = c.emitter.events[-1].record
    assert (last["src"], last["relation"], last["dst"]) == (f"run:{run.id}", "produced", reg.node)


@pytest.mark.parametrize("call, field, rule", [
    (lambda c, r: r.log_dataset("bad name!", "x"), "name", "letters"),
    (lambda c, r: r.log_dataset("d", frame(), role="no role?"), "role", "letters"),
    (lambda c, r: r.log_dataset("d", "/does/not/exist"), "data", "existing file"),
    (lambda c, r: r.log_dataset("d", [1, 2, 3]), "data", "DataFrame"),
    (lambda c, r: r.log_dataset("d", frame(), uri="no scheme"), "uri", "scheme"),
    (lambda c, r: r.log_dataset("d", frame(), tags={"bad?": "x"}), "tag name", "letters"),
    (lambda c, r: r.log_dataset("d", frame(), description="x" * 8001), "description", "8000"),
    (lambda c, r: c.register_dataset("d", frame(), transform="t"), "transform", "needs derived_from"),
    (lambda c, r: c.register_dataset("d", frame(), derived_from=["run:abc"]), "derived_from[0]", "dataset version"),
    (lambda c, r: c.register_dataset("d", frame(), derived_from=["dataset:x@123"]), "derived_from[0]", "lineage node"),
    (lambda c, r: c.register_dataset("d", frame(), derived_from=[f"dataset:x@{'a' * 64}"], code_ref="a\nb"),
     "code_ref", "control"),
    (lambda c, r: c.record_lineage("dataset:x", "consumed", r), "src", "lineage node"),
    (lambda c, r: c.record_lineage(f"dataset:x@{'a' * 64}", "used", r), "relation", "consumed, produced"),
    (lambda c, r: c.record_lineage(f"dataset:x@{'a' * 64}", "deployed", r), "src", "model"),
    (lambda c, r: c.record_lineage(r, "consumed", f"dataset:x@{'a' * 64}"), "src", "dataset or artifact"),
    (lambda c, r: c.record_lineage("model:m/1", "derived", "model:m/1"), "dst", "differ"),
    (lambda c, r: c.record_lineage("model:m/0", "deployed", "deployment:m/prod"), "src", "lineage node"),
])
def test_bad_input_is_rejected_before_publishing(client, call, field, rule):
    with client.start_run(experiment="e") as run:
        before = len(client.emitter.events)
        with pytest.raises(ValidationError) as err:
            call(client, run)
        assert err.value.field == field
        assert rule in err.value.rule, err.value.rule
        assert len(client.emitter.events) == before, "nothing may be published for a rejected call"


def test_log_dataset_after_the_run_ended_is_an_error(client):
    with client.start_run(experiment="e") as run:
        pass
    with pytest.raises(modelog.ModelogError, match="has ended"):
        run.log_dataset("d", frame())

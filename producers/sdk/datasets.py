"""Datasets and lineage: content hashing, schema inference, and the verbs that publish them.

A dataset version is identified by the sha256 of its content, so logging the same
content twice is one version:

* **file**: the sha256 of its bytes, read in 1 MiB chunks (never whole in memory).
* **directory**: the sha256 of ``"modelog-directory-v1\\n"`` followed by one line
  ``<relative posix path>\\0<file sha256>\\n`` per file, sorted by path (hidden files included).
* **DataFrame** (pandas; a pyarrow Table is converted to one): the sha256 of a canonical
  encoding (``modelog-dataframe-v1``): row and column counts, then per column, in order,
  its name, its logical type, its null mask and its values as little-endian fixed-width
  numbers (strings: UTF-8 with 64-bit offsets). Logical types normalise representation
  details, so the hash is stable across processes, platforms and pandas versions:
  ``int64`` and nullable ``Int64`` are both ``int64``; NumPy ``object`` strings, pandas'
  ``str``/``string`` dtypes and Arrow strings are all ``string``; datetimes of any unit are
  ``timestamp[ns]`` (tz-aware ones compared in UTC, the zone named in the type). NaN, None,
  NA and NaT are nulls. Column order, names, types and values all count; an unnamed index
  does not (it is row position, an artefact of filtering), a named one is hashed like a
  column in front. Objects of other types are hashed by ``type name + str(value)``.

The hash of a DataFrame is not the hash of a CSV file holding the same rows: a file is
identified by its bytes, a frame by its logical content.

Schema inference: DataFrames from their dtypes; CSV/TSV (optionally .gz/.bz2/.zst), Parquet
and Arrow IPC/Feather files with pyarrow (CSV types from pyarrow's inference on the first
block); a directory of Parquet files from its first file (rows summed); anything else has
no columns and an unknown row count.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import struct
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelog.wire import rules as _rules
from modelog.wire.errors import ValidationError
from modelog.wire.models import tag_texts, validate

if TYPE_CHECKING:
    import pandas

    from modelog.sdk.client import Client
    from modelog.wire.envelope import Event
    from modelog.sdk.tracking import Run

CHUNK = 1 << 20
DATAFRAME_MEDIA_TYPE = "application/x-pandas-dataframe"
DIRECTORY_MEDIA_TYPE = "inode/directory"
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.file"
RELATIONS = ("consumed", "produced", "derived", "deployed")
# which node kinds each relation may join: relation -> (allowed src kinds, allowed dst kinds)
EDGE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "consumed": (("dataset", "artifact", "model"), ("run",)),
    "produced": (("run",), ("dataset", "artifact", "model")),
    "derived": (("dataset", "artifact", "model"), ("dataset", "artifact", "model")),
    "deployed": (("model",), ("deployment",)),
}


@dataclass(frozen=True)
class DatasetVersion:
    """One version of a dataset, as logged. ``node`` is its lineage id ``dataset:<name>@<version>``."""

    name: str
    version: str  # sha256 hex of the content
    uri: str
    columns: tuple[tuple[str, str], ...]  # (name, type)
    row_count: int | None
    size_bytes: int
    media_type: str
    description: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def node(self) -> str:
        return f"dataset:{self.name}@{self.version}"

    def __repr__(self) -> str:
        return f"<DatasetVersion {self.name}@{self.version[:12]} rows={self.row_count} uri={self.uri}>"


@dataclass(frozen=True)
class Content:
    """What hashing and inspecting some data found."""

    version: str
    uri: str
    columns: tuple[tuple[str, str], ...]
    row_count: int | None
    size_bytes: int
    media_type: str


# -- files ---------------------------------------------------------------------------

def hash_file(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _directory_files(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def hash_directory(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256 hex, total size) of a directory: sorted relative paths and the hash of each file."""
    root = Path(path)
    h = hashlib.sha256(b"modelog-directory-v1\n")
    size = 0
    for f in _directory_files(root):
        digest, n = hash_file(f)
        size += n
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + digest.encode() + b"\n")
    return h.hexdigest(), size


def _arrow_columns(schema: Any) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, str(f.type)) for f in schema)


def _csv_delimiter(name: str) -> str:
    return "\t" if ".tsv" in name else ","


def _is_csv(name: str) -> bool:
    stem = name.lower()
    for ext in (".gz", ".bz2", ".zst"):
        stem = stem.removesuffix(ext)
    return stem.endswith((".csv", ".tsv"))


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def _csv_schema(path: Path) -> tuple[tuple[tuple[str, str], ...], int | None]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    parse = pacsv.ParseOptions(delimiter=_csv_delimiter(path.name))
    try:
        reader = pacsv.open_csv(path, parse_options=parse)
    except (pa.ArrowInvalid, OSError):
        return (), None
    columns = _arrow_columns(reader.schema)
    rows = 0
    try:
        for batch in reader:
            rows += batch.num_rows
        return columns, rows
    except pa.ArrowInvalid:  # a later block broke the types inferred from the first: count as text
        pass
    as_text = pacsv.ConvertOptions(column_types={name: pa.string() for name, _ in columns})
    try:
        return columns, sum(b.num_rows for b in pacsv.open_csv(path, parse_options=parse, convert_options=as_text))
    except pa.ArrowInvalid:
        return columns, None


def inspect_file(path: Path) -> tuple[tuple[tuple[str, str], ...], int | None, str]:
    """(columns, row count, media type) of a file: read through pyarrow for CSV, Parquet and Arrow files."""
    import pyarrow as pa

    name = path.name
    if _is_parquet(path):
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path).metadata
            return _arrow_columns(meta.schema.to_arrow_schema()), meta.num_rows, PARQUET_MEDIA_TYPE
        except (pa.ArrowException, OSError):
            return (), None, PARQUET_MEDIA_TYPE
    if _is_csv(name):
        columns, rows = _csv_schema(path)
        return columns, rows, "text/tab-separated-values" if ".tsv" in name.lower() else "text/csv"
    if path.suffix.lower() in (".arrow", ".feather", ".ipc"):
        try:
            with pa.memory_map(str(path)) as src:
                reader = pa.ipc.open_file(src)
                rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
                return _arrow_columns(reader.schema), rows, ARROW_MEDIA_TYPE
        except (pa.ArrowException, OSError):
            return (), None, ARROW_MEDIA_TYPE
    return (), None, mimetypes.guess_type(name)[0] or "application/octet-stream"


def inspect_directory(root: Path) -> tuple[tuple[tuple[str, str], ...], int | None]:
    """A directory of Parquet files (a partitioned table): the first file's schema, rows summed."""
    files = [f for f in _directory_files(root) if not f.name.startswith((".", "_"))]
    if not files or not all(_is_parquet(f) for f in files):
        return (), None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metas = [pq.ParquetFile(f).metadata for f in files]
    except (pa.ArrowException, OSError):
        return (), None
    return _arrow_columns(metas[0].schema.to_arrow_schema()), sum(m.num_rows for m in metas)


# -- DataFrames ----------------------------------------------------------------------

_FLOAT_NAMES = {2: "halffloat", 4: "float", 8: "double"}


def _feed(h: Any, data: bytes | memoryview) -> None:
    """Length-prefixed, so adjacent fields can never run into each other."""
    h.update(struct.pack("<Q", len(data)))
    h.update(data)


def _string_buffers(values: Any) -> tuple[memoryview, memoryview]:
    """64-bit offsets and UTF-8 data of a sequence of str/None (nulls are empty)."""
    import numpy as np
    import pyarrow as pa

    arr = pa.array(values, type=pa.large_string(), from_pandas=True)
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype="<i8", count=n + 1)
    data = arr.buffers()[2]
    end = int(offsets[-1]) if n else 0
    return memoryview(offsets.tobytes()), memoryview(data)[:end] if data is not None else memoryview(b"")


def _is_arrow_dictionary(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_dictionary(t)


def _column(s: pandas.Series, mask: Any) -> tuple[str, list[bytes | memoryview]]:
    """(logical type, value blocks) of one column; nulls (``mask``) are zero / empty in the values."""
    import numpy as np
    import pandas as pd
    from pandas.api import types as pt

    dtype = s.dtype
    if isinstance(dtype, pd.ArrowDtype) and _is_arrow_dictionary(dtype.pyarrow_dtype):  # as a Categorical
        import pyarrow as pa

        s = pa.array(s.array).to_pandas()
        dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = pd.Series(dtype.categories)
        inner, blocks = _column(categories, categories.isna().to_numpy(dtype=bool))
        codes = s.cat.codes.to_numpy().astype("<i8")
        label = f"dictionary<{inner}{', ordered' if dtype.ordered else ''}>"
        return label, [*blocks, memoryview(codes.tobytes())]
    if pt.is_bool_dtype(dtype):
        return "bool", [s.to_numpy(dtype=bool, na_value=False).astype("u1").tobytes()]
    if pt.is_integer_dtype(dtype):
        npd = np.dtype(getattr(dtype, "numpy_dtype", dtype))
        label = f"{'u' if npd.kind == 'u' else ''}int{npd.itemsize * 8}"
        return label, [s.to_numpy(dtype=npd, na_value=0).astype(npd.newbyteorder("<")).tobytes()]
    if pt.is_float_dtype(dtype):
        npd = np.dtype(getattr(dtype, "numpy_dtype", dtype))
        values = s.to_numpy(dtype=npd, na_value=0).astype(npd.newbyteorder("<"))
        values[mask] = 0
        return _FLOAT_NAMES.get(npd.itemsize, f"float{npd.itemsize * 8}"), [values.tobytes()]
    if pt.is_datetime64_any_dtype(dtype) or pt.is_timedelta64_dtype(dtype):
        try:
            if pt.is_timedelta64_dtype(dtype):
                label, values = "duration[ns]", s.to_numpy(dtype="timedelta64[ns]")
            else:
                tz = getattr(dtype, "tz", None)
                label = f"timestamp[ns, tz={tz}]" if tz is not None else "timestamp[ns]"
                values = (s.dt.tz_convert(None) if tz is not None else s).to_numpy(dtype="datetime64[ns]")
            ints = values.view("i8").astype("<i8")
            ints[mask] = 0
            return label, [ints.tobytes()]
        except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
            pass  # beyond the nanosecond range: hashed as text below
    if pt.is_string_dtype(dtype) and (not pt.is_object_dtype(dtype) or pt.infer_dtype(s, skipna=True) in ("string", "empty")):
        return "string", list(_string_buffers(s.to_numpy(dtype=object, na_value=None)))
    texts = [None if m else f"{type(v).__name__}:{v}" for v, m in zip(s.to_numpy(dtype=object), mask)]
    return "object", list(_string_buffers(texts))


def _frame(data: Any) -> pandas.DataFrame:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        df = data
    else:
        df = data.to_pandas()  # a pyarrow Table
    if any(n is not None for n in df.index.names):
        df = df.reset_index()
    return df


def dataframe_columns(df: pandas.DataFrame) -> tuple[tuple[str, str], ...]:
    """(name, logical type) per column, as hashed."""
    return _describe_frame(_frame(df))[1]


def hash_dataframe(data: Any) -> str:
    """The content version of a DataFrame (or pyarrow Table): see the module docstring."""
    return _describe_frame(_frame(data))[0]


def _describe_frame(df: pandas.DataFrame) -> tuple[str, tuple[tuple[str, str], ...]]:
    import numpy as np

    h = hashlib.sha256(b"modelog-dataframe-v1\0")
    h.update(struct.pack("<QQ", len(df), df.shape[1]))
    columns = []
    for i, c in enumerate(df.columns):
        s = df.iloc[:, i]
        mask = s.isna().to_numpy(dtype=bool)
        label, blocks = _column(s, mask)
        name = str(c)
        columns.append((name, label))
        _feed(h, name.encode())
        _feed(h, label.encode())
        _feed(h, np.packbits(mask).tobytes())
        for b in blocks:
            _feed(h, b)
    return h.hexdigest(), tuple(columns)


def _is_frame(data: Any) -> bool:
    mod = type(data).__module__
    if mod.startswith("pandas"):
        import pandas as pd

        return isinstance(data, pd.DataFrame)
    if mod.startswith("pyarrow"):
        import pyarrow as pa

        return isinstance(data, pa.Table)
    return False


def describe(data: Any, name: str, uri: str | None = None) -> Content:
    """Hash and inspect ``data``: a file or directory path, a pandas DataFrame or a pyarrow Table.

    Raises ValidationError for anything else, or for a path that does not exist.
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_file():
            version, size = hash_file(path)
            columns, rows, media = inspect_file(path)
        elif path.is_dir():
            version, size = hash_directory(path)
            columns, rows = inspect_directory(path)
            media = DIRECTORY_MEDIA_TYPE
        else:
            raise ValidationError("data", str(data), "must be an existing file or directory")
        return Content(version, uri or path.resolve().as_uri(), columns, rows, size, media)
    if _is_frame(data):
        df = _frame(data)
        version, columns = _describe_frame(df)
        size = int(df.memory_usage(deep=True, index=False).sum())
        return Content(version, uri or "memory://" + urllib.parse.quote(name, safe=""), columns, len(df), size,
                       DATAFRAME_MEDIA_TYPE)
    raise ValidationError("data", data, "must be a file or directory path, a pandas DataFrame or a pyarrow Table")


# -- nodes and validation --------------------------------------------------------------

def dataset_node(name: str, version: str) -> str:
    return f"dataset:{name}@{version}"


def as_node(value: Any, field: str) -> tuple[str, str]:
    """(node id, kind) of a node id string, a DatasetVersion or a Run (anything with a ``node`` id).
    Raises ValidationError."""
    if isinstance(value, DatasetVersion):
        return value.node, "dataset"
    if isinstance(getattr(value, "node", None), str):
        value = value.node
    try:
        kind, _ = _rules.parse_node(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None
    return value, kind


def _check(field: str, value: Any, rule: Any) -> Any:
    try:
        return rule(value)
    except ValueError as exc:
        raise ValidationError(field, value, str(exc)) from None


def _derivations(derived_from: Any, transform: str | None, code_ref: str | None) -> list[dict]:
    if derived_from is None:
        return []
    if isinstance(derived_from, (str, DatasetVersion)):
        derived_from = [derived_from]
    if not isinstance(derived_from, Iterable):
        raise ValidationError("derived_from", derived_from, "must be dataset versions or dataset:<name>@<version> ids")
    out = []
    for i, item in enumerate(derived_from):
        node, kind = as_node(item, f"derived_from[{i}]")
        if kind != "dataset":
            raise ValidationError(f"derived_from[{i}]", item, "must be a dataset version (dataset:<name>@<version>)")
        ds, version = _rules.parse_node(node)[1]
        out.append({"dataset": ds, "version": version, "transform": transform, "code_ref": code_ref})
    return out


def _publish_all(client: Client, events: Sequence[Event]) -> None:
    for e in events:
        validate(e.event_type, e.record)  # all of them before any is emitted
    client.emitter.emit(list(events))


def dataset_event(client: Client, name: str, data: Any, *, description: str | None, tags: Mapping[str, Any] | None,
                  uri: str | None, derived_from: Any = None, transform: str | None = None,
                  code_ref: str | None = None, subject: str | None = None) -> tuple[DatasetVersion, Event]:
    """Validate the arguments, hash and inspect ``data``, and build its DatasetVersionLogged event.

    When the policy marks the dataset sensitive (``modelog policy set --sensitive-dataset NAME``) its URI
    is sealed with ``subject``'s data key (decision 0018); the returned DatasetVersion keeps the plaintext."""
    _check("name", name, _rules.name)
    _check("description", description, _rules.optional_text)
    if subject is not None:
        from modelog.wire.keystore import check_subject

        check_subject(subject)
    if uri is not None:
        _check("uri", uri, _rules.uri)
    _check("transform", transform, _rules.optional_name)
    _check("code_ref", code_ref, _rules.code_ref)
    if tags is not None and not isinstance(tags, Mapping):
        raise ValidationError("tags", tags, "must be a mapping of tag name to text")
    texts = tag_texts(tags or {})
    derivations = _derivations(derived_from, transform, code_ref)
    if (transform or code_ref) and not derivations:
        raise ValidationError("transform" if transform else "code_ref", transform or code_ref,
                              "needs derived_from: the dataset versions the transform read")
    content = describe(data, name, uri)
    _check("uri", content.uri, _rules.uri)
    logged_uri = client.sealer.seal_uri(name, content.version, content.uri, subject)
    event = client.events.make(
        "DatasetVersionLogged", "dataset", f"dataset:{name}", dataset=name, version=content.version,
        uri=logged_uri, columns=[{"name": n, "type": t} for n, t in content.columns],
        row_count=content.row_count, size_bytes=content.size_bytes, media_type=content.media_type,
        description=description, tags=texts, derived_from=derivations)
    dv = DatasetVersion(name, content.version, content.uri, content.columns, content.row_count, content.size_bytes,
                        content.media_type, description, dict(texts))
    return dv, event


def lineage_event(client: Client, src: Any, relation: str, dst: Any, *, role: str | None = None,
                  transform: str | None = None, code_ref: str | None = None, facets: str | None = None) -> Event:
    """Validate one edge (node syntax, which kinds the relation joins) and build its LineageRecorded event.

    ``facets``: metadata of the edge as a JSON object in text (the server's OpenLineage ingest sets it)."""
    src_node, src_kind = as_node(src, "src")
    dst_node, dst_kind = as_node(dst, "dst")
    if relation not in EDGE_KINDS:
        raise ValidationError("relation", relation, f"must be one of {', '.join(RELATIONS)}")
    srcs, dsts = EDGE_KINDS[relation]
    if src_kind not in srcs:
        raise ValidationError("src", src_node, f"a {relation} edge starts at a {' or '.join(srcs)} node")
    if dst_kind not in dsts:
        raise ValidationError("dst", dst_node, f"a {relation} edge ends at a {' or '.join(dsts)} node")
    if src_node == dst_node:
        raise ValidationError("dst", dst_node, "must differ from src (an edge joins two nodes)")
    _check("role", role, _rules.optional_name)
    _check("transform", transform, _rules.optional_name)
    _check("code_ref", code_ref, _rules.code_ref)
    _check("facets", facets, _rules.facets_json)
    return client.events.make("LineageRecorded", dst_kind, dst_node, src=src_node, relation=relation, dst=dst_node,
                              role=role, transform=transform, code_ref=code_ref, facets=facets)


# -- the verbs (Run.log_dataset, Client.register_dataset, Client.record_lineage call these) --

def log_dataset(run: Run, name: str, data: Any, role: str = "train", *, description: str | None = None,
                tags: Mapping[str, Any] | None = None, uri: str | None = None) -> DatasetVersion:
    run._check_open()
    client = run._client
    _check("role", role, _rules.optional_name)
    dv, logged = dataset_event(client, name, data, description=description, tags=tags, uri=uri,
                               subject=run.subject)
    edge = lineage_event(client, dv.node, "consumed", f"run:{run.id}", role=role)
    _publish_all(client, [logged, edge])
    return dv


def register_dataset(client: Client, name: str, data: Any, *, description: str | None = None,
                     tags: Mapping[str, Any] | None = None, uri: str | None = None, derived_from: Any = None,
                     transform: str | None = None, code_ref: str | None = None,
                     subject: str | None = None) -> DatasetVersion:
    dv, logged = dataset_event(client, name, data, description=description, tags=tags, uri=uri,
                               derived_from=derived_from, transform=transform, code_ref=code_ref, subject=subject)
    _publish_all(client, [logged])
    return dv


def record_lineage(client: Client, src: Any, relation: str, dst: Any, *, role: str | None = None,
                   transform: str | None = None, code_ref: str | None = None) -> None:
    _publish_all(client, [lineage_event(client, src, relation, dst, role=role, transform=transform,
                                        code_ref=code_ref)])

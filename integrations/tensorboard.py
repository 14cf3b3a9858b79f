"""Import TensorBoard logs: ``modelog import tensorboard LOGDIR [--experiment NAME]``.

Each directory under LOGDIR that holds event files (``events.out.tfevents.*``) becomes one run, named by
its path relative to LOGDIR; every scalar becomes a metric point with its step and its original wall time
(TF1 ``simple_value`` and TF2 scalar tensors, float or double). The run is tagged
``modelog.import = tensorboard`` and ``source = <the directory>``, its id derived from the directory's
absolute path, so importing the same logs again skips the runs already there (idempotent). The
hyperparameters of an HParams session in the directory (the plugin's ``_hparams_/session_start_info``, as
``tensorboardX``'s and PyTorch's ``add_hparams`` and TensorFlow's ``hp.hparams`` write it) become the run's
params: numbers, text and booleans (whole numbers as int: TensorBoard keeps every number as a double).

The reader is pure and small: TFRecord framing with its masked CRC-32C checks, and the few protobuf
fields of ``Event``/``Summary``/``TensorProto`` that scalars and hparams use -- no TensorFlow or tensorboard package
(hundreds of MB) to read a few numbers. A truncated or corrupted record ends that file's import with a
warning; what came before it is kept. Histograms, images and text are skipped (counted).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelog.wire.rules import MAX_PARAM_VALUE

log = logging.getLogger("modelog.import")

# -- TFRecord ---------------------------------------------------------------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class CorruptRecord(ValueError):
    """A TFRecord whose length or data does not match its checksum, or that ends early."""


def records(data: bytes) -> Iterator[bytes]:
    """The records of a TFRecord file's bytes; raises CorruptRecord at the first bad one."""
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise CorruptRecord(f"truncated record header at byte {pos}")
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if masked_crc(header) != length_crc:
            raise CorruptRecord(f"bad length checksum at byte {pos}")
        body = data[pos + 12:pos + 12 + length]
        if len(body) < length or pos + 16 + length > len(data):
            raise CorruptRecord(f"truncated record at byte {pos}")
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if masked_crc(body) != data_crc:
            raise CorruptRecord(f"bad data checksum at byte {pos}")
        yield body
        pos += 16 + length


# -- protobuf wire format (only what scalars need) ------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecord("truncated varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message: ints for varints, bytes for fixed and
    length-delimited fields."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise CorruptRecord(f"unsupported wire type {wire}")
        yield number, wire, value


_DT_FLOAT, _DT_DOUBLE = 1, 2


def _tensor_scalar(buf: bytes) -> float | None:
    dtype, content, floats, doubles = None, None, [], []
    for number, wire, value in fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = value
        elif number == 5:  # float_val: packed (wire 2) or one fixed32 (wire 5)
            floats.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif number == 6:
            doubles.extend(struct.unpack(f"<{len(value) // 8}d", value))
    if floats:
        return floats[0]
    if doubles:
        return doubles[0]
    if content and dtype == _DT_FLOAT and len(content) >= 4:
        return struct.unpack("<f", content[:4])[0]
    if content and dtype == _DT_DOUBLE and len(content) >= 8:
        return struct.unpack("<d", content[:8])[0]
    return None


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    wall_time: float  # seconds since the epoch
    value: float


def event_scalars(event: bytes) -> tuple[list[Scalar], int]:
    """The scalars of one Event record, and how many other summary values it held (skipped)."""
    scalars, _, skipped = event_values(event)
    return scalars, skipped


HPARAMS_PLUGIN = "hparams"
SESSION_START_TAG = "_hparams_/session_start_info"


def event_values(event: bytes) -> tuple[list[Scalar], dict[str, object], int]:
    """The scalars of one Event record, the hyperparameters of an HParams session start in it (the HParams
    plugin's ``_hparams_/session_start_info``), and how many other summary values it held (skipped; the
    plugin's other records, ``_hparams_/experiment`` and ``session_end_info``, are not counted)."""
    wall, step, summaries = 0.0, 0, []
    for number, wire, value in fields(event):
        if number == 1 and wire == 1:
            (wall,) = struct.unpack("<d", value)
        elif number == 2 and wire == 0:
            step = value
        elif number == 5 and wire == 2:
            summaries.append(value)
    out, hparams, skipped = [], {}, 0
    for summary in summaries:
        for number, _, value in fields(summary):
            if number != 1:
                continue
            tag, scalar, plugin = None, None, None
            for vnum, vwire, v in fields(value):
                if vnum == 1 and vwire == 2:
                    tag = v.decode("utf-8", errors="replace")
                elif vnum == 2 and vwire == 5:
                    (scalar,) = struct.unpack("<f", v)
                elif vnum == 8 and vwire == 2:
                    scalar = _tensor_scalar(v)
                elif vnum == 9 and vwire == 2:
                    plugin = _plugin_data(v)
            if tag is not None and scalar is not None:
                out.append(Scalar(tag, step, wall, float(scalar)))
            elif plugin is not None and plugin[0] == HPARAMS_PLUGIN:
                if tag == SESSION_START_TAG:
                    hparams.update(session_hparams(plugin[1]))
            else:
                skipped += 1
    return out, hparams, skipped


def _plugin_data(metadata: bytes) -> tuple[str, bytes] | None:
    """(plugin name, content) of a SummaryMetadata's plugin_data, if it has one."""
    for number, wire, value in fields(metadata):
        if number == 1 and wire == 2:
            name, content = "", b""
            for pnum, pwire, pv in fields(value):
                if pnum == 1 and pwire == 2:
                    name = pv.decode("utf-8", errors="replace")
                elif pnum == 2 and pwire == 2:
                    content = pv
            return name, content
    return None


def session_hparams(content: bytes) -> dict[str, object]:
    """The hyperparameters of an ``HParamsPluginData`` holding a ``SessionStartInfo`` (field 3): its
    ``hparams`` map of ``google.protobuf.Value`` (numbers, text, booleans; null as None; lists and structs
    as their protobuf text is beyond TensorBoard's own UI and are skipped)."""
    out: dict[str, object] = {}
    for number, wire, value in fields(content):
        if number != 3 or wire != 2:
            continue
        for snum, swire, entry in fields(value):
            if snum != 1 or swire != 2:
                continue
            key, val, has = None, None, False
            for enum_, ewire, ev in fields(entry):
                if enum_ == 1 and ewire == 2:
                    key = ev.decode("utf-8", errors="replace")
                elif enum_ == 2 and ewire == 2:
                    val, has = _protobuf_value(ev)
            if key is not None and has:
                out[key] = val
    return out


def _protobuf_value(buf: bytes) -> tuple[object, bool]:
    """A google.protobuf.Value as a Python scalar, and whether it was one (number, string, bool, null).
    Whole numbers come back as int (TensorBoard stores every number as a double)."""
    for number, wire, value in fields(buf):
        if number == 1:
            return None, True
        if number == 2 and wire == 1:
            (x,) = struct.unpack("<d", value)
            return (int(x) if x.is_integer() and abs(x) < 2**53 else x), True
        if number == 3 and wire == 2:
            return value.decode("utf-8", errors="replace"), True
        if number == 4 and wire == 0:
            return bool(value), True
    return None, False


@dataclass
class FileScalars:
    scalars: list[Scalar] = field(default_factory=list)
    hparams: dict[str, object] = field(default_factory=dict)
    skipped: int = 0
    error: str | None = None


def read_scalars(path: Path) -> FileScalars:
    """Every scalar (and HParams session's hyperparameters) of one event file, in file order; a corrupted
    tail ends the file (``error`` says where)."""
    out = FileScalars()
    try:
        for rec in records(path.read_bytes()):
            got, hparams, skipped = event_values(rec)
            out.scalars.extend(got)
            out.hparams.update(hparams)
            out.skipped += skipped
    except CorruptRecord as exc:
        out.error = f"{path}: {exc}"
    return out


# -- the import ---------------------------------------------------------------------------------------

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./ :")


def run_dirs(logdir: Path) -> list[Path]:
    """Directories under (and including) ``logdir`` that hold event files, sorted."""
    return sorted({p.parent for p in logdir.rglob("events.out.tfevents.*") if p.is_file()})


def run_id_for(directory: Path) -> str:
    """A run id derived from the directory's absolute path (importing again finds the same run)."""
    return hashlib.sha256(b"modelog-tensorboard-v1\0" + str(directory.resolve()).encode()).hexdigest()[:32]


def safe_name(text: str) -> str:
    """A tag or directory name as a modelog name (metric key, run or experiment name): characters outside
    letters, digits and ``_-./ :`` become ``_``, it starts with a letter, digit or ``_``, at most 250."""
    from modelog.wire.rules import MAX_NAME

    out = "".join(c if c in NAME_CHARS else "_" for c in text.strip()) or "_"
    if not (out[0].isascii() and (out[0].isalnum() or out[0] == "_")):
        out = "_" + out
    return out[:MAX_NAME]


@dataclass
class ImportSummary:
    runs: list[str] = field(default_factory=list)            # imported run names
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run name, why)
    points: int = 0
    params: int = 0                                            # hyperparameters (HParams plugin)
    other_values: int = 0                                      # histograms, images, text ...
    warnings: list[str] = field(default_factory=list)


def import_logdir(client, logdir: Path, experiment: str | None = None, existing: set[str] | None = None,
                  progress=None) -> ImportSummary:
    """Import every run directory of ``logdir`` through ``client`` (see the module doc). ``existing``: run
    ids already in the views (skipped). ``progress(n)`` is called after each run."""
    logdir = Path(logdir)
    experiment = experiment or safe_name(logdir.resolve().name or "tensorboard")
    summary = ImportSummary()
    for directory in run_dirs(logdir):
        name = directory.relative_to(logdir).as_posix() if directory != logdir else logdir.resolve().name
        rid = run_id_for(directory)
        if existing is not None and rid in existing:
            summary.skipped.append((name, f"already imported (run {rid})"))
            if progress:
                progress(1)
            continue
        scalars: list[Scalar] = []
        hparams: dict[str, object] = {}
        for f in sorted(directory.glob("events.out.tfevents.*")):
            got = read_scalars(f)
            scalars.extend(got.scalars)
            hparams.update(got.hparams)
            summary.other_values += got.skipped
            if got.error:
                summary.warnings.append(got.error)
        if not scalars and not hparams:
            summary.skipped.append((name, "no scalars or hparams"))
            if progress:
                progress(1)
            continue
        run = client.start_run(experiment, name=safe_name(name), run_id=rid, environment=False,
                               tags={"modelog.import": "tensorboard", "source": str(directory.resolve())[:500]})
        params = {}
        for key, value in hparams.items():
            if isinstance(value, str) and len(value) > MAX_PARAM_VALUE:
                summary.warnings.append(f"{name}: hparam {key!r} cut to {MAX_PARAM_VALUE} characters")
                value = value[:MAX_PARAM_VALUE]
            params[safe_name(key)] = value
        if params:
            run.log_params(params)
            summary.params += len(params)
        for s in scalars:
            run.log_metric(safe_name(s.tag), s.value, step=s.step, timestamp=s.wall_time)
        run.end()
        summary.runs.append(name)
        summary.points += len(scalars)
        if progress:
            progress(1)
    return summary

"""The TensorBoard reader (integrations/tensorboard.py) on files the real tensorboardX writer makes:
scalars with steps and wall times, non-scalars counted, CRC-32C framing checked, a torn tail reported."""

from __future__ import annotations

import numpy as np
import pytest

from modelog.integrations import tensorboard as tb


def write(logdir, run, points, walltime0=1_700_000_000.0, histogram=False):
    from tensorboardX import SummaryWriter

    w = SummaryWriter(str(logdir / run))
    for step, (loss, acc) in enumerate(points):
        w.add_scalar("loss", loss, step, walltime=walltime0 + step)
        w.add_scalar("acc/train", acc, step, walltime=walltime0 + step)
    if histogram:
        w.add_histogram("weights", np.arange(10.0), 0)
    w.close()
    return next((logdir / run).glob("events.out.tfevents.*"))


def test_crc32c_is_castagnoli():
    assert tb.crc32c(b"123456789") == 0xE3069283


def test_scalars_with_steps_and_wall_times_and_other_values_counted(tmp_path):
    path = write(tmp_path, "a", [(1.0, 0.5), (0.5, 0.75), (0.25, 0.875)], histogram=True)
    got = tb.read_scalars(path)
    assert got.error is None and got.skipped == 1  # the histogram
    loss = [(s.step, s.value, s.wall_time) for s in got.scalars if s.tag == "loss"]
    assert loss == [(0, 1.0, 1_700_000_000.0), (1, 0.5, 1_700_000_001.0), (2, 0.25, 1_700_000_002.0)]
    acc = [s.value for s in got.scalars if s.tag == "acc/train"]
    assert acc == [0.5, 0.75, 0.875]


def test_a_torn_tail_keeps_what_came_before_and_says_where(tmp_path):
    path = write(tmp_path, "a", [(1.0, 0.5), (0.5, 0.75)])
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    got = tb.read_scalars(path)
    assert got.error is not None and "truncated" in got.error and str(path) in got.error
    assert [(s.tag, s.step) for s in got.scalars] == [("loss", 0), ("acc/train", 0), ("loss", 1)]
    flipped = bytearray(data)
    flipped[-10] ^= 0x01
    path.write_bytes(bytes(flipped))
    assert "bad data checksum" in tb.read_scalars(path).error


def test_tensor_scalars_of_tf2_are_read():
    # an Event with summary.value{tag: "x", tensor{dtype: DT_FLOAT, float_val: 2.5}} (TF2's scalar form)
    import struct

    def field(n, wire, payload):
        key = bytes([(n << 3) | wire])
        return key + (bytes([len(payload)]) + payload if wire == 2 else payload)

    tensor = field(1, 0, b"\x01") + field(5, 5, struct.pack("<f", 2.5))
    value = field(1, 2, b"x") + field(8, 2, tensor)
    event = field(1, 1, struct.pack("<d", 12.0)) + field(2, 0, b"\x07") + field(5, 2, field(1, 2, value))
    scalars, skipped = tb.event_scalars(event)
    assert scalars == [tb.Scalar("x", 7, 12.0, 2.5)] and skipped == 0


@pytest.mark.parametrize("text, name", [("acc/train", "acc/train"), ("loss (val)", "loss _val_"),
                                        ("-neg", "_-neg"), ("ü", "_")])
def test_tags_become_valid_names(text, name):
    assert tb.safe_name(text) == name


def test_run_directories_and_stable_ids(tmp_path):
    write(tmp_path, "exp/a", [(1.0, 0.5)])
    write(tmp_path, "exp/b", [(1.0, 0.5)])
    dirs = tb.run_dirs(tmp_path)
    assert [d.relative_to(tmp_path).as_posix() for d in dirs] == ["exp/a", "exp/b"]
    assert tb.run_id_for(dirs[0]) == tb.run_id_for(tmp_path / "exp" / "a") != tb.run_id_for(dirs[1])
    assert len(tb.run_id_for(dirs[0])) == 32


def test_hparams_of_a_tensorboardx_session_are_read_and_not_counted_as_skipped(tmp_path):
    from tensorboardX import SummaryWriter

    w = SummaryWriter(str(tmp_path / "a"))
    w.add_scalar("loss", 0.5, 0, walltime=1_700_000_000.0)
    # the session goes to a directory of its own (a/session), as TensorBoard's HParams dashboard expects
    w.add_hparams({"lr": 0.001, "layers": 4, "optimizer": "adam", "nesterov": True}, {"hparam/acc": 0.9},
                  name="session")
    w.close()
    [path] = (tmp_path / "a" / "session").glob("events.out.tfevents.*")
    got = tb.read_scalars(path)
    assert got.hparams == {"lr": 0.001, "layers": 4, "optimizer": "adam", "nesterov": True}
    assert got.skipped == 0 and [s.tag for s in got.scalars] == ["hparam/acc"]


def test_a_session_in_a_directory_of_its_own_becomes_a_run_with_params(tmp_path):
    from tensorboardX import SummaryWriter

    from modelog import Client, Settings
    from modelog.wire.emitter import MemoryEmitter

    with SummaryWriter(str(tmp_path / "logs" / "exp")) as w:
        w.add_hparams({"lr": 0.1, "note": "x" * 7000}, {})  # its own directory, hparams and no scalar
    client = Client(Settings.load(env={"MODELOG_HOME": str(tmp_path / "home")}), emitter=MemoryEmitter())
    summary = tb.import_logdir(client, tmp_path / "logs")
    assert len(summary.runs) == 1 and summary.params == 2 and summary.points == 0
    assert summary.warnings == [f"{summary.runs[0]}: hparam 'note' cut to 6000 characters"]
    params = [e.record["params"] for e in client._emitter.events if e.event_type == "ParamsLogged"]
    assert sorted((p["key"], p["value_type"], len(p["value"])) for p in params[0]) == [("lr", "float", 3),
                                                                                ("note", "str", 6000)]

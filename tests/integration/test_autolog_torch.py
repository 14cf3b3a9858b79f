"""modelog.autolog() for PyTorch Lightning (a ``Logger``) and the Hugging Face ``Trainer`` (a
``TrainerCallback``), with the real libraries on tiny data, against the real broker and processor.

torch is too heavy for the ``test`` extras (docs/integrations.md has the figures), so the training runs in
tests/.venv-torch (pinned in tests/requirements-torch.txt, built by ``python3 tests/torch_venv.py``), in a
process of its own (``autolog_torch/drive.py``) that logs to this test's deployment through the MODELOG_*
environment, downloads the stored model back and checks it predicts as the trained one. This test asserts
the views: params, the per-epoch metric history with its steps as the framework reported them, the
training data's version and the model's artifacts. Skipped, naming the command, when the venv is not built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelog.consumers.query import sql_arrow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch_venv  # noqa: E402

pytestmark = pytest.mark.broker

DRIVE = Path(__file__).resolve().parent / "autolog_torch" / "drive.py"


@pytest.fixture(scope="module")
def torch_python() -> Path:
    if not torch_venv.ready():
        pytest.skip(f"{torch_venv.VENV} is not built (or its pins changed): run `python3 tests/torch_venv.py`")
    return torch_venv.PYTHON


def q(settings, query: str, params: list | None = None) -> list[dict]:
    return sql_arrow(query, settings, params=params).to_pylist()


def drive(python: Path, env: dict, phase: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{phase}.json"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    run_env.update(env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HOME=str(tmp_path),
                   PYTHONWARNINGS="ignore")
    done = subprocess.run([str(python), str(DRIVE), str(out), phase], env=run_env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, f"{phase} training failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    return json.loads(out.read_text())


def history(settings, run_id: str, key: str) -> list[tuple[int, float]]:
    rows = q(settings, "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", [run_id, key])
    return [(r["step"], r["value"]) for r in rows]


def params(settings, run_id: str) -> dict[str, str]:
    return {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM params WHERE run_id = ?", [run_id])}


def run_record(settings, run_id: str) -> dict:
    [row] = q(settings, "SELECT name, status FROM runs WHERE run_id = ?", [run_id])
    [env] = q(settings, "SELECT packages FROM run_environments WHERE run_id = ?", [run_id])
    row["packages"] = dict(env["packages"])
    tags = {r["key"]: r["value"] for r in q(settings, "SELECT key, value FROM tags WHERE run_id = ?", [run_id])}
    arts = q(settings, "SELECT path, content_address FROM artifacts WHERE run_id = ? ORDER BY path", [run_id])
    assert all(a["content_address"] for a in arts)
    edges = q(settings, "SELECT src, role FROM lineage_edges WHERE relation = 'consumed' AND dst = ?", [f"run:{run_id}"])
    return {**row, "tags": tags, "artifacts": [a["path"] for a in arts], "consumed": edges}


def test_lightning_trainer_fit_logs_hparams_epochs_data_and_checkpoint(torch_python, env, settings, processor,
                                                                      tmp_path):
    out = drive(torch_python, env, "lightning", tmp_path)
    rid = out["run_id"]
    rec = run_record(settings, rid)
    assert (rec["name"], rec["status"]) == ("Tiny", "FINISHED")
    assert rec["tags"] == {"modelog.autolog": "lightning", "estimator": "Tiny"}
    assert rec["packages"]["torch"].startswith("2.13.0") and "lightning" in rec["packages"]  # the run's environment

    p = params(settings, rid)
    assert (p["hparams.hidden"], p["hparams.lr"], p["max_epochs"]) == ("4", "0.05", "3")
    assert (p["optimizer"], p["optimizer.lr"], p["weights"]) == ("SGD", "0.05", str(out["weights"]))

    # every epoch's train_loss and val_loss, at the step Lightning gave every logger (its CSVLogger's rows)
    for key in ("train_loss", "val_loss"):
        expected = [(int(r["step"]), float(r[key])) for r in out["csv"] if key in r]
        assert len(expected) == 3
        assert history(settings, rid, key) == [(s, pytest.approx(v, rel=1e-6)) for s, v in expected]
    assert [v for _, v in history(settings, rid, "epoch")][-1] == 2.0

    [edge] = rec["consumed"]
    assert edge["src"].startswith("dataset:training-data@") and edge["role"] == "train"
    assert rec["artifacts"] == ["model/model.ckpt"] and out["reloaded_same"] is True


def test_hugging_face_trainer_logs_arguments_config_epochs_data_and_model_files(torch_python, env, settings,
                                                                              processor, tmp_path):
    out = drive(torch_python, env, "transformers", tmp_path)
    rid = out["run_id"]
    rec = run_record(settings, rid)
    assert (rec["name"], rec["status"]) == ("BertForSequenceClassification", "FINISHED")
    assert rec["tags"]["modelog.autolog"] == "transformers"

    p = params(settings, rid)
    assert (p["learning_rate"], p["num_train_epochs"], p["per_device_train_batch_size"]) == ("0.001", "3", "8")
    assert (p["config.hidden_size"], p["config.num_hidden_layers"], p["config.vocab_size"]) == ("8", "1", "32")

    # one training log and one evaluation per epoch, at the global step the Trainer logged them
    for key in ("loss", "eval_loss"):
        expected = [(e["step"], e[key]) for e in out["log_history"] if key in e]
        assert len(expected) == 3 and expected[-1][0] == out["global_step"]
        assert history(settings, rid, key) == [(s, pytest.approx(v, rel=1e-6)) for s, v in expected]

    [edge] = rec["consumed"]
    assert edge["src"].startswith("dataset:training-data@")
    assert "model/config.json" in rec["artifacts"] and "model/model.safetensors" in rec["artifacts"]
    assert out["reloaded_same"] is True

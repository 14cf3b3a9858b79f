"""Write an MLflow file store with the real mlflow package (run in tests/.venv-mlflow).

    python write_store.py TRACKING OUT.json

TRACKING: an mlruns directory (the file store, registry included) or an MLflow server's http:// URI.

Two experiments; in "credit-risk" a FINISHED run by alice (params, tags, a metric history with given steps
and timestamps, a NaN point, two artifacts, a logged model "clf" of two files) and a FAILED run by bob; in
"other" one run; a registered model with three versions of alice's run (v2 with the alias "champion", v3 from
the logged model). OUT.json gets what was written.
"""

import json
import math
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

target, out = sys.argv[1], Path(sys.argv[2])
uri = target if target.startswith("http") else Path(target).resolve().as_uri()
c = MlflowClient(tracking_uri=uri, registry_uri=uri)
T0 = 1_700_000_000_000  # ms

exp = c.create_experiment("credit-risk", tags={"mlflow.note.content": "scoring applications"})
other = c.create_experiment("other")

a = c.create_run(exp, start_time=T0, run_name="baseline", tags={"mlflow.user": "alice", "team": "risk"})
aid = a.info.run_id
c.log_param(aid, "lr", "0.01")
c.log_param(aid, "depth", "6")
for step in range(30):
    c.log_metric(aid, "loss", 1.0 / (1 + step), timestamp=T0 + 1000 * step, step=step * 10)
c.log_metric(aid, "val/auc", math.nan, timestamp=T0 + 50_000, step=3)
work = out.parent / "work"
(work / "sub").mkdir(parents=True, exist_ok=True)
(work / "model.pkl").write_bytes(bytes(range(256)) * 400)
(work / "sub" / "notes.txt").write_text("hello from mlflow\n")
c.log_artifact(aid, str(work / "model.pkl"))
c.log_artifact(aid, str(work / "sub" / "notes.txt"), artifact_path="docs")
c.set_terminated(aid, "FINISHED", end_time=T0 + 60_000)

b = c.create_run(exp, start_time=T0 + 100_000, run_name="deeper", tags={"mlflow.user": "bob"})
bid = b.info.run_id
c.log_param(bid, "lr", "0.1")
c.log_metric(bid, "loss", 0.9, timestamp=T0 + 101_000, step=0)
c.set_terminated(bid, "FAILED", end_time=T0 + 102_000)

o = c.create_run(other, start_time=T0 + 200_000, run_name="solo", tags={"mlflow.user": "carol"})
c.log_metric(o.info.run_id, "acc", 0.5, timestamp=T0 + 200_500, step=1)
c.set_terminated(o.info.run_id, "FINISHED", end_time=T0 + 201_000)

c.create_registered_model("credit-model")
v1 = c.create_model_version("credit-model", f"runs:/{aid}/model.pkl", run_id=aid, description="first")
v2 = c.create_model_version("credit-model", f"runs:/{aid}/model.pkl", run_id=aid, tags={"approved": "yes"})
c.set_registered_model_alias("credit-model", "champion", v2.version)

# an MLflow 3 logged model of alice's run (its files apart from the run's artifacts) and a version of it
lm = c.create_logged_model(exp, name="clf", source_run_id=aid)
(work / "clf").mkdir(exist_ok=True)
(work / "clf" / "MLmodel").write_text("flavors: {}\n")
(work / "clf" / "model.bin").write_bytes(b"\x00\x01" * 500)
c.log_model_artifacts(lm.model_id, str(work / "clf"))
c.finalize_logged_model(lm.model_id, "READY")
c.create_model_version("credit-model", f"models:/{lm.model_id}", run_id=aid, model_id=lm.model_id)

out.write_text(json.dumps({"alice": aid, "bob": bid, "carol": o.info.run_id, "experiment_id": exp,
                           "logged_model": lm.model_id,
                           "v1_created": v1.creation_timestamp}))

"""Factories for test events: one valid record per event type, and helpers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelog.wire import metric_columns, prediction_columns

ENVELOPE_DEFAULTS = {
    "actor": {"principal": "alice", "kind": "USER"},
    "source": {"host": "host-1", "pid": 42, "program": "tests", "sdk_version": "0.1.0"},
}


_IDS = {t: f"01890f5e-0000-7000-8000-{i:012d}" for i, t in enumerate(
    ["ExperimentCreated", "RunStarted", "ParamsLogged", "MetricsLogged", "TagsSet", "ArtifactLogged", "RunEnded"], 1)}


_IDS.update({t: f"01890f5e-0000-7000-8001-{i:012d}" for i, t in enumerate(
    ["ModelVersionRegistered", "ModelAnnotated", "ChangeRequested", "ApprovalGiven", "RequestDecided",
     "DeploymentRecorded", "AccessChanged", "PolicySet"], 1)})
REQUEST_ID = _IDS["ChangeRequested"]


def envelope(event_type: str, key: str, event_id: str | None = None,
             occurred_at: int = 1_760_000_000_000_000, entity_type: str = "run") -> dict[str, Any]:
    return {"event_id": event_id or _IDS[event_type], "event_type": event_type, "occurred_at": occurred_at,
            **ENVELOPE_DEFAULTS, "entity": {"type": entity_type, "key": key}}


RUN = "0190f5e0aa000000000000000000abcd"

ENVIRONMENT = {
    "python_version": "3.11.7", "python_implementation": "CPython", "platform": "Linux-x86_64",
    "hostname": "host-1", "cpu_count": 2, "memory_bytes": 25_000_000_000, "gpus": [],
    "command": ["python", "train.py"], "working_dir": "/work", "git_commit": "a" * 40, "git_branch": "main",
    "git_dirty": False, "git_remote": "https://example.invalid/repo.git", "packages": {"numpy": "2.0.0"},
}


METRIC_POINTS = [{"key": "loss", "value": 0.5, "step": 0, "timestamp": 1_760_000_000_000_001},
                 {"key": "loss", "value": math.nan, "step": 1, "timestamp": 1_760_000_000_000_002},
                 {"key": "auc", "value": math.inf, "step": 1, "timestamp": 1_760_000_000_000_003},
                 {"key": "auc", "value": -math.inf, "step": 2, "timestamp": 1_760_000_000_000_004}]


def metric_points_record() -> dict[str, Any]:
    """The sample MetricsLogged in its first form: one record per point (what events before columnar batches hold)."""
    return {"envelope": envelope("MetricsLogged", RUN), "run_id": RUN, "points": [dict(p) for p in METRIC_POINTS],
            "columns": None}


def sample_records() -> dict[str, dict[str, Any]]:
    """One valid record for every event type (the evolution test keeps their encodings)."""
    return {
        "ExperimentCreated": {"envelope": envelope("ExperimentCreated", "credit-risk", entity_type="experiment"),
                              "experiment": "credit-risk", "description": "PD model"},
        "RunStarted": {"envelope": envelope("RunStarted", RUN), "run_id": RUN, "experiment": "credit-risk",
                       "name": "baseline", "start_time": 1_760_000_000_000_000, "tags": {"team": "risk"},
                       "environment": ENVIRONMENT},
        "ParamsLogged": {"envelope": envelope("ParamsLogged", RUN), "run_id": RUN,
                         "params": [{"key": "lr", "value": "0.01", "value_type": "float"},
                                    {"key": "depth", "value": "6", "value_type": "int"}]},
        "MetricsLogged": {"envelope": envelope("MetricsLogged", RUN), "run_id": RUN, "points": [],
                          "columns": metric_columns.from_points(METRIC_POINTS)},
        "TagsSet": {"envelope": envelope("TagsSet", RUN), "run_id": RUN, "tags": {"candidate": "yes"}},
        "ArtifactLogged": {"envelope": envelope("ArtifactLogged", RUN), "run_id": RUN, "path": "model.pkl",
                           "uri": "file:///tmp/model.pkl", "sha256": "0" * 64, "size_bytes": 123,
                           "media_type": "application/octet-stream",
                           "content_address": "s3://modelog-artifacts/sha256/" + "0" * 64},
        "RunEnded": {"envelope": envelope("RunEnded", RUN), "run_id": RUN, "status": "FAILED",
                     "end_time": 1_760_000_000_500_000, "error": "ValueError: boom"},
        **registry_records(),
        **monitoring_records(),
        **lineage_records(),
        **token_records(),
        **key_records(),
        **checkpoint_records(),
        **privacy_records(),
    }


def registry_records() -> dict[str, dict[str, Any]]:
    """One valid record per registry event type."""
    def env(t: str, key: str = "model:credit-risk") -> dict[str, Any]:
        return envelope(t, key, entity_type="model")

    return {
        "ModelVersionRegistered": {"envelope": env("ModelVersionRegistered"), "model": "credit-risk", "run_id": RUN,
                                   "artifact": "model.pkl", "uri": None, "semver": "1.2.0",
                                   "description": "GBT baseline", "tags": {"team": "risk"}},
        "ModelAnnotated": {"envelope": env("ModelAnnotated"), "model": "credit-risk", "version": 1,
                           "description": "validated", "tags": {"reviewed": "yes"}, "removed_tags": ["team"],
                           "annotations": {"note": "calibrated on Q3"}},
        "ChangeRequested": {"envelope": env("ChangeRequested"), "model": "credit-risk", "action": "PROMOTE",
                            "version": 1, "stage": "production", "alias": None, "comment": "ship it"},
        "ApprovalGiven": {"envelope": env("ApprovalGiven"), "model": "credit-risk", "request_id": REQUEST_ID,
                          "verdict": "APPROVE", "comment": "lgtm"},
        "RequestDecided": {"envelope": env("RequestDecided"), "model": "credit-risk", "request_id": REQUEST_ID,
                           "outcome": "APPROVED", "reason": "approved (needs-approval)",
                           "decided_at": 1_760_000_000_600_000, "trigger_offset": 7,
                           "rules": ["invariants", "needs-approval"], "evidence": {"needs-approval.approved_by": "bob"},
                           "effects": [{"kind": "STAGE", "version": 1, "stage": "production", "alias": None}]},
        "DeploymentRecorded": {"envelope": env("DeploymentRecorded"), "model": "credit-risk", "version": 1,
                               "environment": "prod", "endpoint": "https://models.example.invalid/credit-risk",
                               "deployed_at": 1_760_000_000_700_000, "rollback_of": None, "comment": None},
        "AccessChanged": {"envelope": env("AccessChanged", "access:bob"), "principal": "bob", "role": "approver",
                          "model": None, "granted": True, "experiment": "churn"},
        "PolicySet": {"envelope": env("PolicySet", "policy:*"), "model": None, "rules": [
            {"name": "needs-approval", "kind": "APPROVAL", "action": "PROMOTE", "stage": "production",
             "role": "approver", "metric": None, "op": None, "threshold": None, "approvals": 2},
            {"name": "auc-gate", "kind": "METRIC_GATE", "action": "PROMOTE", "stage": "production",
             "role": None, "metric": "auc", "op": ">=", "threshold": 0.8, "approvals": None}],
                      "require_signatures": None, "rules_unchanged": False,
                      "sensitive": [{"kind": "PARAM", "key": "patient_email", "model": None},
                                    {"kind": "TAG", "key": "owner", "model": None},
                                    {"kind": "DATASET", "key": "visits", "model": None},
                                    {"kind": "FEATURE", "key": "postcode", "model": "credit-risk"}]},
    }


_IDS.update({t: f"01890f5e-0000-7000-8003-{i:012d}" for i, t in enumerate(
    ["ReferenceProfileLogged", "PredictionsLogged", "LabelsLogged", "MonitorConfigured", "DriftMeasured",
     "AlertChanged"], 1)})


# a sealed value's shape (modelog.wire.sealing): subject, key id, base64url of nonce|ciphertext|tag (no key opens it)
SEALED_SAMPLE = "modelog:sealed:v1:patient-0042:dek-00112233445566ff:" + "A" * 40
# The sample PredictionsLogged's columns in their first form (lists; what events before decision 0025 hold).
PREDICTION_LIST_COLUMNS = [
    {"name": "income", "role": "FEATURE", "numbers": [1.5, None], "strings": []},
    {"name": "city", "role": "FEATURE", "numbers": [], "strings": ["Lyon", None]},
    {"name": "prediction", "role": "PREDICTION", "numbers": [], "strings": ["1", "0"]},
    {"name": "score", "role": "SCORE", "numbers": [0.9, 0.2], "strings": []}]


def wire_form(event_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """A sample record as the SDK writes it today: a PredictionsLogged with its requests compact (decision
    0030: ids "r1", "r2" as prefix "r" and counters 1, 2); readers read it back in the first form."""
    if event_type != "PredictionsLogged" or not all(i.startswith("r") for i in record["request_ids"]):
        return record
    counters = [int(i[1:]) for i in record["request_ids"]]
    return {**record, **prediction_columns.compact_requests("r", counters, record["timestamps"])}


def monitoring_records() -> dict[str, dict[str, Any]]:
    """One valid record per monitoring event type."""
    def env(t: str, key: str = "monitor:credit-risk/prod") -> dict[str, Any]:
        return envelope(t, key, entity_type="monitor")

    num = {"name": "income", "kind": "NUM", "role": "FEATURE", "count": 4, "missing": 1, "unique": 4, "mean": 2.5,
           "std": 1.118033988749895, "edges": [1.3, 1.6, 1.9, 2.2, 2.5, 2.8, 3.1, 3.4, 3.7],
           "bin_counts": [1, 0, 0, 1, 0, 0, 1, 0, 0, 1], "sample": [1.0, 2.0, 3.0, 4.0],
           "categories": {"1.0": 1, "2.0": 1, "3.0": 1, "4.0": 1}}
    cat = {"name": "city", "kind": "CAT", "role": "FEATURE", "count": 5, "missing": 0, "unique": 2, "mean": None,
           "std": None, "edges": [], "bin_counts": [], "sample": [], "categories": {"Lyon": 3, "Oslo": 2}}
    ts = [1_760_000_001_000_000, 1_760_000_002_000_000]
    return {
        "ReferenceProfileLogged": {"envelope": env("ReferenceProfileLogged", "monitor:credit-risk"),
                                   "model": "credit-risk", "version": 1, "rows": 5, "columns": [num, cat],
                                   "sample_size": 10000},
        "PredictionsLogged": {"envelope": env("PredictionsLogged"), "model": "credit-risk", "deployment": "prod",
                              "version": 1, "request_ids": ["r1", "r2"], "timestamps": ts, "dropped": 3,
                              "columns": [  # the buffer form (decision 0025); PREDICTION_LIST_COLUMNS: the first
                                  prediction_columns.numbers("income", "FEATURE", np.array([1.5, np.nan]),
                                                             np.array([True, False])),
                                  prediction_columns.texts("city", "FEATURE", np.array([0, -1]), ["Lyon"]),
                                  prediction_columns.texts("prediction", "PREDICTION", np.array([0, 1]), ["1", "0"]),
                                  prediction_columns.numbers("score", "SCORE", np.array([0.9, 0.2])),
                                  # a sensitive feature column (decision 0018): one sealed value per request
                                  {"name": "postcode", "role": "FEATURE", "numbers": [], "strings": [],
                                   "values": None, "valid": None, "codes": None, "dictionary": [],
                                   "sealed": {"kind": "TEXT", "values": [SEALED_SAMPLE, None]}}],
                              # requests in the first form (wire_form: compact, decision 0030)
                              "request_id_prefix": None, "request_id_counters": None, "timestamp_values": None},
        "LabelsLogged": {"envelope": env("LabelsLogged"), "model": "credit-risk", "deployment": "prod",
                         "request_ids": ["r1", "r2"], "numbers": [], "strings": ["1", "1"]},
        "MonitorConfigured": {"envelope": env("MonitorConfigured", "monitor:credit-risk"), "model": "credit-risk",
                              "window_rows": 500, "window_seconds": None, "methods": {"income": "psi"},
                              "thresholds": {"income": 0.2}, "drift_share": 0.5, "raise_after": 1,
                              "resolve_after": 2},
        "DriftMeasured": {"envelope": env("DriftMeasured"), "model": "credit-risk", "deployment": "prod", "version": 1,
                          "window": 0, "window_start": ts[0], "window_end": ts[1], "rows": 2, "dropped": 3,
                          "drift_share": 0.5, "dataset_drift": True, "columns": [
                              {"column": "income", "kind": "num", "role": "FEATURE", "method": "ks", "score": 0.01,
                               "threshold": 0.05, "drift": True, "n_ref": 4, "n_cur": 1, "missing_ref": 0.2,
                               "missing_cur": 0.5, "ks_stat": 0.9, "ks_p": 0.01, "psi": 2.1, "js": 0.6,
                               "wasserstein_norm": 1.2, "chi2_p": None, "unseen": 0}]},
        "AlertChanged": {"envelope": env("AlertChanged"), "alert_id": "credit-risk/prod/dataset_drift/0",
                         "model": "credit-risk", "deployment": "prod", "rule": "dataset_drift", "state": "RAISED",
                         "severity": "warning", "window": 0, "value": 0.5, "threshold": 0.5,
                         "message": "credit-risk/prod: 50% of features drifted (threshold 50%) in window 0"},
    }


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


_IDS.update({t: f"01890f5e-0000-7000-8002-{i:012d}" for i, t in enumerate(["DatasetVersionLogged", "LineageRecorded"], 1)})
DATASET_VERSION = "d" * 64
RAW_VERSION = "e" * 64


def lineage_records() -> dict[str, dict[str, Any]]:
    """One valid record per lineage event type: a dataset version derived from another, used by RUN."""
    return {
        "DatasetVersionLogged": {
            "envelope": envelope("DatasetVersionLogged", "dataset:applications", entity_type="dataset"),
            "dataset": "applications", "version": DATASET_VERSION, "uri": "file:///data/applications.csv",
            "columns": [{"name": "income", "type": "double"}, {"name": "city", "type": "string"}],
            "row_count": 1000, "size_bytes": 20_480, "media_type": "text/csv", "description": "deduplicated",
            "tags": {"source": "crm"},
            "derived_from": [{"dataset": "applications-raw", "version": RAW_VERSION, "transform": "dedupe",
                              "code_ref": "git:abc123:etl/dedupe.py"}],
            "facets": '{"schema": {"fields": [{"name": "income", "type": "double"}]}}'},
        "LineageRecorded": {
            "envelope": envelope("LineageRecorded", f"run:{RUN}"),
            "src": f"dataset:applications@{DATASET_VERSION}", "relation": "consumed", "dst": f"run:{RUN}",
            "role": "train", "transform": None, "code_ref": None,
            "facets": '{"job": {"namespace": "etl", "name": "dedupe"}}'},
    }


_IDS.update({t: f"01890f5e-0000-7000-8004-{i:012d}" for i, t in enumerate(["TokenIssued", "TokenRevoked"], 1)})
TOKEN_ID = "0123456789ab"
TOKEN_HASH = "f" * 64  # the records hold only a token's hash, never a token


def token_records() -> dict[str, dict[str, Any]]:
    """One valid record per access event type: a token issued to bob, then revoked."""
    def env(t: str) -> dict[str, Any]:
        return envelope(t, f"token:{TOKEN_ID}", entity_type="token")

    return {
        "TokenIssued": {"envelope": env("TokenIssued"), "token_id": TOKEN_ID, "principal": "bob",
                        "roles": ["writer", "reader"], "token_hash": TOKEN_HASH,
                        "expires_at": 1_762_592_000_000_000, "description": "CI runner"},
        "TokenRevoked": {"envelope": env("TokenRevoked"), "token_id": TOKEN_ID, "reason": "rotated"},
    }


_IDS.update({t: f"01890f5e-0000-7000-8005-{i:012d}" for i, t in enumerate(["KeyRegistered", "KeyRevoked"], 1)})
PUBLIC_KEY = bytes(range(32))  # a made-up Ed25519 public key; KEY_ID is its id (modelog.wire.signing.key_id_of)
KEY_ID = "ed25519:630dcd2966c4336691125448bbb25b4f"


def key_records() -> dict[str, dict[str, Any]]:
    """One valid record per key event type: a key registered for bob, then revoked."""
    def env(t: str) -> dict[str, Any]:
        return envelope(t, "keys", entity_type="key")

    return {
        "KeyRegistered": {"envelope": env("KeyRegistered"), "key_id": KEY_ID, "principal": "bob",
                          "public_key": PUBLIC_KEY, "algorithm": "ed25519", "capabilities": [],
                          "bootstrap": False, "description": "bob's laptop"},
        "KeyRevoked": {"envelope": env("KeyRevoked"), "key_id": KEY_ID, "reason": "laptop lost"},
    }


_IDS["LogCheckpoint"] = "01890f5e-0000-7000-8007-000000000001"


def checkpoint_records() -> dict[str, dict[str, Any]]:
    """A processor's checkpoint of a partition's tree after three records (decision 0023)."""
    env = envelope("LogCheckpoint", "modelog.tracking/0", entity_type="partition")
    return {"LogCheckpoint": {"envelope": env, "topic": "modelog.tracking", "partition": 0, "base_offset": 0,
                              "tree_size": 3, "next_offset": 3, "root_hash": bytes(range(32)), "previous_size": 0,
                              "offsets": [0, 1, 2], "hints": bytes(range(24)),
                              "algorithm": "rfc9162-sha256/modelog.leaf.v1"}}
_IDS.update({"SubjectErased": "01890f5e-0000-7000-8006-000000000001"})
SUBJECT = "patient-0042"
DEK_ID = "dek-0123456789abcdef"


def privacy_records() -> dict[str, dict[str, Any]]:
    """One valid record per privacy event type: a subject erased (decision 0018)."""
    return {
        "SubjectErased": {"envelope": envelope("SubjectErased", f"subject:{SUBJECT}", entity_type="subject"),
                          "subject": SUBJECT, "key_ids": [DEK_ID], "reason": "GDPR request #17"},
    }

"""The REST API on a real socket: ``modelog serve --background`` over the real broker and a real processor.

Tracking through the API (the actor is the token's principal, not the client's MODELOG_PRINCIPAL),
the live stream fed from the log, governance (pending → approved by another principal), revocation,
an event read back from the log, and the SDK publishing through the API with no broker reachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import httpx2 as httpx
import pytest

from conftest import run_cli
from modelog.wire.home import free_port
from modelog.consumers.query import sql_arrow

pytestmark = pytest.mark.broker


def q(settings, query, params=None):
    return sql_arrow(query, settings, params=params).to_pylist()


def token_for(env, principal: str, *roles: str) -> str:
    args = [a for r in roles for a in ("--role", r)]
    return run_cli(env, "token", "create", principal, *args).stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def eventually(fn, timeout=20.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(interval)


def test_tracking_stream_registry_audit_and_revocation(env, settings, server):
    url, admin = server
    writer = token_for(env, "api-writer", "writer")
    api = httpx.Client(base_url=f"{url}/api/v1", timeout=30)
    w = bearer(writer)

    r = api.post("/runs", json={"experiment": "api-it", "name": "first", "tags": {"team": "risk"}}, headers=w)
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]

    # the live stream: points logged after subscribing arrive, from the log
    got: list[tuple[str, dict]] = []
    with httpx.Client(base_url=f"{url}/api/v1", timeout=httpx.Timeout(30, read=30)) as sse:
        with sse.stream("GET", "/stream", params={"run_id": run_id}, headers=w) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            lines = s.iter_lines()
            assert next(lines) == ": subscribed"
            r = api.post(f"/runs/{run_id}/log", headers=w, json={
                "metrics": [{"key": "loss", "value": 1.0 / (i + 1), "step": i} for i in range(5)],
                "params": {"lr": 0.01}, "tags": {"stage": "train"}})
            assert r.status_code == 200, r.text
            event = None
            points = 0
            for line in lines:
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    got.append((event, data))
                    if event == "metrics":
                        points += len(data["points"])
                        if points >= 5:
                            break
    assert {e for e, _ in got} == {"metrics"} and all(d["run_id"] == run_id for _, d in got)
    assert sorted(p["step"] for _, d in got for p in d["points"]) == [0, 1, 2, 3, 4]

    assert api.post(f"/runs/{run_id}/end", json={"status": "FINISHED"}, headers=w).status_code == 200
    run = eventually(lambda: (lambda b: b if b.get("status") == "FINISHED" else None)(
        api.get(f"/runs/{run_id}", headers=w).json()))
    assert run and {p["key"]: p["value"] for p in run["params"]} == {"lr": "0.01"}
    assert {t["key"]: t["value"] for t in run["tags"]} == {"team": "risk", "stage": "train"}
    assert [m["points"] for m in run["metrics"] if m["key"] == "loss"] == [5]

    # the audit log: the token's principal, never the client's MODELOG_PRINCIPAL ("tester")
    audit = api.get("/audit", params={"entity": run_id}, headers=w).json()["events"]
    assert {e["actor"] for e in audit} == {"api-writer"}
    assert {e["event_type"] for e in audit} >= {"RunStarted", "MetricsLogged", "ParamsLogged", "TagsSet", "RunEnded"}
    actors = q(settings, "SELECT DISTINCT actor FROM audit_log WHERE entity_key = ?", [run_id])
    assert actors == [{"actor": "api-writer"}]

    # one event read back from the log at its topic/partition/offset
    started = next(e for e in audit if e["event_type"] == "RunStarted")
    r = api.get(f"/events/{started['event_id']}", headers=w)
    assert r.status_code == 200, r.text
    ev = r.json()
    assert ev["topic"] == settings.tracking_topic and ev["offset"] == started["offset"]
    assert ev["record"]["run_id"] == run_id and ev["record"]["envelope"]["actor"]["principal"] == "api-writer"

    # governance: a promotion needing an approver, approved by another principal
    run_cli(env, "policy", "set", "--require-approval", "PROMOTE:production=approver")
    run_cli(env, "access", "grant", "bob", "approver")
    bob = token_for(env, "bob", "approver")
    a = bearer(admin)
    r = api.post("/models/credit-risk/versions", json={"run_id": run_id, "artifact": "model.pkl", "semver": "1.0.0"},
                 headers=a)
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    assert version == 1
    r = api.post(f"/models/credit-risk/versions/{version}/promote", json={"to": "production", "wait": True,
                                                                           "timeout": 10}, headers=a)
    assert r.status_code == 202 and r.json()["status"] == "PENDING", r.text
    request_id = r.json()["request_id"]
    pending = api.get("/requests", params={"status": "pending"}, headers=w).json()["requests"]
    assert [p["request_id"] for p in pending] == [request_id]
    assert api.post(f"/requests/{request_id}/approve", json={}, headers=w).status_code == 403
    r = api.post(f"/requests/{request_id}/approve", json={"comment": "checked"}, headers=bearer(bob))
    assert r.status_code in (200, 202), r.text
    status = eventually(lambda: (lambda q_: q_[0]["status"] if q_ and q_[0]["status"] != "PENDING" else None)(
        [x for x in api.get("/requests", headers=w).json()["requests"] if x["request_id"] == request_id]))
    assert status == "APPROVED"
    versions = api.get("/models/credit-risk", headers=w).json()["versions"]
    assert versions[0]["stage"] == "production" and versions[0]["run"]["metrics"]["loss"] == pytest.approx(0.2)

    # a revoked token is refused within a few seconds
    token_id = writer.split("_")[1]
    run_cli(env, "token", "revoke", token_id)
    start = time.monotonic()
    refused = eventually(lambda: api.get("/experiments", headers=w).status_code == 401, timeout=10)
    assert refused and time.monotonic() - start < 10
    api.close()


SDK_JOB = textwrap.dedent("""
    import modelog
    with modelog.start_run(experiment="through-api", name="remote") as run:
        run.log_params({"lr": 0.1, "depth": 4})
        for step in range(300):
            run.log_metrics({"loss": 1.0 / (step + 1), "auc": step / 300}, step=step)
        run.set_tags({"via": "http"})
    modelog.wait_projected(60)
    print(run.id)
""")


def test_the_sdk_through_the_api_without_a_broker(env, settings, server, tmp_path):
    url, _ = server
    writer = token_for(env, "remote-job", "writer")
    job_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
    job_env.update({"MODELOG_HOME": str(tmp_path / "job-home"), "MODELOG_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
                    "MODELOG_URL": url, "MODELOG_TOKEN": writer, "MODELOG_PRINCIPAL": "someone-else",
                    "MODELOG_TOPIC_PREFIX": env["MODELOG_TOPIC_PREFIX"], "MODELOG_FLUSH_TIMEOUT": "30"})
    out = subprocess.run([sys.executable, "-c", SDK_JOB], env=job_env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip().splitlines()[-1]
    rows = q(settings, "SELECT key, count(*) AS n, count(DISTINCT step) AS steps FROM metrics WHERE run_id = ? "
                       "GROUP BY key ORDER BY key", [run_id])
    assert rows == [{"key": "auc", "n": 300, "steps": 300}, {"key": "loss", "n": 300, "steps": 300}]
    assert q(settings, "SELECT status FROM runs WHERE run_id = ?", [run_id]) == [{"status": "FINISHED"}]
    assert q(settings, "SELECT DISTINCT actor FROM audit_log WHERE entity_key = ?", [run_id]) == [
        {"actor": "remote-job"}]
    assert {r["key"] for r in q(settings, "SELECT key FROM params WHERE run_id = ?", [run_id])} == {"lr", "depth"}

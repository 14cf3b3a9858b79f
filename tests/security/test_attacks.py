"""More attacks of docs/security.md, each on the real broker, processor (and HTTP server where it is the path):
self-approval and approval through a second path, the SQL endpoint's escapes, injection through the API's filter
language, path traversal in artifact paths, oversized events and queries.

The deployment (conftest ``secured``): alice ran `modelog init` (admin), bob holds writer, signatures required.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import httpx2 as httpx
import pytest
from confluent_kafka import Producer

from modelog import Client
from modelog.wire.codec import Codec
from modelog.wire.envelope import now_micros
from modelog.wire.ids import uuid7
from modelog.wire.signing import Signer
from waiting import wait_until

from conftest import run_cli

pytestmark = pytest.mark.broker
MODEL = "credit-risk"


def client(secured, principal: str) -> Client:
    return Client(dataclasses.replace(secured.settings, principal=principal))


@pytest.fixture(scope="module")
def governed_model(secured):
    """credit-risk v1 (registered by alice); promotion to production and every alias need one approver;
    mia holds maintainer and approver on the model (so she may request, and could approve others')."""
    run_cli(secured.env, "keys", "create", "--principal", "mia")
    for role in ("maintainer", "approver"):
        run_cli(secured.env, "access", "grant", "mia", role, "--model", MODEL)
    rules = [{"name": "prod-needs-approval", "kind": "APPROVAL", "action": "PROMOTE", "stage": "production",
              "role": "approver"},
             {"name": "alias-needs-approval", "kind": "APPROVAL", "action": "SET_ALIAS", "role": "approver"}]
    alice = client(secured, "alice")
    try:
        with alice.start_run("models") as run:
            run.log_metric("auc", 0.9)
        alice.registry.register_model(MODEL, run_id=run.id, wait=True)
        alice.registry.set_policy(rules, model=MODEL)
        alice.wait_projected(30)
    finally:
        alice.close()
    wait_until(lambda: len(secured.sql("SELECT 1 FROM role_assignments WHERE principal = 'mia'")) == 2
               and secured.sql(f"SELECT 1 FROM policies WHERE scope = '{MODEL}'"), 30, "mia's roles and the policy")
    return secured


def status(secured, request_id: str) -> str:
    rows = secured.sql(f"SELECT status FROM requests WHERE request_id = '{request_id}'")
    return rows[0]["status"] if rows else "absent"


def settle(secured, c: Client) -> None:
    c.wait_projected(30)


def test_self_approval_by_the_requester_does_not_count(governed_model):
    s = governed_model
    mia = client(s, "mia")
    try:
        st = mia.registry.promote(MODEL, 1, "production", precheck=False)
        settle(s, mia)
        mia.registry.approve(MODEL, st.request_id, "looks good to me")
        settle(s, mia)
    finally:
        mia.close()
    assert s.sql(f"SELECT approver FROM approvals WHERE request_id = '{st.request_id}'") == [{"approver": "mia"}]
    assert status(s, st.request_id) == "PENDING"  # recorded, not counted
    assert s.sql(f"SELECT stage FROM model_versions WHERE model = '{MODEL}'") == [{"stage": "development"}]


def test_self_approval_by_an_admin_does_not_count(governed_model):
    s = governed_model
    alice = client(s, "alice")
    try:
        st = alice.registry.promote(MODEL, 1, "production", precheck=False)
        settle(s, alice)
        alice.registry.approve(MODEL, st.request_id)
        settle(s, alice)
    finally:
        alice.close()
    assert status(s, st.request_id) == "PENDING"


def test_approval_through_a_second_path_alias_is_governed_too(governed_model):
    """Production guarded on PROMOTE; the alias path to the same version is guarded by its own rule."""
    s = governed_model
    mia = client(s, "mia")
    try:
        st = mia.registry.set_alias(MODEL, "production", 1, precheck=False)
        settle(s, mia)
        mia.registry.approve(MODEL, st.request_id)
        settle(s, mia)
    finally:
        mia.close()
    assert status(s, st.request_id) == "PENDING"
    assert s.sql(f"SELECT alias FROM model_aliases WHERE model = '{MODEL}'") == []


def test_approval_through_raw_kafka_is_judged_the_same(governed_model):
    """The requester's own signed approval produced straight to Kafka is not counted either, and an approval
    claiming to be another approver's (signed by the requester's key) is refused as actor_mismatch."""
    s = governed_model
    mia = client(s, "mia")
    try:
        st = mia.registry.promote(MODEL, 1, "production", comment="raw path", precheck=False)
        settle(s, mia)
    finally:
        mia.close()
    mia_key = Signer.from_pem(s.key_file("mia").read_bytes())
    for actor in ("mia", "bob"):
        record = {"envelope": {"event_id": uuid7(), "event_type": "ApprovalGiven", "occurred_at": now_micros(),
                               "actor": {"principal": actor, "kind": "USER"},
                               "source": {"host": "attacker", "pid": 1, "program": "raw", "sdk_version": "0"},
                               "entity": {"type": "model", "key": f"model:{MODEL}"}},
                  "model": MODEL, "request_id": st.request_id, "verdict": "APPROVE", "comment": None}
        topic = s.settings.topic_for("ApprovalGiven")
        value = Codec().encode("ApprovalGiven", record)
        eid = record["envelope"]["event_id"]
        headers = [("modelog.event_type", b"ApprovalGiven"), ("modelog.event_id", eid.encode()),
                   *mia_key.headers(topic, eid, value)]
        p = Producer({"bootstrap.servers": s.settings.bootstrap})
        p.produce(topic, key=f"model:{MODEL}".encode(), value=value, headers=headers)
        assert p.flush(30) == 0
    s.dead_letter("actor_mismatch", "actor 'bob'")
    wait_until(lambda: s.sql(f"SELECT approver FROM approvals WHERE request_id = '{st.request_id}'"), 30,
               "mia's raw approval recorded")
    assert s.sql(f"SELECT approver FROM approvals WHERE request_id = '{st.request_id}'") == [{"approver": "mia"}]
    assert status(s, st.request_id) == "PENDING"


# -- the SQL endpoint --------------------------------------------------------------------------------------

ESCAPES = {
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_text": "SELECT content FROM read_text('/etc/hostname')",
    "copy_to": "COPY (SELECT 1) TO '{out}'",
    "attach": "ATTACH '{out}.db' AS other",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "set": "SET enable_external_access = true",
    "pragma": "PRAGMA enable_external_access",
    "create": "CREATE TABLE x AS SELECT 1",
    "two_statements": "SELECT 1; DROP VIEW runs",
}


def post_sql(secured, query: str) -> tuple[int, str]:
    """POST to the processor's SQL endpoint as alice, the admin (a request signed with her key: the endpoint of
    a governed log answers only signed requests or tokens, decision 0022); the sandbox binds admins too."""
    from modelog.consumers.query import running_processor
    from modelog.wire.signing import key_path
    from modelog.wire.sqlauth import sign_request

    url = running_processor(secured.settings)["sql_url"]
    alice = Signer.from_pem(key_path(secured.settings.home, "alice").read_bytes())
    body = query.encode()
    headers = sign_request(alice, body) if len(body) < 1_000_000 else {}
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()[:200].decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_sql_endpoint_escapes_are_refused(secured, tmp_path, name):
    out = tmp_path / "leak.csv"
    query = ESCAPES[name].format(out=out)
    before = secured.snapshot()
    code, body = post_sql(secured, query)
    assert code == 400, (code, body)
    assert "error" in json.loads(body)
    cli = run_cli(secured.env, "sql", query, check=False)  # the CLI against the running processor
    assert cli.returncode != 0 and "root:" not in cli.stdout
    assert not out.exists() and not Path(f"{out}.db").exists()
    assert secured.snapshot() == before


def test_an_oversized_or_runaway_query_is_a_clear_error(secured):
    code, body = post_sql(secured, "SELECT " + " + ".join(["1"] * 100_000))  # ~400 KB of SQL
    assert code == 413 and "must be at most 262144 bytes of SQL" in body, (code, body[:200])
    code, body = post_sql(secured, "SELECT * FROM range(100000000) t")  # 10^8 rows: over the row cap
    assert code == 400 and "MODELOG_SQL_MAX_ROWS" in body, body[:300]
    code, body = post_sql(secured, "SELECT 1 AS still_answering")
    assert code == 200


# -- oversized and malformed events ------------------------------------------------------------------------

def test_an_oversized_or_absurd_event_is_dead_lettered_and_the_processor_goes_on(secured):
    """A record claiming an array of 2^62 items (a few bytes long), and a 900 KB record of junk: each a dead
    letter with the reason; a good event after them is still projected."""
    codec = Codec()
    good = {"envelope": {"event_id": uuid7(), "event_type": "ExperimentCreated", "occurred_at": now_micros(),
                         "actor": {"principal": "bob", "kind": "USER"},
                         "source": {"host": "h", "pid": 1, "program": "p", "sdk_version": "0"},
                         "entity": {"type": "experiment", "key": "after-junk"}},
            "experiment": "after-junk", "description": None}
    header = codec.encode("ExperimentCreated", good)[:10]  # magic byte + the writer's fingerprint
    absurd = header + b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"  # a zig-zag varint of ~2^62 as the first length
    junk = header + bytes(range(256)) * 3600
    p = Producer({"bootstrap.servers": secured.settings.bootstrap, "message.max.bytes": 2_000_000})
    for value in (absurd, junk):
        p.produce(secured.settings.tracking_topic, key=b"junk", value=value)
    assert p.flush(30) == 0
    bob = client(secured, "bob")
    try:
        bob.create_experiment("after-junk")
        bob.wait_projected(60)
    finally:
        bob.close()
    assert secured.sql("SELECT experiment FROM experiments WHERE experiment = 'after-junk'")
    sizes = (len(absurd), len(junk))
    dead = wait_until(lambda: [d for d in secured.sql("SELECT reason, detail, value_bytes FROM dead_letters")
                               if d["value_bytes"] in sizes] or None, 30, "the junk records dead-lettered")
    wait_until(lambda: len([d for d in secured.sql("SELECT value_bytes FROM dead_letters")
                            if d["value_bytes"] in sizes]) == 2, 30, "both junk records dead-lettered")
    dead = [d for d in secured.sql("SELECT reason, detail, value_bytes FROM dead_letters") if d["value_bytes"] in sizes]
    assert sorted(d["reason"] for d in dead) == ["malformed_body", "malformed_body"], dead
    assert any("Expected 4611686018427387903 bytes" in d["detail"] for d in dead)  # refused, not allocated


# -- the HTTP API ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(secured, tmp_path_factory):
    """The HTTP server (artifacts in a file:// store), alice's admin token and one run with an artifact."""
    store = tmp_path_factory.mktemp("artifact-store")
    env = {**secured.env, "MODELOG_ARTIFACT_URI": store.as_uri()}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_cli(env, "serve", "--background", "--port", str(port), "--timeout", "120")
    token = run_cli(env, "token", "create", "alice", "--role", "admin").stdout.strip()
    alice = Client(dataclasses.replace(secured.settings, principal="alice", artifact_uri=store.as_uri()))
    try:
        with alice.start_run("api-attacks", name="target") as run:
            run.log_param("lr", 0.1)
            run.log_metric("auc", 0.8)
            secret = Path(secured.settings.home) / "artifact.txt"
            secret.write_text("model bytes")
            run.log_artifact(str(secret))
        alice.wait_projected(30)
    finally:
        alice.close()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        yield http, run.id, env
    run_cli(env, "serve", "--stop", check=False)


@pytest.mark.parametrize("flt", [
    "params.lr = '0.1'; DROP VIEW runs; --'",
    "params.lr = '0.1' OR 1=1 --",
    "params.\"lr\"\" OR 1=1 --\" = '1'",
    "tags.x = '' UNION SELECT * FROM read_csv('/etc/passwd') --",
    "metrics.auc > 0 OR read_text('/etc/passwd') IS NOT NULL",
])
def test_sql_injection_through_the_filter_language_is_data_or_refused(api, secured, flt):
    http, run_id, _ = api
    before = secured.snapshot()
    r = http.get("/runs", params={"experiment": "api-attacks", "filter": flt})
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:  # treated as data: nothing matches the odd value, nothing leaks
        assert "root:" not in r.text and r.json()["runs"] == []
    else:
        assert r.json()["field"] == "filter"
    assert http.get(f"/runs/{run_id}").status_code == 200
    assert secured.snapshot() == before


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "..%2f..%2fetc%2fpasswd",
                                  "file:///etc/passwd", "//proc/self/environ", "artifact.txt/../../../etc/passwd"])
def test_path_traversal_in_artifact_paths_is_refused(api, secured, tmp_path, path):
    http, run_id, env = api
    r = http.get(f"/runs/{run_id}/artifacts/{path}")
    assert r.status_code in (404, 422), (r.status_code, r.text[:200])
    assert "root:" not in r.text
    dest = tmp_path / "out"
    out = run_cli(env, "artifacts", "get", run_id, path.replace("%2e", ".").replace("%2f", "/"), "-o",
                  str(dest), check=False)
    assert out.returncode != 0 and not dest.exists()
    assert http.get(f"/runs/{run_id}/artifacts/artifact.txt").content == b"model bytes"  # the real one still serves

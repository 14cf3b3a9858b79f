"""Audit routes: the audit log (filters, keyset pages) and one event read back from the log."""

from __future__ import annotations

import pytest

from modelog.server.log import LogRecord

API = "/api/v1"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def history(live, tok):
    c = live.client("alice")
    run = c.start_run(experiment="audit", environment=False)
    run.log_params({"lr": 0.1, "blob": "x"})
    for step in range(3):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    run.end()
    c.flush()
    return run.id


def test_audit_newest_first_with_filters(api, tok, live, history):
    r = api.get(f"{API}/audit", headers=auth(tok["reader"]))
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    keys = [(e["occurred_at"], e["event_id"]) for e in events]
    assert keys == sorted(keys, reverse=True) and r.json()["next_page_token"] is None
    mine = api.get(f"{API}/audit", params={"entity": history}, headers=auth(tok["reader"])).json()["events"]
    assert {e["actor"] for e in mine} == {"alice"} and mine[0]["event_type"] == "RunEnded"
    assert {e["event_type"] for e in mine} >= {"RunStarted", "ParamsLogged", "RunEnded"}
    assert api.get(f"{API}/audit", params={"entity": f"run:{history}"}, headers=auth(tok["reader"])).json()[
        "events"] == mine
    by_actor = api.get(f"{API}/audit", params={"actor": "root"}, headers=auth(tok["reader"])).json()["events"]
    assert by_actor and {e["event_type"] for e in by_actor} == {"TokenIssued"}
    assert api.get(f"{API}/audit", params={"from": "2100-01-01"}, headers=auth(tok["reader"])).json()["events"] == []
    assert api.get(f"{API}/audit", params={"to": "2000-01-01T00:00Z"},
                   headers=auth(tok["reader"])).json()["events"] == []


def test_audit_pages_cover_everything_once(api, tok, history):
    everything = api.get(f"{API}/audit", headers=auth(tok["reader"])).json()["events"]
    seen, token = [], None
    while True:
        params = {"limit": 3, **({"page_token": token} if token else {})}
        page = api.get(f"{API}/audit", params=params, headers=auth(tok["reader"])).json()
        seen += page["events"]
        token = page["next_page_token"]
        if token is None:
            break
    assert [e["event_id"] for e in seen] == [e["event_id"] for e in everything]


@pytest.mark.parametrize("params, field", [({"limit": 1001}, "limit"), ({"limit": 0}, "limit"),
                                           ({"page_token": "garbage"}, "page_token"), ({"from": "noon"}, "from")])
def test_audit_bad_parameters_are_422(api, tok, params, field):
    r = api.get(f"{API}/audit", params=params, headers=auth(tok["reader"]))
    assert r.status_code == 422 and r.json()["field"] == field


class _FakeLog:
    def __init__(self, live):
        self.live = live
        self.reads = []

    def read(self, topic, partition, offset):
        self.reads.append((topic, partition, offset))
        return LogRecord(topic, partition, offset, 1_760_000_000_000, b"k", self.live.emitter.encoded[offset],
                         (("modelog.event_type", b"X"),))


def test_an_event_read_back_from_the_log(api, server_app, tok, live, history):
    server_app.state.record_reader = fake = _FakeLog(live)
    row = live.sql("SELECT event_id, topic, \"partition\", \"offset\" FROM audit_log WHERE event_type = 'ParamsLogged'")[0]
    r = api.get(f"{API}/events/{row['event_id']}", headers=auth(tok["reader"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert fake.reads == [(row["topic"], row["partition"], row["offset"])]
    assert body["event_type"] == "ParamsLogged" and body["offset"] == row["offset"] and body["topic"] == row["topic"]
    assert body["record"]["run_id"] == history and body["record"]["envelope"]["actor"]["principal"] == "alice"
    assert {p["key"] for p in body["record"]["params"]} == {"lr", "blob"}
    assert api.get(f"{API}/events/nope", headers=auth(tok["reader"])).status_code == 404
    assert api.get(f"{API}/events/{row['event_id']}").status_code == 401

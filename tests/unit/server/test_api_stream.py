"""The live feed's decoding, dedupe and fan-out, and the SSE route, in-process (the Kafka side is in
tests/integration/test_api.py)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from factories import monitoring_records

from modelog.server.stream import LiveFeed
from modelog.wire.codec import Codec
from modelog.wire.envelope import Event

API = "/api/v1"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _records(live):
    c = live.client("alice")
    run = c.start_run(experiment="live", environment=False)
    run.log_metrics({"loss": 0.5}, step=1)
    run.end()
    other = c.start_run(experiment="live", environment=False)
    other.log_metrics({"loss": 0.7}, step=1)
    other.end()
    c.flush()
    alert = monitoring_records()["AlertChanged"]
    live.emitter.emit([Event("AlertChanged", "monitor:credit-risk", alert)])
    return run.id, other.id


def _quiet(feed: LiveFeed) -> LiveFeed:
    """``feed`` with its Kafka consumer replaced by a thread that only waits (the tests dispatch)."""
    def run():
        feed._ready.set()
        feed._stop.wait()

    feed._run = run
    return feed


def test_dispatch_decodes_filters_and_dedupes(live):
    run_id, other = _records(live)
    feed = _quiet(LiveFeed(live.settings))

    async def scenario():
        mine = feed.subscribe(run_id=run_id, model="credit-risk")
        everything = feed.subscribe()
        nobody = feed.subscribe(run_id="x", model="y")
        for i, value in enumerate(live.emitter.encoded):
            feed.dispatch("t", 0, i, value)
        feed.dispatch("t", 0, 99, live.emitter.encoded[-1])  # a re-sent record: delivered once
        await asyncio.sleep(0.05)
        out = {}
        for name, sub in (("mine", mine), ("everything", everything), ("nobody", nobody)):
            items = []
            while not sub.queue.empty():
                items.append(sub.queue.get_nowait())
            out[name] = items
        return out

    try:
        out = asyncio.run(scenario())
    finally:
        feed.close()
    assert [(i.kind, i.data.get("status")) for i in out["mine"]] == [("run", "RUNNING"), ("metrics", None),
                                                                     ("run", "FINISHED"), ("alert", None)]
    assert out["mine"][1].data["points"][0]["value"] == 0.5 and out["mine"][3].data["state"] == "RAISED"
    assert len(out["everything"]) == 7 and out["nobody"] == []
    assert {i.run_id for i in out["everything"] if i.kind == "metrics"} == {run_id, other}


def test_undecodable_or_uninteresting_records_are_skipped(live):
    feed = LiveFeed(live.settings)
    assert feed.dispatch("t", 0, 0, b"garbage") is None
    c = live.client("alice")
    c.create_experiment("e")
    assert feed.dispatch("t", 0, 1, live.emitter.encoded[-1]) is None


@pytest.fixture
def fake_feed(server_app, live):
    """The app's feed, quiet (see _quiet)."""
    feed = _quiet(LiveFeed(live.settings))
    server_app.state.live_feed = feed
    yield feed
    feed.close()


def test_the_sse_route_streams_matching_events(api, tok, live, fake_feed):
    run_id, _ = _records(live)
    got: list[tuple[str, dict]] = []

    def feed_later():
        while fake_feed.subscribers == 0:
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)
        for i, value in enumerate(live.emitter.encoded):
            fake_feed.dispatch("t", 0, i, value)

    threading.Thread(target=feed_later, daemon=True).start()
    with api.stream("GET", f"{API}/stream", params={"run_id": run_id}, headers=auth(tok["reader"])) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == ": subscribed"
        event = None
        for line in lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                got.append((event, json.loads(line[6:])))
                if event == "alert":
                    break
    assert [e for e, _ in got] == ["run", "metrics", "run", "alert"]
    assert got[1][1]["run_id"] == run_id and got[2][1]["status"] == "FINISHED"


def test_the_stream_needs_a_token(api):
    assert api.get(f"{API}/stream").status_code == 401

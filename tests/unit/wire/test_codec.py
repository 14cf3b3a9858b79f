"""Wire format: single-object encoding, Confluent framing, and decode errors with reasons."""

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from factories import metric_points_record, same, sample_records
from modelog import DecodeError
from modelog.wire import metric_columns
from modelog.wire.codec import Codec
from modelog.wire.schemas import crc64_avro, current_schemas


def test_crc64_matches_avro_spec_vector():
    # Avro spec: fingerprint of the canonical form of "int" (as used by the Java reference implementation)
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F


@pytest.mark.parametrize("event_type", sorted(current_schemas()))
def test_round_trip_every_event(event_type):
    codec = Codec()
    record = sample_records()[event_type]
    data = codec.encode(event_type, record)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == current_schemas()[event_type].fingerprint
    decoded = codec.decode(data)
    assert decoded.event_type == event_type
    assert same(decoded.record, record)
    assert codec.event_type(data) == event_type  # read from the framing alone


@pytest.mark.parametrize("data", [b"", None, b"hello world", b"\xc3\x01" + b"\x00" * 8 + b"abc", b"\xc3\x01\x00",
                                  b"\x00\x00\x00\x00\x01abc"])
def test_the_framing_names_no_event_type_where_decode_would_refuse_or_needs_a_registry(data):
    assert Codec().event_type(data) is None


@pytest.mark.parametrize("form", ["columns", "points"])
def test_nan_and_infinities_survive(form):
    record = sample_records()["MetricsLogged"] if form == "columns" else metric_points_record()
    rec = Codec().decode(Codec().encode("MetricsLogged", record)).record
    values = [p["value"] for p in metric_columns.points(rec)]
    assert values[0] == 0.5 and math.isnan(values[1]) and values[2] == math.inf and values[3] == -math.inf
    assert (rec["columns"] is None) == (form == "points")


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (None, "empty"),
    (b"hello world", "not_modelog_event"),
    (b"\xc3\x01" + b"\x00" * 8 + b"abc", "unknown_schema"),
])
def test_garbage_is_rejected_with_a_reason(data, reason):
    with pytest.raises(DecodeError) as err:
        Codec().decode(data)
    assert err.value.reason == reason


def test_truncated_and_padded_bodies_are_malformed():
    good = Codec().encode("TagsSet", sample_records()["TagsSet"])
    for bad in (good[:-3], good + b"\x00\x01"):
        with pytest.raises(DecodeError) as err:
            Codec().decode(bad)
        assert err.value.reason == "malformed_body"


class _Registry(BaseHTTPRequestHandler):
    """A minimal Confluent Schema Registry (the two calls modelog uses), over a real socket."""

    schemas: dict[int, str] = {}

    def log_message(self, *a):
        pass

    def _json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for sid, s in self.schemas.items():
            if s == body["schema"]:
                return self._json(200, {"id": sid})
        sid = len(self.schemas) + 1
        self.schemas[sid] = body["schema"]
        self._json(200, {"id": sid})

    def do_GET(self):
        sid = int(self.path.rsplit("/", 1)[-1])
        if sid not in self.schemas:
            return self._json(404, {"error_code": 40403, "message": "Schema not found"})
        self._json(200, {"schema": self.schemas[sid]})


@pytest.fixture
def registry_url():
    _Registry.schemas = {}
    server = HTTPServer(("127.0.0.1", 0), _Registry)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_confluent_framing_with_a_registry(registry_url):
    codec = Codec(registry_url, topic="modelog.tracking")
    record = sample_records()["RunEnded"]
    data = codec.encode("RunEnded", record)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1
    # a fresh reader fetches the writer schema by id
    decoded = Codec(registry_url).decode(data)
    assert decoded.writer_id == "sr:1" and same(decoded.record, record)
    # single-object records still decode on the same codec (mixed topics)
    assert Codec(registry_url).decode(Codec().encode("RunEnded", record)).event_type == "RunEnded"
    with pytest.raises(DecodeError) as err:
        Codec(registry_url).decode(b"\x00\x00\x00\x00\x63" + data[5:])
    assert err.value.reason == "unknown_schema"
    with pytest.raises(DecodeError):
        Codec().decode(data)  # no registry configured: cannot resolve the id

"""Write encoded samples for the current schema versions (only files that are missing)."""

import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from factories import sample_records, wire_form  # noqa: E402

from modelog.wire.codec import Codec  # noqa: E402
from modelog.wire.schemas import current_schemas  # noqa: E402


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, bytes):  # Avro bytes (a public key): read back by test_schemas._from_json
        return {"$bytes_hex": v.hex()}
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def main() -> None:
    codec = Codec()
    for event_type, record in sample_records().items():
        fp = current_schemas()[event_type].fingerprint.hex()
        stem = f"{event_type}.{fp}"
        if (HERE / f"{stem}.bin").exists():
            continue
        data = codec.encode(event_type, wire_form(event_type, record))
        (HERE / f"{stem}.bin").write_bytes(data)
        # what a reader reads (a compact form, decision 0030, reads as the first one)
        (HERE / f"{stem}.json").write_text(json.dumps(_json_safe(codec.decode(data).record), indent=2) + "\n")
        print("wrote", stem)


if __name__ == "__main__":
    main()

"""modelog's Avro event schemas (package data).

Each ``modelog.events.<Type>.avsc`` file is one event; every event embeds the
``modelog.Envelope`` record. Files follow the ``<full name>.avsc`` convention,
so plain ``fastavro.schema.load_schema(path)`` resolves the references.
``released/`` holds every released version, fully expanded, named by its
CRC-64-AVRO fingerprint: readers use them as writer schemas.
"""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
RELEASED_DIR = SCHEMA_DIR / "released"

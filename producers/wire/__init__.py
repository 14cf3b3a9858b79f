"""The wire: how an event is made, checked, encoded and published.

Settings (``MODELOG_*``), the error tree, ids, the envelope, the schemas and the
pydantic models generated from them, the value rules, the API token format, the Avro codec, topics, the
emitter that publishes to Kafka, and the files in ``MODELOG_HOME`` through which
processes find each other. Everything else in modelog builds on this; it imports
only :mod:`modelog.schemas`.
"""

"""The HTTP server: the REST API, the web UI and the gateways (MLflow, OpenLineage) — one ASGI process
that reads the views and writes through the log like the SDK. Its modules land here."""

"""Running the server: the local admin token, uvicorn, and ``server.json`` for ``--status`` / ``--stop``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


from modelog.wire.errors import ModelogError, QueryError
from modelog.wire.home import admin_token_file, running_processor, server_file
from modelog.wire.settings import Settings


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_admin_token(settings: Settings, app) -> str:
    """The local admin's token: the one kept in ``$MODELOG_HOME/server/admin.token`` while it is valid,
    else a new one, issued as an event (only its hash is on the log) and kept there with mode 0600."""
    from modelog.sdk.tokens import issue_token

    path = admin_token_file(settings)
    authority = app.state.authority
    if path.exists():
        token = path.read_text().strip()
        try:
            authority.authenticate(token)
            return token
        except Exception:  # noqa: BLE001 -- revoked, expired or unknown (a new log): issue another
            pass
    client = app.state.publisher.client(settings.principal)
    issued = issue_token(client, settings.principal, ["admin"], description="local admin (modelog serve)")
    client.wait_projected()
    _write_private(path, issued.token + "\n")
    authority.forget()
    return issued.token


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 5080, loglevel: str = "warning") -> None:
    """Serve the API and UI until interrupted; print the URL to open (with the admin's login token)."""
    import uvicorn

    from modelog.server.app import create_app

    if settings.lake_path is None and running_processor(settings) is None and not settings.views_path.exists():
        raise ModelogError("no views to serve: start the processor first (modelog process --background)")
    app = create_app(settings)
    try:
        token = ensure_admin_token(settings, app)
    except QueryError as exc:
        raise ModelogError(f"cannot read the views to check tokens ({exc}); is the processor running?") from exc
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{shown}:{port}"
    info_path = server_file(settings)

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started:
                info_path.write_text(json.dumps({"pid": os.getpid(), "url": url, "ready": True}))
                print(f"modelog serving {settings.views_target} at {url}\n"
                      f"  open: {url}/?token={token}\n"
                      f"  API:  {url}/api/v1 (Authorization: Bearer <token>), OpenAPI: {url}/api/v1/openapi.json",
                      flush=True)

    # open event streams (/api/v1/stream) never end by themselves: give them 3 s, then the lifespan closes them
    server = Server(uvicorn.Config(app, host=host, port=port, log_level=loglevel, access_log=False,
                                   timeout_graceful_shutdown=3))
    try:
        server.run()
    finally:
        try:
            if json.loads(info_path.read_text()).get("pid") == os.getpid():
                info_path.unlink()
        except (OSError, ValueError):
            pass
    if not server.started:
        print(f"modelog serve: could not listen on {host}:{port}", file=sys.stderr)
        sys.exit(1)

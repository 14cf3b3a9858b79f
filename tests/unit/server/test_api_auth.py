"""The server's authentication and authorization, in-process (FastAPI's TestClient) over real DuckDB views.

Events are made by the real SDK and projected into a real views file by the real projector (conftest's
``live``); the server reads that file. The broker-backed tests are in tests/integration.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from modelog.sdk.tokens import issue_token, revoke_token
from modelog.server.app import API, create_app
from modelog.server.auth import SESSION_COOKIE, TokenAuthority


@pytest.fixture
def world(live):
    """The views file of conftest's ``live`` (the real projector over what the SDK emitted)."""
    return live


@pytest.fixture
def tokens(world):
    admin = world.client("root")
    out = {role: issue_token(admin, f"{role}-user", [role]).token for role in ("admin", "writer", "reader")}
    revoked = issue_token(admin, "gone", ["admin"])
    revoke_token(admin, revoked.token_id)
    out["revoked"] = revoked.token
    out["expired"] = issue_token(admin, "old", ["admin"], expires="1m").token
    world.project()
    return out


@pytest.fixture
def app(world):
    return create_app(world.settings, publisher=_NoPublisher(), ui=True)


class _NoPublisher:
    """Routes under test here only read; a write reaching the publisher fails the test loudly."""

    def client(self, principal):
        raise AssertionError("this test does not publish")

    def close(self):
        return None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# every route under these is a data route: the REST API and the MLflow gateway (its REST API, its artifact proxy)
GUARDED = (API, "/api/2.0/mlflow", "/ajax-api/2.0/mlflow")


def api_routes(app) -> list[tuple[str, APIRoute]]:
    """(full path, route) of every APIRoute of ``app``, also those of included routers (FastAPI keeps an
    included router as one entry of ``app.routes`` with its prefix)."""
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            out.append((route.path, route))
        elif hasattr(route, "original_router") and hasattr(route, "include_context"):
            prefix = route.include_context.prefix
            out.extend((prefix + r.path, r) for r in route.original_router.routes if isinstance(r, APIRoute))
    return out


def test_every_api_route_declares_its_permission(app):
    unguarded, seen = [], set()
    for path, route in api_routes(app):
        if not path.startswith(GUARDED):
            continue
        seen.add(next(p for p in GUARDED if path.startswith(p)))
        perms = [d.call.permission for d in route.dependant.dependencies if hasattr(d.call, "permission")]
        if len(perms) != 1:
            unguarded.append(f"{sorted(route.methods)} {path}")
    assert not unguarded, f"API routes without an authorization rule (use requires(...)): {unguarded}"
    assert seen == set(GUARDED), f"no routes found under {set(GUARDED) - seen}: the walk missed them"


def test_the_rule_check_sees_included_routers_and_the_mlflow_gateway(app):
    paths = {p for p, _ in api_routes(app)}
    assert {f"{API}/runs", f"{API}/models/{{name}}", "/api/2.0/mlflow/runs/log-batch",
            "/ajax-api/2.0/mlflow/registered-models/alias", "/api/2.0/mlflow-artifacts/artifacts/{path:path}"} <= paths


def test_the_rule_check_fails_on_an_unguarded_route(app):
    @app.get(f"{API}/oops")
    def oops() -> dict:
        return {}

    with pytest.raises(AssertionError, match="oops"):
        test_every_api_route_declares_its_permission(app)


@pytest.mark.parametrize("headers, why", [
    ({}, "no credentials"),
    ({"Authorization": "Basic abc"}, "expected 'Bearer <token>'"),
    ({"Authorization": "Bearer nonsense"}, "malformed token"),
    ({"Authorization": "Bearer mlg_0123456789ab_" + "x" * 43}, "unknown token"),
])
def test_no_or_bad_credentials_are_401_problems(app, tokens, headers, why):
    r = TestClient(app).get(f"{API}/experiments", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert why in r.json()["detail"] and r.json()["status"] == 401


def test_a_wrong_secret_for_a_known_id_is_401(app, tokens):
    token = tokens["admin"]
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    r = TestClient(app).get(f"{API}/experiments", headers=bearer(forged))
    assert r.status_code == 401 and r.json()["detail"] == "unknown token"


@pytest.mark.parametrize("which, why", [("revoked", "token revoked"), ("expired", "token expired")])
def test_revoked_and_expired_tokens_are_401(app, tokens, which, why, monkeypatch):
    if which == "expired":
        import time

        later = time.time() + 120
        app.state.authority = TokenAuthority(app.state.views.token, clock=lambda: later)
    r = TestClient(app).get(f"{API}/experiments", headers=bearer(tokens[which]))
    assert r.status_code == 401 and r.json()["detail"] == why


def test_a_valid_token_reads_and_roles_limit_writes(app, tokens):
    c = TestClient(app)
    assert c.get(f"{API}/experiments", headers=bearer(tokens["reader"])).status_code == 200
    r = c.post(f"{API}/runs", json={"experiment": "e"}, headers=bearer(tokens["reader"]))
    assert r.status_code == 403 and "lacks the 'write' permission" in r.json()["detail"]


def test_ui_login_sets_a_strict_httponly_cookie_and_drops_the_token_from_the_url(app, tokens):
    c = TestClient(app)
    r = c.get(f"/?token={tokens['reader']}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert c.get(f"{API}/experiments").status_code == 200  # the session cookie authenticates reads
    page = c.get("/")
    assert page.status_code == 200 and 'name="csrf-token"' in page.text


def test_cookie_writes_need_the_csrf_token(app, tokens):
    c = TestClient(app)
    c.get(f"/?token={tokens['admin']}", follow_redirects=False)
    r = c.post(f"{API}/sql", json={"query": "SELECT 1 AS one"})
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    csrf = c.get("/").text.split('name="csrf-token" content="')[1].split('"')[0]
    r = c.post(f"{API}/sql", json={"query": "SELECT 1 AS one"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["rows"] == [{"one": 1}]


def test_a_bad_login_shows_the_reason_escaped(app, tokens):
    r = TestClient(app).post("/login", data={"token": "<script>alert(1)</script>"})
    assert r.status_code == 401 and "malformed token" in r.text and "<script>alert" not in r.text


def test_openapi_document_is_served(app):
    doc = TestClient(app).get(f"{API}/openapi.json").json()
    assert f"{API}/runs" in doc["paths"] and doc["info"]["title"] == "modelog"


def test_sql_through_the_api_cannot_read_files(app, tokens):
    r = TestClient(app).post(f"{API}/sql", json={"query": "SELECT * FROM read_csv('/etc/passwd')"},
                             headers=bearer(tokens["admin"]))
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert "table function read_csv(): not allowed here" in r.json()["detail"]


def test_every_response_carries_the_content_security_policy_and_no_sniffing(api, tok):
    for path, headers in (("/api/v1/experiments", bearer(tok["reader"])), ("/api/v1/experiments", {}),
                          ("/api/v1/openapi.json", {}), ("/login", {})):
        r = api.get(path, headers=headers)
        assert r.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';"), path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert (r.headers["x-content-type-options"], r.headers["x-frame-options"]) == ("nosniff", "DENY"), path

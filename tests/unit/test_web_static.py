"""The web UI's static files: served without a token, with their content types, cache and
security headers; nothing else outside /v1 is let through without one; not in the API's
OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from omnigent.api.app import create_app
from omnigent.errors import Unauthenticated


class NoTokens:
    """The app's state as far as the auth middleware asks: no token is good."""

    async def user_for_token(self, token):
        raise Unauthenticated("missing or invalid bearer token")


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = create_app()
    app.state.omnigent = NoTokens()
    return TestClient(app, raise_server_exceptions=False)


def test_index_without_a_token(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/ui/app.js">' in r.text


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/term.js", "text/javascript; charset=utf-8"),
        ("/ui/diff.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/vendor/xterm.mjs", "text/javascript; charset=utf-8"),
        ("/ui/vendor/addon-fit.mjs", "text/javascript; charset=utf-8"),
        ("/ui/vendor/xterm.css", "text/css; charset=utf-8"),
        ("/ui/highlight.js", "text/javascript; charset=utf-8"),
        ("/ui/vendor/highlight/highlight.min.js", "text/javascript; charset=utf-8"),
        ("/ui/vendor/highlight/github.min.css", "text/css; charset=utf-8"),
    ],
)
def test_assets(client, path, ctype):
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ctype
    assert r.headers["cache-control"] == "no-cache"
    etag = r.headers["etag"]
    again = client.get(path, headers={"If-None-Match": etag})  # revalidated, not sent again
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag


@pytest.mark.parametrize(
    "path",
    [
        "/ui/nope.js",
        "/ui/../api/app.py",
        "/ui/%2e%2e/api/app.py",
        "/ui/..%2f..%2fserver.py",
        "/ui/vendor/LICENSE.xterm",  # no served type: not served
        "/ui/vendor/highlight/LICENSE",
        "/ui/",
    ],
)
def test_nothing_else(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_v1_still_needs_a_token(client):
    r = client.get("/v1/hosts")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


def test_not_in_the_openapi_document(client):
    paths = create_app().openapi()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/ui")]

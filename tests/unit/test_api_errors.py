"""The contract's error body through a real FastAPI app
(omnigent.http_errors.install_error_handlers)."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from omnigent import errors as e
from omnigent.http_errors import install_error_handlers as install


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    install(app)

    @app.get("/raise/not-found")
    def _nf():
        raise e.NotFound("no such host", code="host_not_found")

    @app.get("/raise/offline")
    def _off():
        raise e.HostOffline("host is offline")

    @app.get("/raise/unauth")
    def _unauth():
        raise e.Unauthenticated("missing token")

    @app.get("/raise/timeout")
    def _timeout():
        raise e.UpstreamTimeout("no answer in 5 s")

    @app.get("/raise/bug")
    def _bug():
        raise RuntimeError("secret internals")

    @app.get("/needs-int")
    def _needs_int(n: int):
        return {"n": n}

    return TestClient(app, raise_server_exceptions=False)


def _error(r):
    body = r.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_omnigent_error_custom_code(client):
    r = client.get("/raise/not-found")
    assert r.status_code == 404
    assert _error(r) == {"code": "host_not_found", "message": "no such host"}


def test_conflict_subclass(client):
    r = client.get("/raise/offline")
    assert r.status_code == 409
    assert _error(r)["code"] == "host_offline"


def test_unauthenticated_has_www_authenticate(client):
    r = client.get("/raise/unauth")
    assert r.status_code == 401
    assert _error(r)["code"] == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"


def test_timeout_is_504(client):
    r = client.get("/raise/timeout")
    assert r.status_code == 504
    assert _error(r)["code"] == "host_timeout"


def test_unexpected_exception_is_500_without_internals(client):
    r = client.get("/raise/bug")
    assert r.status_code == 500
    assert _error(r) == {"code": "internal_error", "message": "internal server error"}
    assert "secret" not in r.text


@pytest.mark.parametrize("query", ["", "?n=abc"])
def test_validation_error_shape(client, query):
    r = client.get("/needs-int" + query)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    assert "n" in err["message"]
    assert isinstance(err["details"], list) and err["details"]
    assert err["details"][0]["loc"] == ["query", "n"]


def test_valid_request_passes(client):
    r = client.get("/needs-int?n=7")
    assert r.status_code == 200 and r.json() == {"n": 7}


def test_unknown_route_is_404_with_error_shape(client):
    r = client.get("/no/such/route")
    assert r.status_code == 404
    assert _error(r)["code"] == "not_found"


def test_wrong_method_is_405_with_error_shape(client):
    r = client.post("/needs-int?n=1")
    assert r.status_code == 405
    assert _error(r)["code"] == "method_not_allowed"


def test_405_keeps_allow_header(client):
    r = client.post("/needs-int?n=1")
    assert r.status_code == 405
    assert r.headers.get("allow") == "GET"

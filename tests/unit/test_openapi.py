"""The OpenAPI document is the whole API: every route, typed answers, the bearer scheme
and the contract's error body on every error status; it validates as OpenAPI 3.1."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from openapi_spec_validator import validate

from actors import runner_api
from omnigent.api.app import create_app

PREFIX = "/v1/sessions/{session_id}"


@pytest.fixture(scope="module")
def doc() -> dict:
    return create_app().openapi()


def _ops(doc):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_validates_as_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_runner_route_is_documented_under_the_session(doc):
    for route in runner_api.router.routes:
        if not isinstance(route, APIRoute):
            continue  # the attach WebSocket: described in the document's description
        path = PREFIX + route.path.replace("{path:path}", "{path}")
        for method in route.methods:
            assert method.lower() in doc["paths"].get(path, {}), (method, path)


def test_environment_routes_are_there(doc):
    env = PREFIX + "/resources/environments/{environment_id}"
    wanted = {
        ("get", env + "/filesystem/{path}"),
        ("put", env + "/filesystem/{path}"),
        ("patch", env + "/filesystem/{path}"),
        ("delete", env + "/filesystem/{path}"),
        ("get", env + "/changes"),
        ("get", env + "/diff/{path}"),
        ("get", env + "/search"),
        ("post", env + "/shell"),
        ("post", PREFIX + "/resources/terminals"),
        ("post", PREFIX + "/resources/files/{file_id}/fetch"),
    }
    have = {(m, p) for p, m, _ in _ops(doc)}
    assert wanted <= have, wanted - have
    assert len(have) >= 37  # 23 before the runner routes were declared


def test_bearer_scheme_and_401_everywhere(doc):
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert doc["security"] == [{"bearerAuth": []}]
    for path, method, op in _ops(doc):
        assert "401" in op["responses"], (method, path)


def test_every_error_answers_the_contract_body(doc):
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    for path, _method, op in _ops(doc):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)


def test_every_json_answer_is_typed(doc):
    for path, method, op in _ops(doc):
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert ok, (method, path)
        content = op["responses"][ok[0]].get("content", {})
        if "application/json" in content:
            assert content["application/json"]["schema"] != {}, (method, path)


def test_validation_errors_are_documented_as_422_with_codes(doc):
    op = doc["paths"][PREFIX + "/resources/environments/{environment_id}/shell"]["post"]
    assert "422" in op["responses"] and "validation_error" in op["responses"]["422"]["description"]
    assert (
        "404" in op["responses"]
        and "environment_not_found" in op["responses"]["404"]["description"]
    )


def test_operation_ids_are_unique(doc):
    ids = [op["operationId"] for _, _, op in _ops(doc)]
    assert len(ids) == len(set(ids))


def test_websocket_protocol_is_described(doc):
    text = doc["info"]["description"]
    for needle in ("/attach", "read_only", "resize", "4404", "4401", '"type": "auth"'):
        assert needle in text

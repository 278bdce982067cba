from __future__ import annotations

import pytest
from starlette.testclient import TestClient


def test_every_response_has_a_fresh_request_id(client: TestClient) -> None:
    first = client.get("/_health").headers["x-request-id"]
    second = client.get("/missing").headers["x-request-id"]
    assert first != second
    assert len(first) == 16


def test_a_sane_incoming_request_id_is_kept(client: TestClient) -> None:
    response = client.get("/_health", headers={"X-Request-ID": "caddy-7f3a.1"})
    assert response.headers["x-request-id"] == "caddy-7f3a.1"


@pytest.mark.parametrize("hostile", ["a b", "x" * 200, "<script>", "id\u00e9", "a,b"])
def test_a_hostile_incoming_request_id_is_replaced(client: TestClient, hostile: str) -> None:
    response = client.get("/_health", headers={"X-Request-ID": hostile.encode("utf-8")})  # type: ignore[dict-item]
    assert response.headers["x-request-id"] != hostile
    assert len(response.headers["x-request-id"]) == 16

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


def test_a_client_gone_before_its_body_is_no_server_error(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from shoestring import App, Request

    app = client.app
    assert isinstance(app, App)

    @app.route("/upload", methods=["POST"])
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}  # the client closed the connection

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/upload", "raw_path": b"/upload",
        "query_string": b"", "headers": [(b"content-length", b"5")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000), "scheme": "http", "http_version": "1.1", "root_path": "",
    }  # fmt: skip
    client.portal.call(app, scope, receive, send)  # type: ignore[union-attr, arg-type]
    assert sent == []  # nobody to answer
    assert not [r for r in caplog.records if r.levelname == "ERROR"]

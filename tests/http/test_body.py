"""read_json: oversized, malformed and invalid bodies get their own status and code."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, Field
from starlette.testclient import TestClient

from shoestring import App, Request, read_json


class Note(BaseModel):
    email: str = Field(pattern=r"^[^@]+@[^@]+$")
    text: str = Field(max_length=20)


def _client(app: App) -> TestClient:
    @app.route("/notes", methods=["POST"])
    async def create(request: Request) -> dict[str, str]:
        note = await read_json(request, Note, max_bytes=100)
        return {"text": note.text}

    return TestClient(app)


def test_a_valid_body_becomes_the_model(app: App) -> None:
    with _client(app) as client:
        response = client.post("/notes", json={"email": "a@b.c", "text": "hi"})
    assert (response.status_code, response.json()) == (200, {"text": "hi"})


def test_each_bad_body_gets_its_status_and_code(app: App) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        yield b"x" * 200  # no Content-Length: counted as it streams
        yield b'"}'

    with _client(app) as client:
        declared = client.post("/notes", content=b"{" + b" " * 200 + b"}")
        streamed = client.post("/notes", content=chunks())
        broken = client.post("/notes", content=b'{"text": ')
        invalid = client.post("/notes", json={"email": "ada.secret@nowhere", "text": "y" * 30})
    assert (declared.status_code, declared.json()["error"]["code"]) == (413, "body_too_large")
    assert (streamed.status_code, streamed.json()["error"]["code"]) == (413, "body_too_large")
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_json")
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (422, "invalid_request")
    message = invalid.json()["error"]["message"]
    assert "text:" in message and "at most 20 characters" in message
    assert "ada.secret" not in message and "yyy" not in message  # values are never echoed

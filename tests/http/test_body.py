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


def test_bodies_json_has_no_word_for_are_invalid_json(app: App) -> None:
    class Price(BaseModel):
        price: float

    @app.route("/prices", methods=["POST"])
    async def create(request: Request) -> dict[str, float]:
        return {"price": (await read_json(request, Price, max_bytes=100_000)).price}

    with TestClient(app) as client:
        answers = [
            client.post("/prices", content=b'{"price": NaN}'),
            client.post("/prices", content=b'{"price": -Infinity}'),
            # nested deeper than Python's stack: a hostile body, not a 500
            client.post("/prices", content=b'{"price": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ]
        assert client.post("/prices", content=b'{"price": 1.5}').json() == {"price": 1.5}
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (400, "invalid_json")
    ] * 3

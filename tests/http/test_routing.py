"""shoestring's own `/_` routes and the app's routes side by side."""

from __future__ import annotations

from starlette.testclient import TestClient

from shoestring import App


def test_app_routes_under_underscore_and_elsewhere_still_answer(app: App) -> None:
    @app.route("/_hooks/stripe", methods=["POST"])
    async def hook() -> str:
        return "hooked"

    @app.route("/hello")
    async def hello() -> str:
        return "hi"

    with TestClient(app) as client:
        assert client.post("/_hooks/stripe").text == "hooked"
        assert client.get("/hello").text == "hi"
        assert client.get("/_health").status_code == 200
        assert client.get("/_nothing-here").status_code == 404


def test_a_wrong_method_on_a_system_route_is_405(client: TestClient) -> None:
    response = client.post("/_health")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    assert response.json()["error"]["code"] == "method_not_allowed"

import shoestring


def test_public_api_is_exactly_what_is_documented() -> None:
    assert sorted(shoestring.__all__) == [
        "App",
        "AppLoadError",
        "ConditionFailed",
        "ConfigError",
        "HTMLResponse",
        "HTTPError",
        "Health",
        "InvalidCode",
        "JSONResponse",
        "MISSING",
        "Page",
        "RateLimited",
        "RedirectResponse",
        "Request",
        "Response",
        "Service",
        "Settings",
        "ShoestringError",
        "Table",
        "__version__",
        "client_network",
        "load_settings",
        "read_json",
    ]
    for name in shoestring.__all__:
        assert hasattr(shoestring, name), name


def test_version_matches_the_installed_distribution() -> None:
    from importlib.metadata import version

    assert shoestring.__version__ == version("shoestring")

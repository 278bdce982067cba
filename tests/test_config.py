from __future__ import annotations

import json
import os
from pathlib import Path
from unittest.mock import patch

import pytest

from shoestring import ConfigError, load_settings
from shoestring.secrets import SecretError, Secrets


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "shoestring.toml").write_text(text)
    return tmp_path


def test_defaults_work_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    assert settings.server.port == 8000
    assert settings.server.host == "127.0.0.1"
    assert settings.log.format == "json"
    assert settings.data_dir == tmp_path.resolve() / "data"


def test_file_values_are_used_and_data_dir_is_relative_to_the_project(tmp_path: Path) -> None:
    write(tmp_path, 'data_dir = "var/state"\n[server]\nport = 9100\nworkers = 3\n')
    settings = load_settings(tmp_path, environ={})
    assert settings.server.port == 9100
    assert settings.server.workers == 3
    assert settings.data_dir == tmp_path.resolve() / "var/state"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nport = 9100\n")
    settings = load_settings(
        tmp_path,
        environ={
            "SHOESTRING_SERVER__PORT": "9200",
            "SHOESTRING_LOG__ACCESS_LOG": "false",
            "SHOESTRING_DATA_DIR": "/srv/data",
            "UNRELATED": "x",
        },
    )
    assert settings.server.port == 9200
    assert settings.log.access_log is False
    assert settings.data_dir == Path("/srv/data")


def test_secrets_in_the_environment_are_not_taken_for_settings(tmp_path: Path) -> None:
    environ = {"SHOESTRING_SECRET_STRIPE_TOKEN": "sk_live_x", "SHOESTRING_SERVER__PORT": "9300"}
    settings = load_settings(tmp_path, environ=environ)
    assert settings.server.port == 9300
    with patch.dict(os.environ, environ):
        assert Secrets(settings.data_dir / "secrets").get("stripe-token") == "sk_live_x"


def test_settings_kept_as_secrets_override_the_file_and_yield_to_the_environment(
    tmp_path: Path,
) -> None:
    write(tmp_path, '[mail]\ntransport = "dev"\n[server]\nport = 9100\n')
    secrets = Secrets(tmp_path / "data" / "secrets")
    relay = "smtp://app:s3cret@smtp.example.com:587"
    secrets.set("SHOESTRING_MAIL__TRANSPORT", relay)
    secrets.set("SHOESTRING_SERVER__PORT", "9200")
    settings = load_settings(tmp_path, environ={"SHOESTRING_SERVER__PORT": "9300"})
    assert settings.mail.transport == relay
    assert settings.server.port == 9300
    assert "SHOESTRING_MAIL__TRANSPORT" in secrets.names()
    # A bad value says which secret holds it.
    secrets.set("SHOESTRING_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError, match="secret SHOESTRING_SERVER__PORT") as caught:
        load_settings(tmp_path, environ={})
    assert "eighty" not in str(caught.value)  # a secret's value is never echoed


def test_a_bad_url_is_shown_without_its_password(tmp_path: Path) -> None:
    url = "postgressql://app:pa@ss/word@db.internal/app"
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={"SHOESTRING_DATABASE__URL": url})
    assert "environment variable SHOESTRING_DATABASE__URL" in str(caught.value)
    assert "postgressql://app:********@db.internal/app" in str(caught.value)
    assert "pa@ss" not in str(caught.value) and "word" not in str(caught.value)


def test_settings_kept_as_secrets_follow_the_data_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "srv"
    Secrets(elsewhere / "secrets").set("SHOESTRING_LOG__LEVEL", "warning")
    settings = load_settings(tmp_path, environ={"SHOESTRING_DATA_DIR": str(elsewhere)})
    assert settings.log.level == "warning"


@pytest.mark.parametrize("name", ["SHOESTRING_SECRET_X", "SHOESTRING_mail", "SHOESTRING_", "A B"])
def test_names_that_are_neither_a_secret_nor_a_setting_are_refused(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(SecretError, match="cannot be a secret name"):
        Secrets(tmp_path).set(name, "x")


def test_bad_value_names_file_key_found_and_allowed(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nport = 99999\n[log]\nformat = "xml"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    message = str(caught.value)
    assert str(tmp_path / "shoestring.toml") in message
    assert "`server.port` = 99999" in message
    assert "less than or equal to 65535" in message
    assert "`log.format` = 'xml'" in message
    assert "'json' or 'console'" in message


def test_unknown_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nprot = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "unknown key `server.prot`" in str(caught.value)
    assert "host, port, workers" in str(caught.value)


def test_unknown_key_inside_a_named_table_lists_the_allowed_ones(tmp_path: Path) -> None:
    write(tmp_path, '[sites.www]\nroots = "web"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "unknown key `sites.www.roots`" in str(caught.value)
    assert "root, root_in, bucket" in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://db/app", "sqlite://relative.db", "shoestring.db"])
def test_a_database_shoestring_cannot_run_on_is_a_config_error(tmp_path: Path, url: str) -> None:
    write(tmp_path, f'[database]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "`database.url`" in str(caught.value)
    assert "use `sqlite:///path.db`, `postgresql://" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Note", "é∑"), ("X-Note", "a\r\nSet-Cookie: evil=1"), ("X Note", "v"), ("X-Note:", "v")],
)
def test_a_site_header_that_cannot_be_sent_is_a_config_error(
    tmp_path: Path, name: str, value: str
) -> None:
    (tmp_path / "shoestring.toml").write_text(
        f'[sites.www]\nroot = "."\nheaders = {{ {json.dumps(name)} = {json.dumps(value)} }}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "`sites.www.headers`" in str(caught.value)


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={"SHOESTRING_SERVER__WORKERS": "lots"})
    assert "environment variable SHOESTRING_SERVER__WORKERS" in str(caught.value)
    assert "'lots'" in str(caught.value)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "[server]\nport = \n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "not valid TOML" in str(caught.value)
    assert "line 2" in str(caught.value)


def test_app_spec_must_be_module_colon_attribute(tmp_path: Path) -> None:
    write(tmp_path, '[project]\napp = "app.py"\n')
    with pytest.raises(ConfigError, match=r"project\.app"):
        load_settings(tmp_path, environ={})


def test_a_site_root_may_live_in_the_data_directory_and_moves_with_it(tmp_path: Path) -> None:
    (tmp_path / "shoestring.toml").write_text(
        '[sites.web]\nroot = "web"\n\n[sites.content]\nroot = "published"\nroot_in = "data"\n'
    )
    settings = load_settings(tmp_path)
    assert settings.sites["web"].root == str(tmp_path.resolve() / "web")
    assert settings.sites["content"].root == str(tmp_path.resolve() / "data" / "published")
    elsewhere = tmp_path / "state"
    moved = load_settings(tmp_path, environ={"SHOESTRING_DATA_DIR": str(elsewhere)})
    assert moved.sites["content"].root == str(elsewhere / "published")
    assert moved.sites["web"].root == str(tmp_path.resolve() / "web")


def test_root_in_data_needs_a_root(tmp_path: Path) -> None:
    (tmp_path / "shoestring.toml").write_text('[sites.content]\nroot_in = "data"\n')
    with pytest.raises(ConfigError, match="needs `root`"):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("deploy", "complaint"),
    [
        ("ports = [8001, 8001]", "two different ports"),
        ("ports = [80, 8002]", "`ports` holds 80, which is `http_port` too"),
        ('base_dir = "/srv/my apps"', "absolute path of letters"),
        ('base_dir = "srv"', "absolute path of letters"),
        ('base_dir = "/srv/../etc"', "without `..`"),
        ('domains = ["shop.example", "$(reboot).example"]', "is not a domain name"),
    ],
)
def test_deploy_values_that_would_break_the_host_are_config_errors(
    tmp_path: Path, deploy: str, complaint: str
) -> None:
    write(tmp_path, f"[deploy]\n{deploy}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, environ={})
    assert "`deploy" in str(caught.value) and complaint in str(caught.value)

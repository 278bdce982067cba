from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from shoestring import __version__
from shoestring.cli import COMMANDS, main

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_documents_itself(command: str) -> None:
    loaded = main.get_command(click.Context(main), command)
    assert loaded is not None and loaded.name == command  # loaded on demand: the right one
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    listed = runner.invoke(main, ["--help"]).output
    assert f"  {command} " in listed


def test_new_writes_a_skeleton_whose_own_tests_pass(tmp_path: Path) -> None:
    result = runner.invoke(main, ["new", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    project = tmp_path / "demo"
    for name in ("app.py", "shoestring.toml", "README.md", ".gitignore", "tests/test_app.py"):
        assert (project / name).is_file(), name
    assert 'App("demo")' in (project / "app.py").read_text()
    assert "data/" in (project / ".gitignore").read_text()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def test_new_from_an_example_copies_the_whole_app_but_not_its_data(tmp_path: Path) -> None:
    from tests.examples.conftest import EXAMPLES

    leftover = EXAMPLES / "taptapmail" / "data"  # as if the example had been run in place
    made = not leftover.exists()
    leftover.mkdir(exist_ok=True)
    try:
        result = runner.invoke(main, ["new", "--template", "taptapmail", str(tmp_path / "notes")])
    finally:
        if made:
            leftover.rmdir()
    assert result.exit_code == 0, result.output
    project = tmp_path / "notes"
    copied = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    expected = sorted(
        str(p.relative_to(EXAMPLES / "taptapmail"))
        for p in (EXAMPLES / "taptapmail").rglob("*")
        if p.is_file() and "data" not in p.parts and "__pycache__" not in p.parts
    )
    assert copied == sorted([*expected, ".gitignore"])
    assert (project / "app.py").read_bytes() == (EXAMPLES / "taptapmail" / "app.py").read_bytes()
    assert "data/" in (project / ".gitignore").read_text()  # its secrets stay out of git
    # It says where the copy will answer: its own port, not the skeleton's.
    cms = runner.invoke(main, ["new", "--template", "inline-cms", str(tmp_path / "texts")])
    assert cms.exit_code == 0, cms.output
    assert "http://127.0.0.1:8003/" in cms.output
    unknown = runner.invoke(main, ["new", "--template", "nope", str(tmp_path / "x")])
    assert unknown.exit_code == 2 and "taptapmail" in unknown.output


def test_secrets_are_set_from_stdin_listed_by_name_and_removed(tmp_path: Path) -> None:
    from shoestring.secrets import Secrets

    runner.invoke(main, ["new", str(tmp_path / "demo")])
    project = ["--project", str(tmp_path / "demo")]
    stored = runner.invoke(main, ["secrets", "set", "smtp-password", *project], input="hunter2\n")
    assert stored.exit_code == 0, stored.output
    assert "hunter2" not in stored.output
    assert Secrets(tmp_path / "demo" / "data" / "secrets").get("smtp-password") == "hunter2"
    listed = runner.invoke(main, ["secrets", "ls", *project])
    assert listed.output.split() == ["smtp-password"]
    assert runner.invoke(main, ["secrets", "rm", "smtp-password", *project]).exit_code == 0
    again = runner.invoke(main, ["secrets", "rm", "smtp-password", *project])
    assert again.exit_code == 1 and "no stored secret" in again.output
    bad = runner.invoke(main, ["secrets", "set", "../x", *project], input="v")
    assert bad.exit_code == 1 and "cannot be a secret name" in bad.output


def test_new_refuses_a_non_empty_directory_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    taken = runner.invoke(main, ["new", str(tmp_path / "taken")])
    assert taken.exit_code == 1
    assert "not empty" in taken.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    bad = runner.invoke(main, ["new", str(tmp_path / "9 lives")])
    assert bad.exit_code == 1
    assert "cannot be a project name" in bad.output


def test_config_prints_resolved_settings_with_secrets_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shoestring.toml").write_text("[server]\nport = 9300\n")
    monkeypatch.setenv("SHOESTRING_SERVER__HOST", "0.0.0.0")
    result = runner.invoke(main, ["config", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["server"]["port"] == 9300
    assert data["server"]["host"] == "0.0.0.0"
    assert data["data_dir"] == str(tmp_path.resolve() / "data")


def test_redaction_hides_secret_values_and_url_passwords() -> None:
    from pydantic import SecretStr

    from shoestring.cli.config import _redact_value

    assert _redact_value(SecretStr("hunter2")) == "********"
    assert (
        _redact_value("postgresql://app:s3cret@db.internal:5432/app")
        == "postgresql://app:********@db.internal:5432/app"
    )
    assert _redact_value("smtp://relay.example:587") == "smtp://relay.example:587"
    # a password holding `@` or `/` is hidden whole
    assert _redact_value("smtp://user:p@ss/w@relay:587") == "smtp://user:********@relay:587"
    assert (
        _redact_value("postgresql:///app?user=app&password=QPASS1&sslmode=require")
        == "postgresql:///app?user=app&password=********&sslmode=require"
    )


def test_config_error_is_one_screen_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "shoestring.toml").write_text('[server]\nport = "eighty"\n')
    result = runner.invoke(main, ["config", str(tmp_path)])
    assert result.exit_code == 2
    assert "Configuration error" in result.output
    assert "server.port" in result.output
    assert "'eighty'" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.splitlines()) <= 24


def test_configuration_docs_are_generated_from_the_settings() -> None:
    from shoestring.cli.config import reference_markdown

    docs = Path(__file__).parents[2] / "docs" / "configuration.md"
    assert docs.read_text() == reference_markdown(), (
        "docs/configuration.md is stale: run `shoestring config --reference > docs/configuration.md`"
    )


def test_every_setting_has_a_description() -> None:
    from pydantic import BaseModel

    from shoestring.config import Settings

    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                missing += walk(annotation, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)
        return missing

    assert walk(Settings, "") == []


def test_an_invalid_setting_kept_as_a_secret_is_refused_before_it_is_stored(
    tmp_path: Path,
) -> None:
    runner.invoke(main, ["new", str(tmp_path / "demo")])
    project = ["--project", str(tmp_path / "demo")]
    secrets = tmp_path / "demo" / "data" / "secrets"
    typo = runner.invoke(main, ["secrets", "set", "SHOESTRING_SERVER__PROT", *project], input="1")
    assert typo.exit_code == 2 and "unknown key `server.prot`" in typo.output
    bad = runner.invoke(main, ["secrets", "set", "SHOESTRING_SERVER__PORT", *project], input="abc")
    assert bad.exit_code == 2 and "secret SHOESTRING_SERVER__PORT" in bad.output
    assert not secrets.exists() or list(secrets.iterdir()) == []
    good = runner.invoke(
        main, ["secrets", "set", "SHOESTRING_SERVER__PORT", *project], input="9301"
    )
    assert good.exit_code == 0, good.output
    # One that went bad on disk anyway: listed and removed, the way out.
    (secrets / "SHOESTRING_SERVER__PORT").write_text("abc")
    assert runner.invoke(main, ["config", *project]).exit_code == 2
    listed = runner.invoke(main, ["secrets", "ls", *project])
    assert listed.output.split() == ["SHOESTRING_SERVER__PORT"]
    removed = runner.invoke(main, ["secrets", "rm", "SHOESTRING_SERVER__PORT", *project])
    assert removed.exit_code == 0, removed.output
    assert runner.invoke(main, ["config", *project]).exit_code == 0


@pytest.mark.parametrize(
    "command",
    [["tables", "ls"], ["config"], ["run"], ["secrets", "set", "token"], ["storage", "ls"]],
)
def test_a_command_outside_a_project_says_so_and_writes_nothing(
    tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, command, input="v")
    assert result.exit_code == 2
    assert "is not a shoestring project" in result.output and "shoestring new" in result.output
    assert list(tmp_path.iterdir()) == []


def test_run_dev_and_config_take_the_project_as_dir_or_as_option(tmp_path: Path) -> None:
    (tmp_path / "shoestring.toml").write_text("[server]\nport = 9302\n")
    for args in (["config", str(tmp_path)], ["config", "--project", str(tmp_path)]):
        result = runner.invoke(main, [*args, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["server"]["port"] == 9302
    both = runner.invoke(main, ["config", ".", "--project", str(tmp_path)])
    assert both.exit_code == 2 and "once" in both.output
    for command in ("run", "dev"):
        assert "--project" in runner.invoke(main, [command, "--help"]).output


def test_a_setting_from_the_environment_is_named_in_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shoestring.toml").write_text("")
    monkeypatch.setenv("SHOESTRING_LOG__LEVEL", "[debug]")
    monkeypatch.setenv("SHOESTRING_SEVER__PORT", "9000")
    monkeypatch.setenv("SHOESTRING_CORS__ORIGINS", "https://a.example")
    result = runner.invoke(main, ["config", str(tmp_path)])
    assert result.exit_code == 2
    assert "shoestring.toml" not in result.output  # the file is fine
    assert "environment variable SHOESTRING_LOG__LEVEL" in result.output
    assert "'[debug]'" in result.output  # what was typed, brackets and all
    assert "environment variable SHOESTRING_SEVER__PORT: unknown key `sever`" in result.output
    assert "write lists and tables as JSON" in result.output


def test_an_app_that_fails_to_import_shows_its_own_line_not_shoestrings(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from shoestring import App\n\napp = App('x')\nimport not_a_package_anywhere\n"
    )
    missing = runner.invoke(main, ["tables", "ls", "--project", str(tmp_path)])
    assert missing.exit_code == 2
    assert "Install the missing package" in missing.output
    assert f'{tmp_path / "app.py"}", line 4' in missing.output
    assert "shoestring/loader.py" not in missing.output and "importlib" not in missing.output
    (tmp_path / "app.py").write_text("def broken(:\n")
    broken = runner.invoke(main, ["tables", "ls", "--project", str(tmp_path)])
    assert broken.exit_code == 2 and "SyntaxError" in broken.output
    assert "def broken(:" in broken.output and "shoestring/" not in broken.output.split("\n", 1)[1]
    assert len(broken.output.splitlines()) <= 8


def test_every_option_of_every_command_says_what_it_does() -> None:
    undocumented = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None
                walk(sub, [*path, name])
        undocumented.extend(
            f"{' '.join(path)} {p.opts[0]}"
            for p in command.params
            if isinstance(p, click.Option) and not p.help
        )

    walk(main, ["shoestring"])
    assert undocumented == []


def test_a_mistyped_command_gets_a_suggestion() -> None:
    result = runner.invoke(main, ["tabels", "ls"])
    assert result.exit_code == 2 and "Did you mean 'tables'?" in result.output

"""The release tarball: what goes in, what never does."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from shoestring.deploy import package
from shoestring.deploy.errors import DeployError


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "proj"
    for name, text in {
        "app.py": "from shoestring import App\napp = App('proj')\n",
        "shoestring.toml": "[project]\nname = 'proj'\n",
        "web/index.html": "<h1>hi</h1>",
        "data/shoestring.db": "not to be shipped",
        "data/secrets/token": "never shipped",
        ".venv/bin/python": "",
        "__pycache__/app.cpython-311.pyc": "",
        ".gitignore": "data/\n.venv/\n__pycache__/\nnotes.txt\n",
        "notes.txt": "ignored by git",
    }.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def test_without_git_everything_but_data_venvs_and_caches(project: Path) -> None:
    files = package.project_files(project, project / "data")
    assert files == [".gitignore", "app.py", "notes.txt", "shoestring.toml", "web/index.html"]


def test_with_git_what_git_sees(project: Path) -> None:
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "add", "app.py"], check=True)
    files = package.project_files(project, project / "data")
    # Tracked and new-but-not-ignored files; ignored ones (data, notes.txt) never.
    assert files == [".gitignore", "app.py", "shoestring.toml", "web/index.html"]


def test_the_tarball_carries_the_wheel_and_pins(project: Path, tmp_path: Path) -> None:
    if package.shoestring_source() is None:
        pytest.skip("shoestring is not installed from a source checkout")
    built = package.build(project, project / "data", tmp_path / "work")
    with tarfile.open(built.path) as tar:
        names = tar.getnames()
        requirements = tar.extractfile(".release/requirements.txt").read().decode()  # type: ignore[union-attr]
        constraints = tar.extractfile(".release/constraints.txt").read().decode()  # type: ignore[union-attr]
    assert "app.py" in names and not any(n.startswith("data/") for n in names)
    assert any(n.startswith(".release/wheels/shoestring-") for n in names)
    assert requirements.startswith("./wheels/shoestring-")
    assert "starlette==" in constraints and "shoestring" not in constraints.lower()
    # A rebuilt wheel of the same code keeps the environment: the host reuses its venv.
    again = package.build(project, project / "data", tmp_path / "again")
    assert again.environment == built.environment


def test_a_directory_that_is_no_project(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"neither shoestring\.toml nor app\.py"):
        package.build(tmp_path, tmp_path / "data", tmp_path / "work")


@pytest.mark.parametrize("git", [False, True])
def test_the_data_directory_and_restore_leftovers_never_ship(
    project: Path, git: bool, tmp_path: Path
) -> None:
    # data_dir = "var", which the project's .gitignore does not name.
    for name in (
        "var/shoestring.db",
        "var/secrets/token",
        "var.before-restore-20250101-120000-ab12/secrets/token",
        ".var.restore-ab12cd34/data/secrets/token",
        "variants/kept.txt",
        "data.before-restore-20250101-120000-ab12/secrets/token",
    ):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("secret")
    if git:
        subprocess.run(["git", "init", "-q", str(project)], check=True)
    files = package.project_files(project, project / "var")
    assert not any(f.startswith(("var/", "var.", ".var.")) for f in files), files
    assert "variants/kept.txt" in files
    # With the default data directory, a restore's leftovers stay out too.
    files = package.project_files(project, project / "data")
    assert not any(f.startswith(("data/", "data.")) for f in files), files


def test_the_new_projects_gitignore_hides_the_data_and_restore_leftovers(tmp_path: Path) -> None:
    template = Path(package.__file__).parent.parent / "templates" / "new" / "gitignore.tmpl"
    (tmp_path / ".gitignore").write_text(template.read_text())
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    names = ["data/x", "data.before-restore-1/x", ".data.restore-1/x", "database/x"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    ignored = subprocess.run(
        ["git", "-C", str(tmp_path), "check-ignore", *names], capture_output=True, text=True
    ).stdout.split()
    assert ignored == names[:3]

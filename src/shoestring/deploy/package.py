"""The release tarball: the project's files, shoestring as a wheel, pinned requirements.

<project files>                as git sees them (tracked and new, not ignored);
                               without git, every file but venvs and caches; never
                               the data directory (secrets, databases) nor what a
                               restore leaves beside it, whatever git says
.release/wheels/shoestring-*.whl   built from this machine's shoestring, when it is a
                               source checkout; else installed from the index by version
.release/constraints.txt       `pip freeze` of this machine: the host installs the
                               same versions of everything it needs
.release/requirements.txt      what to install: shoestring, and the project's own
                               requirements.txt when it has one
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import shoestring
from shoestring.deploy.errors import DeployError

RELEASE_DIR = ".release"
_NEVER = {".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


@dataclass(frozen=True)
class Package:
    path: Path
    release_id: str
    files: int
    environment: str  # see _environment_id


def release_id(project_dir: Path) -> str:
    """`YYYYmmdd-HHMMSS` plus the git commit, if any (`-dirty` with uncommitted changes)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    commit = _git(project_dir, "rev-parse", "--short", "HEAD")
    if commit is None:
        return stamp
    dirty = _git(project_dir, "status", "--porcelain", "--untracked-files=no")
    return f"{stamp}-{commit.strip()}{'-dirty' if dirty else ''}"


def project_files(project_dir: Path, data_dir: Path) -> list[str]:
    """Paths relative to the project: git's view when it is a repository.

    The data directory, and the directories a restore leaves beside it (see
    `data_paths`), are never in it, even when git does not ignore them.
    """
    is_data = _data_matcher(project_dir, data_dir)
    listed = _git(project_dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard", ".")
    if listed is not None:
        names = [name for name in listed.split("\0") if name]
        return sorted(n for n in names if not is_data(n) and (project_dir / n).is_file())
    found = []
    for directory, subdirs, files in os.walk(project_dir):
        here = Path(directory)
        subdirs[:] = [
            d
            for d in subdirs
            if d not in _NEVER and not is_data((here / d).relative_to(project_dir).as_posix())
        ]
        found += [
            (here / name).relative_to(project_dir).as_posix()
            for name in files
            if not name.endswith((".pyc", ".pyo"))
        ]
    return sorted(found)


def data_paths(data_dir: Path) -> list[str]:
    """Glob patterns of the data directory and what a restore leaves beside it.

    `<data>.before-restore-*` is the data a restore replaced; `.<data>.restore-*`
    a restore in progress (see shoestring.deploy.backup). All hold secrets.
    """
    name = data_dir.name
    return [name, f"{name}.before-restore-*", f".{name}.restore-*"]


def _data_matcher(project_dir: Path, data_dir: Path) -> Callable[[str], bool]:
    """Whether a path relative to the project is in the data directory or beside it."""
    try:
        data = PurePosixPath(data_dir.resolve().relative_to(project_dir.resolve()).as_posix())
    except ValueError:
        return lambda _: False  # the data directory is outside the project
    patterns = data_paths(Path(data.name))
    depth = len(data.parts)

    def is_data(name: str) -> bool:
        parts = PurePosixPath(name).parts
        if len(parts) < depth or parts[: depth - 1] != data.parts[:-1]:
            return False
        return any(fnmatch(parts[depth - 1], pattern) for pattern in patterns)

    return is_data


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        return None
    return done.stdout if done.returncode == 0 else None


def pinned_requirements() -> str:
    """This interpreter's installed distributions, `name==version`, as pip constraints.

    Editable and direct-URL installs are left out: the host cannot reach
    this machine's paths (shoestring itself travels as a wheel).
    """
    done = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise DeployError(f"cannot list the installed packages (pip freeze): {done.stderr}")
    lines = []
    for line in done.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")) or " @ " in line:
            continue
        if line.lower().startswith("shoestring=="):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def shoestring_source() -> Path | None:
    """The source checkout this shoestring runs from (an editable install), if it is one."""
    package = Path(shoestring.__file__).resolve().parent
    for candidate in (package.parent.parent, package.parent):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and 'name = "shoestring"' in pyproject.read_text():
            return candidate
    return None


def build_wheel(source: Path, target_dir: Path) -> Path:
    target_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(target_dir), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    wheels = sorted(target_dir.glob("shoestring-*.whl"))
    if done.returncode != 0 or not wheels:
        raise DeployError(f"cannot build shoestring's wheel from {source}:\n{done.stderr[-2000:]}")
    return wheels[-1]


def build(project_dir: Path, data_dir: Path, workdir: Path) -> Package:
    """Write the release tarball for `project_dir` into `workdir`."""
    if not (project_dir / "shoestring.toml").exists() and not (project_dir / "app.py").exists():
        raise DeployError(
            f"{project_dir} has neither shoestring.toml nor app.py: run deploy in the "
            "project directory or pass --project"
        )
    identifier = release_id(project_dir)
    names = project_files(project_dir, data_dir)
    source = shoestring_source()
    wheel = build_wheel(source, workdir / "wheels") if source else None
    requirements = [f"./wheels/{wheel.name}" if wheel else f"shoestring=={shoestring.__version__}"]
    if "requirements.txt" in names:
        requirements.append("-r ../requirements.txt")
    constraints = pinned_requirements()
    environment = _environment_id(
        requirements, constraints, wheel, project_dir / "requirements.txt"
    )
    path = workdir / f"{identifier}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            tar.add(project_dir / name, arcname=name, recursive=False)
        if wheel is not None:
            tar.add(wheel, arcname=f"{RELEASE_DIR}/wheels/{wheel.name}")
        for member, text in (
            ("constraints.txt", constraints),
            ("requirements.txt", "\n".join(requirements) + "\n"),
            ("id", identifier + "\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(f"{RELEASE_DIR}/{member}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
    return Package(path=path, release_id=identifier, files=len(names), environment=environment)


def _environment_id(
    requirements: list[str], constraints: str, wheel: Path | None, project_requirements: Path
) -> str:
    """Names the installed environment: equal ids install the very same packages.

    Releases that change only the project's code share one venv on the host,
    so a redeploy does not reinstall anything. The wheel is hashed by its
    contents, not its bytes: a rebuilt wheel has new timestamps.
    """
    digest = hashlib.sha256(json.dumps(requirements).encode() + constraints.encode())
    if project_requirements.is_file():
        digest.update(project_requirements.read_bytes())
    if wheel is not None:
        with zipfile.ZipFile(wheel) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                digest.update(f"{info.filename}:{info.CRC}:{info.file_size};".encode())
    return digest.hexdigest()[:16]

"""Import a project's App from its `module:attribute` spec."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from shoestring.app import App
from shoestring.errors import AppLoadError


def load_app(project_dir: Path, spec: str) -> App:
    """Import `spec` (`module:attribute`) with `project_dir` first on sys.path."""
    module_name, _, attribute = spec.partition(":")
    directory = str(project_dir.resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    cached = sys.modules.get(module_name)
    if cached is not None and not str(getattr(cached, "__file__", "")).startswith(directory):
        # A module of that name from another project (tests, or a REPL that
        # loaded two projects): import this project's own.
        del sys.modules[module_name]
        sys.path.remove(directory)
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise AppLoadError(
                f"importing {module_name!r} failed: {exc}. Install the missing package "
                "into the environment shoestring runs in."
            ) from exc
        raise AppLoadError(
            f"no module {module_name!r} in {directory}. Set `[project] app` in "
            "shoestring.toml to the module:attribute of your App (default app:app)."
        ) from None
    except Exception as exc:
        raise AppLoadError(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        found = "nothing" if app is None else f"a {type(app).__name__}"
        raise AppLoadError(
            f"{spec} is {found}, not a shoestring App. Create one with "
            f"`{attribute} = App('name')` in {module_name}.py or fix `[project] app`."
        )
    return app

"""Importing the operator's own Python files (custom transformers, the custom router).

Only ever called at start, for a path the operator's config names: never for a request, and
never for a config applied through the API (see ``transformers.api_loader``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType


class ImportFailed(Exception):
    """The file is missing, not Python, or raised while it was imported; says which."""


def resolved(base: Path, path: str) -> Path:
    """Where ``path`` (relative: to ``base``) leads, symlinks followed."""
    return Path(os.path.realpath(base / os.path.expanduser(path)))


def import_file(path: Path, prefix: str) -> ModuleType:
    """The module ``path`` defines, under a name of its own, so that two files with the same
    stem never replace each other in ``sys.modules``."""
    if not path.is_file():
        raise ImportFailed("file not found")
    name = f"{prefix}_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportFailed("not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise ImportFailed(f"import failed: {type(error).__name__}: {error}") from None
    return module

"""Every path the tooling uses, in one place.

The repository root is found from the environment (``WORKBOOK_ROOT``) or from
this file's location, so the CLI works from any folder and the tooling's own
tests can point it at a small fixture course.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def root() -> Path:
    """The workbook repository root."""
    env = os.environ.get("WORKBOOK_ROOT")
    return Path(env).resolve() if env else PACKAGE_DIR.parent


def catalog_file() -> Path:
    return root() / "catalog.toml"


def exercises_dir() -> Path:
    return root() / "exercises"


def solutions_dir() -> Path:
    return root() / "solutions"


def starter_dir() -> Path:
    """Pristine starter files in a learner's release, which has no solutions/ (``workbook release``)."""
    return exercises_dir() / ".starter"


def graders_dir() -> Path:
    return root() / "graders"


def notebooks_dir() -> Path:
    return root() / "notebooks"


def mutants_dir() -> Path:
    return root() / "tests" / "mutants"


def state_dir() -> Path:
    """Learner progress and backups; ignored by git."""
    return root() / ".workbook"


def resolve_target(target: str | os.PathLike | None) -> Path:
    """Turn ``exercises``, ``solutions`` or a path into the folder to grade.

    ``None`` falls back to the ``WORKBOOK_TARGET`` environment variable, then
    to ``exercises``.
    """
    if target is None or str(target) == "":
        target = os.environ.get("WORKBOOK_TARGET", "exercises")
    name = str(target)
    if name == "exercises":
        return exercises_dir()
    if name == "solutions":
        return solutions_dir()
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    return path.resolve()

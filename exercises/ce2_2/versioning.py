"""CE2.2 — Data versioning with DVC.

Git versions your code; DVC versions your data next to it. ``dvc add data.csv``
moves the bytes into DVC's cache and leaves a small ``data.csv.dvc`` file (the
data's md5 hash) for git to commit. A version of the data is therefore a git
commit of that ``.dvc`` file, and checking a version out is two steps: git
restores the ``.dvc`` file, DVC restores the bytes it names.

The contract the graders check, with real ``git`` and ``dvc`` in temporary
repositories and a local-folder remote:

* ``init_repo(repo, remote)``: a git repository (created if needed) with DVC
  initialised and ``remote`` (a folder) as the default remote, all committed.
* ``add_version(repo, data, message)``: version the file ``data`` (a path inside
  ``repo``) and commit it; returns a ``DataVersion(commit, md5, message)``.
  Refuses, with one sentence and before changing anything, when git has
  uncommitted changes other than the data's own files.
* ``list_versions(repo, data)``: every committed version, newest first.
* ``checkout_version(repo, data, commit)``: the workspace file becomes
  byte-identical to that version. An unknown commit is an error naming it.
* ``push(repo)`` uploads every committed version to the remote;
  ``pull(repo)`` restores the checked-out version from it (after the cache and
  the workspace copy are gone).
* ``data_hash(repo, data)``: the md5 DVC records for the checked-out version,
  the value to log in MLflow as the data version.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml


class VersioningError(RuntimeError):
    """A git or DVC step failed; the message says which, and why, in a sentence."""


@dataclass(frozen=True)
class DataVersion:
    commit: str
    md5: str
    message: str


def _dvc() -> list[str]:
    found = shutil.which("dvc")
    return [found] if found else [sys.executable, "-m", "dvc"]


def _run(tool: str, command: list[str], args: tuple[str, ...], repo: Path) -> str:
    proc = subprocess.run([*command, *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit code {proc.returncode}"
        raise VersioningError(f"`{tool} {' '.join(args)}` failed in {repo}: {reason}")
    return proc.stdout


def git(repo: Path, *args: str) -> str:
    return _run("git", ["git", "-c", "user.name=workbook", "-c", "user.email=workbook@localhost"], args, repo)


def dvc(repo: Path, *args: str) -> str:
    return _run("dvc", _dvc(), args, repo)


def init_repo(repo: str | Path, remote: str | Path) -> None:
    """Make ``repo`` a git + DVC repository whose default remote is the folder ``remote``."""
    raise NotImplementedError("YOUR CODE HERE")


def add_version(repo: str | Path, data: str | Path, message: str) -> DataVersion:
    """Version the current content of ``data`` and commit it; return the new version."""
    raise NotImplementedError("YOUR CODE HERE")


def list_versions(repo: str | Path, data: str | Path) -> list[DataVersion]:
    """Every committed version of ``data``, newest first."""
    raise NotImplementedError("YOUR CODE HERE")


def checkout_version(repo: str | Path, data: str | Path, commit: str) -> None:
    """Make the workspace copy of ``data`` byte-identical to its version at ``commit``."""
    raise NotImplementedError("YOUR CODE HERE")


def push(repo: str | Path) -> None:
    """Upload every committed version of the data to the default remote."""
    raise NotImplementedError("YOUR CODE HERE")


def pull(repo: str | Path) -> None:
    """Download the checked-out versions from the remote into the cache and the workspace."""
    raise NotImplementedError("YOUR CODE HERE")


def data_hash(repo: str | Path, data: str | Path) -> str:
    """The md5 DVC records for the checked-out version of ``data`` (log it to MLflow)."""
    raise NotImplementedError("YOUR CODE HERE")


def _relative(repo: Path, data: str | Path) -> str:
    """``data`` as a path relative to ``repo`` (it may be given either way)."""
    path = Path(data)
    if path.is_absolute():
        path = path.resolve().relative_to(Path(repo).resolve())
    return path.as_posix()

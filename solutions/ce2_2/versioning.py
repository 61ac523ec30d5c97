"""CE2.2 — Data versioning with DVC.

Git versions your code; DVC versions your data next to it. ``dvc add data.csv``
moves the bytes into DVC's cache and leaves a small ``data.csv.dvc`` file (the
data's md5 hash) for git to commit. A version of the data is therefore a git
commit of that ``.dvc`` file, and checking a version out is two steps: git
restores the ``.dvc`` file, DVC restores the bytes it names.

The graders call these functions with real ``git`` and ``dvc``, in temporary
repositories, with a local folder as the DVC remote. Each function's docstring
states what it must do; the ids in square brackets name the checks' subjects.
Paths of data files (``data``) may be given relative to ``repo`` or as absolute
paths inside it [data-path].
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml


class VersioningError(RuntimeError):
    """A git or DVC step failed, or was refused; the message says which, and why, in a sentence."""


@dataclass(frozen=True)
class DataVersion:
    """One committed version of a data file.

    ``commit`` is the full 40-character hash of the git commit that holds the version [version-commit].
    ``md5`` is the md5 of the data file's bytes in that version, as DVC records it [version-md5].
    ``message`` is that commit's message, exactly as given to ``add_version`` (no trailing newline) [version-message].
    """

    commit: str
    md5: str
    message: str


def _dvc() -> list[str]:
    found = shutil.which("dvc")
    return [found] if found else [sys.executable, "-m", "dvc"]


def _run(tool: str, command: list[str], args: tuple[str, ...], repo: Path) -> str:
    proc = subprocess.run([*command, *args], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        # DVC ends an error with a "Having any troubles?" footer: the line before says what went wrong.
        detail = [line for line in (proc.stderr or proc.stdout).splitlines()
                  if line.strip() and not line.startswith("Having any troubles?")]
        reason = detail[-1] if detail else f"exit code {proc.returncode}"
        raise VersioningError(f"`{tool} {' '.join(args)}` failed in {repo}: {reason}")
    return proc.stdout


def git(repo: Path, *args: str) -> str:
    return _run("git", ["git", "-c", "user.name=workbook", "-c", "user.email=workbook@localhost"], args, repo)


def dvc(repo: Path, *args: str) -> str:
    return _run("dvc", _dvc(), args, repo)


def init_repo(repo: str | Path, remote: str | Path) -> None:
    """Make ``repo`` a git + DVC repository whose default remote is the folder ``remote``.

    The folder ``repo`` is created if it does not exist, then made a git repository [init-git].
    DVC is initialised in it (``dvc init``) [init-dvc].
    The folder ``remote`` becomes DVC's default remote, in ``.dvc/config`` [init-remote].
    The remote is stored as an absolute path, and a relative ``remote`` is resolved against
    the folder ``repo`` (not the current folder) [remote-absolute].
    What DVC created is committed, so ``git status`` shows nothing afterwards [init-committed].
    Running it again on a repository it already set up succeeds, and leaves the user's other
    files as they are: untracked and modified files stay uncommitted [init-rerun].
    """
    ### BEGIN SOLUTION
    repo = Path(repo)
    # Relative to the repository: DVC reads old commits' config relative to the git tree's
    # root, so only an absolute path names the same folder in every commit.
    remote = (repo / remote).resolve()
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        git(repo, "init", "-q")
    if not (repo / ".dvc").exists():
        dvc(repo, "init", "-q")
    dvc(repo, "remote", "add", "--default", "--force", "storage", str(remote))
    git(repo, "add", ".dvc", ".dvcignore")
    # Commit DVC's own files only: the user's other changes are theirs to commit.
    if git(repo, "status", "--porcelain", "--", ".dvc", ".dvcignore"):
        git(repo, "commit", "-q", "-m", "Initialise DVC with a default remote", "--", ".dvc", ".dvcignore")
    ### END SOLUTION


def add_version(repo: str | Path, data: str | Path, message: str) -> DataVersion:
    """Version the current content of ``data`` and commit it; return the new version.

    ``dvc add`` stores the bytes, and one new git commit with the commit message ``message``
    holds the ``.dvc`` file and the ``.gitignore`` DVC writes next to it [add-commit].
    The commit holds no other file, and git ignores the data file itself [add-only-own].
    A data file in a folder that git does not track yet works like any other [add-subfolder].
    When the content is the same as the latest version, no commit is made and the latest
    version is returned [add-unchanged].
    Before changing anything, it refuses with an error when a tracked file other than the
    data's own files has uncommitted changes [dirty-refused].
    Staged changes count as uncommitted too [staged-refused].
    The error is one sentence that names a file with changes by its path in the repository,
    e.g. ``src/train.py`` [dirty-message].
    Untracked files of the user may be refused the same way, or left out of the commit [untracked-files].
    """
    ### BEGIN SOLUTION
    repo = Path(repo)
    relative = _relative(repo, data)
    gitignore = (Path(relative).parent / ".gitignore").as_posix()
    own = {relative, f"{relative}.dvc", gitignore}
    # -uall lists untracked files one by one: a new data folder shows as its files, not `data/`;
    # -z gives paths unquoted ("XY path" entries).
    status = git(repo, "status", "--porcelain", "-z", "--untracked-files=all")
    others = [entry[3:] for entry in status.split("\0") if entry and entry[3:] not in own]
    if others:
        raise VersioningError(
            f"git has uncommitted changes in {repo} ({', '.join(others)}): commit or stash them "
            "first, so that this data version points at a clean commit"
        )
    dvc(repo, "add", "-q", relative)
    git(repo, "add", f"{relative}.dvc", gitignore)
    if not git(repo, "status", "--porcelain", "--", f"{relative}.dvc", gitignore):
        return list_versions(repo, relative)[0]
    git(repo, "commit", "-q", "-m", message, "--", f"{relative}.dvc", gitignore)
    return DataVersion(git(repo, "rev-parse", "HEAD").strip(), data_hash(repo, relative), message)
    ### END SOLUTION


def list_versions(repo: str | Path, data: str | Path) -> list[DataVersion]:
    """Every committed version of ``data``, newest first [list-order].

    A version is a commit that changed ``data``'s ``.dvc`` file, on the current branch;
    commits of code or of other data files are not versions of ``data`` [list-versions].
    Each version's ``md5`` is the one recorded at that commit, not the checked-out one [list-md5].
    A file that was never versioned has no versions: the list is empty [list-empty].
    """
    ### BEGIN SOLUTION
    repo = Path(repo)
    relative = _relative(repo, data)
    log = git(repo, "log", "--format=%H%x00%s", "--", f"{relative}.dvc")
    versions = []
    for line in log.splitlines():
        commit, _, subject = line.partition("\0")
        (out,) = yaml.safe_load(git(repo, "show", f"{commit}:{relative}.dvc"))["outs"]
        versions.append(DataVersion(commit, out["md5"], subject))
    return versions
    ### END SOLUTION


def checkout_version(repo: str | Path, data: str | Path, commit: str) -> None:
    """Make the workspace copy of ``data`` byte-identical to its version at ``commit``.

    Afterwards the file ``data`` holds exactly the bytes of that version [checkout-bytes].
    The current branch does not move, so the next ``add_version`` commits on top of the
    latest version and every version stays listed [checkout-then-add].
    A commit that does not exist is an error whose message names it, and the workspace
    stays as it was [checkout-unknown].
    """
    ### BEGIN SOLUTION
    repo = Path(repo)
    relative = _relative(repo, data)
    known = ["git", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"]
    if subprocess.run(known, cwd=repo, capture_output=True).returncode != 0:
        raise VersioningError(f"no commit {commit!r} in {repo}: pick one from list_versions()")
    git(repo, "checkout", commit, "--", f"{relative}.dvc")
    dvc(repo, "checkout", "--force", f"{relative}.dvc")
    ### END SOLUTION


def push(repo: str | Path) -> None:
    """Upload every committed version of the data, not only the checked-out one, to the default remote [push-all]."""
    ### BEGIN SOLUTION
    dvc(Path(repo), "push", "--all-commits", "-q")
    ### END SOLUTION


def pull(repo: str | Path) -> None:
    """Download the checked-out versions from the remote into the cache and the workspace.

    It works in a fresh ``git clone`` whose DVC cache is empty, reading the remote alone,
    and restores the version whose ``.dvc`` file is checked out [pull-restores].
    When the remote lacks that version's data it raises an error [pull-missing].
    """
    ### BEGIN SOLUTION
    dvc(Path(repo), "pull", "--force", "-q")
    ### END SOLUTION


def data_hash(repo: str | Path, data: str | Path) -> str:
    """The md5 DVC records for the checked-out version of ``data`` (log it to MLflow).

    It equals the md5 of the checked-out file's bytes (``hashlib.md5``) [hash-md5].
    After ``checkout_version`` of an older version it is that version's md5 [hash-checked-out].
    """
    ### BEGIN SOLUTION
    repo = Path(repo)
    (out,) = yaml.safe_load((repo / f"{_relative(repo, data)}.dvc").read_text())["outs"]
    return out["md5"]
    ### END SOLUTION


def _relative(repo: Path, data: str | Path) -> str:
    """``data`` as a path relative to ``repo`` (it may be given either way)."""
    path = Path(data)
    if path.is_absolute():
        path = path.resolve().relative_to(Path(repo).resolve())
    return path.as_posix()

"""Graders for CE2.2 — data versioning with DVC, using real git and dvc in temporary repos.

Byte equality and hashlib's md5 are the independent references; what DVC records
is read from its own .dvc files and commands.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workbook.checks import field, learner_error

pytestmark = pytest.mark.timeout(120)

VERSIONS = [
    b"id,amount\n1,10.0\n2,20.5\n",
    b"id,amount\n1,10.0\n2,20.5\n3,7.25\n",
    b"id,amount\n1,11.0\n2,20.5\n3,7.25\n4,0.5\n",
]


@pytest.fixture
def vc(load_module):
    return load_module("versioning")


def dvc_cmd() -> list[str]:
    found = shutil.which("dvc")
    return [found] if found else [sys.executable, "-m", "dvc"]


def sh(repo: Path, *command: str) -> str:
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, vc) -> Path:
    """A repository initialised by the learner's init_repo, with a local-folder remote."""
    path = tmp_path / "project"
    vc.init_repo(path, tmp_path / "remote")
    return path


def versions_added(vc, repo: Path, contents=VERSIONS) -> list:
    data = repo / "data.csv"
    added = []
    for number, content in enumerate(contents, start=1):
        data.write_bytes(content)
        added.append(vc.add_version(repo, "data.csv", f"data version {number}"))
    return added


def commit_of(version) -> str:
    return field(version, "commit", what="a DataVersion")


@pytest.mark.points(2)
def test_init_makes_git_and_dvc_repo_with_default_remote(repo, tmp_path):
    """git and DVC are initialised, the remote folder is the default remote, all committed."""
    assert (repo / ".git").is_dir(), "init_repo should create a git repository"
    assert (repo / ".dvc").is_dir(), "init_repo should run `dvc init`"
    try:
        default = sh(repo, *dvc_cmd(), "config", "core.remote").strip()
    except subprocess.CalledProcessError:
        raise AssertionError("a default DVC remote should be set (`dvc remote add --default`)") from None
    url = sh(repo, *dvc_cmd(), "config", f"remote.{default}.url").strip()
    assert (repo / ".dvc" / url).resolve() == (tmp_path / "remote").resolve(), (
        f"the default remote should be the folder {tmp_path / 'remote'}; got {url}"
    )
    status = sh(repo, "git", "status", "--porcelain")
    assert not status, f"init_repo should commit what it created; `git status` shows:\n{status}"


@pytest.mark.points(4)
def test_each_version_checks_out_byte_identical(vc, repo):
    """After three versions, checking out each one restores exactly its bytes."""
    added = versions_added(vc, repo)
    listed = vc.list_versions(repo, "data.csv")
    assert [commit_of(v) for v in listed] == [commit_of(v) for v in reversed(added)], (
        "list_versions should return the 3 committed versions, newest first"
    )
    for number, (version, content) in enumerate(zip(added, VERSIONS, strict=True), start=1):
        vc.checkout_version(repo, "data.csv", commit_of(version))
        got = (repo / "data.csv").read_bytes()
        assert got == content, f"checking out version {number} should restore its exact bytes; got {got!r}"


@pytest.mark.points(2)
def test_hash_is_what_dvc_records(vc, repo):
    """data_hash and each version's md5 equal the .dvc record and the md5 of the bytes."""
    added = versions_added(vc, repo)
    record = yaml.safe_load((repo / "data.csv.dvc").read_text())["outs"][0]["md5"]
    assert vc.data_hash(repo, "data.csv") == record == hashlib.md5(VERSIONS[-1]).hexdigest(), (
        f"data_hash should be the md5 in data.csv.dvc ({record}); got {vc.data_hash(repo, 'data.csv')}"
    )
    for version, content in zip(added, VERSIONS, strict=True):
        md5 = field(version, "md5", what="a DataVersion")
        assert md5 == hashlib.md5(content).hexdigest(), f"a version's md5 should be its bytes' md5; got {md5}"


@pytest.mark.points(4)
def test_pull_restores_after_cache_and_workspace_are_gone(vc, repo):
    """push uploads every version; pull brings the checked-out one back from the remote alone."""
    added = versions_added(vc, repo)
    vc.push(repo)
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "data.csv").unlink()
    vc.pull(repo)
    assert (repo / "data.csv").read_bytes() == VERSIONS[-1], "pull should restore the latest version's bytes"
    shutil.rmtree(repo / ".dvc" / "cache")
    sh(repo, "git", "checkout", commit_of(added[0]), "--", "data.csv.dvc")  # the oldest version's record
    vc.pull(repo)
    assert (repo / "data.csv").read_bytes() == VERSIONS[0], (
        "an older version should come back from the remote too: push should upload every committed version"
    )


@pytest.mark.points(3)
def test_re_adding_an_old_version_loses_nothing(vc, repo):
    """Going back to earlier content is a new version; every version still checks out."""
    contents = [VERSIONS[0], VERSIONS[1], VERSIONS[0]]
    added = versions_added(vc, repo, contents)
    assert len({commit_of(v) for v in added}) == 3, "re-adding earlier content should be a new commit"
    assert len(vc.list_versions(repo, "data.csv")) == 3, "list_versions should show all 3 versions"
    for version, content in zip(added, contents, strict=True):
        vc.checkout_version(repo, "data.csv", commit_of(version))
        assert (repo / "data.csv").read_bytes() == content, "every version should still check out"


@pytest.mark.points(2)
def test_dirty_git_tree_is_refused_in_one_sentence(vc, repo):
    """Uncommitted code changes stop add_version with an error, before anything is committed."""
    (repo / "train.py").write_text("print('training')\n")
    sh(repo, "git", "add", "train.py")
    sh(repo, "git", "-c", "user.name=g", "-c", "user.email=g@example.com", "commit", "-q", "-m", "code")
    (repo / "train.py").write_text("print('changed, not committed')\n")
    head = sh(repo, "git", "rev-parse", "HEAD")
    (repo / "data.csv").write_bytes(VERSIONS[0])
    with learner_error(what="add_version with uncommitted code changes") as caught:
        vc.add_version(repo, "data.csv", "should be refused")
    message = str(caught.value)
    assert "uncommitted" in message.lower() or "dirty" in message.lower(), (
        f"the error should say git has uncommitted changes; got {message!r}"
    )
    assert "\n" not in message.strip(), f"the error should be one sentence, not a dump; got {message!r}"
    assert sh(repo, "git", "rev-parse", "HEAD") == head, "nothing should be committed when refused"


@pytest.mark.points(1)
def test_unknown_commit_is_a_clear_error(vc, repo):
    """Checking out a commit that does not exist names it in the error."""
    versions_added(vc, repo, VERSIONS[:1])
    with learner_error(what="checkout_version of a commit that does not exist") as caught:
        vc.checkout_version(repo, "data.csv", "deadbeef0000")
    assert "deadbeef0000" in str(caught.value), f"the error should name the commit; got {caught.value!r}"

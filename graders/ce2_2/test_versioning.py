"""Graders for CE2.2 — data versioning with DVC, using real git and dvc in temporary repos.

Independent references: byte equality, hashlib's md5, git's own log and trees, the
remote folder read file by file, and fresh ``git clone``s whose DVC cache is empty.

One repository with three versions (``history``) is built once and only read by
the checks; a check that changes a repository works on its own clone of it.

Safety: learner code runs from an empty folder inside this module's temporary
folder, with DVC's site cache and config folders and git's global config
redirected there too; push and pull only run once every DVC remote URL in every
commit of the repository is an absolute path inside that folder (DVC reads a
relative URL of an old commit against the filesystem root); and every check
fails if anything new appears in ``/`` or next to the temporary folder.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import configobj
import pytest
import yaml

from workbook.checks import field, learner_error
from workbook.sealed import hand_to_learner

pytestmark = pytest.mark.timeout(90)

VERSIONS = [
    b"id,amount\n1,10.0\n2,20.5\n",
    b"id,amount\n1,10.0\n2,20.5\n3,7.25\n",
    b"id,amount\n1,11.0\n2,20.5\n3,7.25\n4,0.5\n",
]
MESSAGES = ["data version 1: two rows", "data version 2: a third row", "data version 3: amounts corrected"]
NEW = b"id,amount\n1,11.0\n2,20.5\n3,7.25\n4,0.5\n5,99.0\n"
RAW = b"sensor,reading\na,0.1\nb,0.2\n"


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


# -- the sandbox every learner call runs in ---------------------------------------------------


@dataclass
class Sandbox:
    root: Path
    counter: itertools.count = dataclass_field(default_factory=itertools.count)

    def folder(self, name: str) -> Path:
        """A new, not yet existing path inside the sandbox."""
        return self.root / f"{name}-{next(self.counter)}"


@pytest.fixture(scope="module", autouse=True)
def sandbox(tmp_path_factory):
    """Run the module from an empty folder, with git's and DVC's user-wide state kept inside it."""
    root = tmp_path_factory.mktemp("ce2_2").resolve()
    (root / "cwd").mkdir()
    (root / "gitconfig").write_text("")
    env = {
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache"),
        "DVC_GLOBAL_CONFIG_DIR": str(root / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(root / "dvc-system"),
        "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "grader",
        "GIT_AUTHOR_EMAIL": "grader@localhost",
        "GIT_COMMITTER_NAME": "grader",
        "GIT_COMMITTER_EMAIL": "grader@localhost",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.chdir(root / "cwd")  # learner code that forgets cwd= lands here, not in the workbook
        yield Sandbox(root)


def outside_entries(root: Path) -> set[str]:
    return {f"/{name}" for name in os.listdir("/")} | {str(p) for p in root.parent.iterdir()}


@pytest.fixture(autouse=True)
def stays_inside(sandbox):
    """Fail the check if grading it created anything in / or next to the module's temporary folder."""
    before = outside_entries(sandbox.root)
    yield
    new = sorted(outside_entries(sandbox.root) - before)
    assert not new, (
        f"grading should write only inside its temporary folder {sandbox.root}; "
        f"these appeared outside it: {new}"
    )


# -- git, DVC config and the safety guard ----------------------------------------------------


def run(cwd: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def git(repo: Path, *args: str) -> str:
    __tracebackhide__ = True
    proc = run(repo, "git", *args)
    if proc.returncode != 0:
        raise AssertionError(f"`git {' '.join(args)}` should work in {repo}; it failed: {proc.stderr.strip()}")
    return proc.stdout


def graders_version(repo: Path, relative: str, content: bytes, message: str) -> str:
    """Version ``relative`` with the graders' own `dvc add` and `git commit` (not the learner's
    add_version), for checks about something else; returns the commit."""
    __tracebackhide__ = True
    (repo / relative).parent.mkdir(parents=True, exist_ok=True)
    (repo / relative).write_bytes(content)
    proc = run(repo, sys.executable, "-m", "dvc", "add", "-q", relative)
    assert proc.returncode == 0, f"the graders' `dvc add {relative}` failed: {proc.stderr.strip()}"
    git(repo, "add", f"{relative}.dvc", (Path(relative).parent / ".gitignore").as_posix())
    git(repo, "commit", "-q", "-m", message)
    hand_to_learner(repo)
    return head(repo)


def head(repo: Path) -> str:
    return run(repo, "git", "rev-parse", "HEAD").stdout.strip()


def status(repo: Path) -> str:
    return run(repo, "git", "status", "--porcelain", "--untracked-files=all").stdout


def data_commits(repo: Path, relative: str = "data.csv") -> list[str]:
    """Commits that changed the data's .dvc file, newest first, by git's own log."""
    return run(repo, "git", "log", "--format=%H", "--", f"{relative}.dvc").stdout.split()


def files_of(repo: Path, commit: str) -> set[str]:
    return set(run(repo, "git", "show", "--name-only", "--format=", commit).stdout.split())


def remotes_in(text: str) -> tuple[str | None, dict[str, str]]:
    """(default remote name, {name: url}) of a DVC config file's text."""
    config = configobj.ConfigObj(text.splitlines())
    default = config.get("core", {}).get("remote")
    urls = {}
    for section, values in config.items():
        if section.startswith("remote ") and isinstance(values, dict) and "url" in values:
            urls[section.split(" ", 1)[1].strip('"')] = values["url"]
    return default, urls


def committed_remote(repo: Path) -> tuple[str | None, str | None]:
    """(name, url) of the default remote in the committed .dvc/config."""
    proc = run(repo, "git", "show", "HEAD:.dvc/config")
    if proc.returncode != 0:
        return None, None
    default, urls = remotes_in(proc.stdout)
    return default, urls.get(default) if default else None


def assert_remotes_inside(repo: Path, sandbox: Sandbox) -> None:
    """Every DVC remote URL, in every commit and in the workspace, is an absolute path in the sandbox."""
    __tracebackhide__ = True
    configs = []
    for commit in run(repo, "git", "rev-list", "--all").stdout.split():
        proc = run(repo, "git", "show", f"{commit}:.dvc/config")
        if proc.returncode == 0:
            configs.append((f"commit {commit[:8]}", proc.stdout))
    for name in ("config", "config.local"):
        path = repo / ".dvc" / name
        if path.is_file():
            configs.append((f".dvc/{name}", path.read_text()))
    for where, text in configs:
        for name, url in remotes_in(text)[1].items():
            path = url.removeprefix("file://")
            if "://" in path or not os.path.isabs(path):
                raise AssertionError(
                    f"the DVC remote {name!r} should be stored as an absolute path; {where} has {url!r}. "
                    "DVC reads a relative URL of an old commit against the filesystem root, so the "
                    "graders do not run push or pull on this repository"
                )
            if not Path(path).resolve().is_relative_to(sandbox.root):
                raise AssertionError(
                    f"the DVC remote {name!r} should be the folder the graders gave; {where} has {url!r}"
                )


def guarded(action, repo: Path, sandbox: Sandbox) -> None:
    """Run the learner's push or pull, only when no remote of ``repo`` can point outside the sandbox."""
    __tracebackhide__ = True
    assert_remotes_inside(repo, sandbox)
    action(repo)


# -- shared set-up -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vc(load_module):
    return load_module("versioning")


@dataclass
class Initialised:
    repo: Path
    remote: Path
    status: str | None  # git status right after init_repo; None without a git repository
    rerun_clone: Path | None  # a clone of the repository right after init, for the re-run check


@pytest.fixture(scope="module")
def initialised(vc, sandbox) -> Initialised:
    """init_repo on a folder that does not exist yet, with an absolute remote folder."""
    repo, remote = sandbox.root / "project", sandbox.root / "remote"
    vc.init_repo(repo, remote)
    if not (repo / ".git").is_dir():
        return Initialised(repo, remote, None, None)
    rerun_clone = sandbox.folder("rerun")
    if run(sandbox.root, "git", "clone", "-q", str(repo), str(rerun_clone)).returncode != 0:
        rerun_clone = None
    return Initialised(repo, remote, status(repo), rerun_clone)


@dataclass
class History:
    repo: Path
    remote: Path
    commits: list[str]  # HEAD after each add_version, oldest first
    returned: list  # what add_version returned, oldest first
    status: str


@pytest.fixture(scope="module")
def history(vc, initialised, sandbox) -> History:
    """Three versions of data.csv, with a code commit between the first and the second."""
    repo = initialised.repo
    assert_remotes_inside(repo, sandbox)  # before any learner code that might push
    commits, returned = [], []
    for number, (content, message) in enumerate(zip(VERSIONS, MESSAGES, strict=True)):
        (repo / "data.csv").write_bytes(content)
        returned.append(vc.add_version(repo, "data.csv", message))
        commits.append(head(repo))
        if number == 0:
            (repo / "src").mkdir(exist_ok=True)
            (repo / "src" / "train.py").write_text("print('training')\n")
            git(repo, "add", "src/train.py")
            git(repo, "commit", "-q", "-m", "training code", "--", "src/train.py")
    assert_remotes_inside(repo, sandbox)
    return History(repo, initialised.remote, commits, returned, status(repo))


def clone(source: History | Path, sandbox: Sandbox, *, cache: bool = False) -> Path:
    """A git clone of the history repository (or of another repository); with ``cache``, a copy
    of its DVC cache too."""
    origin = source.repo if isinstance(source, History) else source
    dest = sandbox.folder("clone")
    git(sandbox.root, "clone", "-q", str(origin), str(dest))
    if cache and (origin / ".dvc" / "cache").is_dir():
        shutil.copytree(origin / ".dvc" / "cache", dest / ".dvc" / "cache")
    hand_to_learner(dest)  # the learner's code adds versions to it
    return dest


def commit_of(version) -> str:
    return field(version, "commit", what="a DataVersion")


def md5_of(version) -> str:
    return field(version, "md5", what="a DataVersion")


def message_of(version) -> str:
    return field(version, "message", what="a DataVersion")


# -- init_repo -------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.covers("init-git", "init-dvc", "init-committed")
def test_init_makes_a_committed_git_and_dvc_repository(initialised):
    """A folder that did not exist becomes a git repository with DVC initialised, all committed."""
    repo = initialised.repo
    assert (repo / ".git").is_dir(), f"init_repo should create {repo} and a git repository in it"
    assert (repo / ".dvc").is_dir(), "init_repo should run `dvc init` (there is no .dvc folder)"
    tracked = git(repo, "ls-files").split()
    assert ".dvc/config" in tracked and ".dvcignore" in tracked, (
        f"init_repo should commit what `dvc init` creates (.dvc/config, .dvcignore); git tracks {tracked}"
    )
    assert not initialised.status, (
        f"init_repo should commit what it created; right after it, `git status` shows:\n{initialised.status}"
    )


@pytest.mark.points(2)
@pytest.mark.covers("init-remote")
def test_init_sets_the_folder_as_the_committed_default_remote(initialised):
    """The committed .dvc/config names the remote folder as the default remote."""
    name, url = committed_remote(initialised.repo)
    assert name, (
        "the committed .dvc/config should name a default remote (`dvc remote add --default`); "
        "a remote kept in .dvc/config.local is not in git, so a clone would not know it"
    )
    assert url, f"the committed .dvc/config should give the default remote {name!r} a url"
    where = Path(initialised.repo / ".dvc" / url).resolve()  # how DVC reads a relative url
    assert where == initialised.remote.resolve(), (
        f"the default remote should be the folder {initialised.remote}; the committed config says {url!r}"
    )


@pytest.mark.points(2)
@pytest.mark.covers("remote-absolute")
def test_relative_remote_is_resolved_against_the_repo_and_stored_absolute(vc, sandbox):
    """init_repo(repo, "../remote-rel") from another folder stores the absolute path next to repo."""
    repo = sandbox.folder("relative") / "project"
    vc.init_repo(repo, "../remote-rel")
    expected = (repo.parent / "remote-rel").resolve()
    name, url = committed_remote(repo)
    assert url, "init_repo should commit a default remote in .dvc/config"
    assert os.path.isabs(url.removeprefix("file://")), (
        f"the remote should be stored as an absolute path ({expected}); the committed config says {url!r}. "
        "DVC reads a relative url of an old commit against the filesystem root, so "
        "`dvc push --all-commits` would write outside the project"
    )
    assert Path(url.removeprefix("file://")).resolve() == expected, (
        f"a relative remote should be resolved against the repository folder, giving {expected}; "
        f"got {url!r} (resolved against the current folder {Path.cwd()}?)"
    )


@pytest.mark.points(1)
@pytest.mark.covers("init-rerun")
def test_init_again_leaves_the_users_files_uncommitted(vc, initialised):
    """Re-running init_repo on a set-up repository with a modified and an untracked file works."""
    repo = initialised.rerun_clone
    assert repo is not None, "init_repo should make a git repository with a commit (it could not be cloned)"
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "code", "--", "train.py")
    (repo / "train.py").write_text("print('v2, not committed')\n")
    (repo / "notes.txt").write_text("my notes\n")
    vc.init_repo(repo, initialised.remote)
    assert (repo / "train.py").read_text() == "print('v2, not committed')\n", (
        "init_repo run again should leave a modified file's content alone"
    )
    assert (repo / "notes.txt").read_text() == "my notes\n", "init_repo run again should leave untracked files alone"
    assert not git(repo, "ls-files", "notes.txt").strip(), (
        "init_repo run again should not commit the user's untracked file notes.txt"
    )
    assert run(repo, "git", "diff", "--quiet", "HEAD", "--", "train.py").returncode == 1, (
        "init_repo run again should not commit the user's modified file train.py"
    )
    name, url = committed_remote(repo)
    assert url and Path(repo / ".dvc" / url).resolve() == initialised.remote.resolve(), (
        f"after init_repo runs again the default remote should still be {initialised.remote}; got {url!r}"
    )


# -- add_version and list_versions on the shared history ------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("version-commit", "version-md5", "version-message", "add-commit")
def test_add_version_returns_the_new_commit_md5_and_message(history):
    """Each add_version makes one commit with the message, and returns its hash, md5 and message."""
    assert len(set(history.commits)) == 3, (
        f"each of 3 add_version calls with new content should make a new commit; HEAD was {history.commits}"
    )
    for number, (version, commit, content, message) in enumerate(
        zip(history.returned, history.commits, VERSIONS, MESSAGES, strict=True), start=1
    ):
        got = commit_of(version)
        assert got == commit, (
            f"add_version's commit should be the full hash of the commit it made ({commit}); "
            f"got {got!r} for version {number}"
        )
        assert md5_of(version) == md5(content), (
            f"add_version's md5 should be the md5 of the file's bytes ({md5(content)}); "
            f"got {md5_of(version)!r} for version {number}"
        )
        assert message_of(version) == message, (
            f"add_version's message should be {message!r}; got {message_of(version)!r}"
        )
        subject = git(history.repo, "log", "-1", "--format=%B", commit).strip()
        assert subject == message, f"the commit of version {number} should have the message {message!r}; got {subject!r}"


@pytest.mark.points(2)
@pytest.mark.covers("add-commit", "add-only-own")
def test_each_commit_holds_the_dvc_record_and_git_ignores_the_data(history):
    """A version's commit holds data.csv.dvc (naming its md5) and .gitignore, never the data itself."""
    repo = history.repo
    for number, (commit, content) in enumerate(zip(history.commits, VERSIONS, strict=True), start=1):
        files = files_of(repo, commit)
        assert "data.csv.dvc" in files, f"the commit of version {number} should hold data.csv.dvc; it holds {sorted(files)}"
        assert files <= {"data.csv.dvc", ".gitignore"}, (
            f"the commit of version {number} should hold only data.csv.dvc and .gitignore; it holds {sorted(files)}"
        )
        record = yaml.safe_load(git(repo, "show", f"{commit}:data.csv.dvc"))
        recorded = record["outs"][0]["md5"]
        assert recorded == md5(content), (
            f"the data.csv.dvc committed for version {number} should record md5 {md5(content)}; it records {recorded}"
        )
    assert "data.csv" in git(repo, "show", f"{history.commits[0]}:.gitignore"), (
        "the first version's commit should hold the .gitignore DVC writes, which ignores data.csv"
    )
    assert not git(repo, "ls-files", "data.csv").strip(), "git should not track data.csv itself: DVC does"
    assert not history.status, f"after add_version, git should show nothing uncommitted; it shows:\n{history.status}"


@pytest.mark.points(2)
@pytest.mark.covers("list-order", "list-versions", "list-md5", "version-message")
def test_list_versions_newest_first_with_each_commits_md5(vc, history, sandbox):
    """list_versions gives the 3 data commits (not the code commit), newest first, each with its own md5."""
    repo = history.repo
    listed = list(vc.list_versions(repo, "data.csv"))
    expected = list(reversed(history.commits))
    got = [commit_of(v) for v in listed]
    assert got == expected, (
        f"list_versions should return the 3 commits that changed data.csv.dvc, newest first: {expected}; "
        f"got {got} (the training-code commit between versions 1 and 2 is not a version)"
    )
    contents = dict(zip(history.commits, VERSIONS, strict=True))
    messages = dict(zip(history.commits, MESSAGES, strict=True))
    for version in listed:
        commit = commit_of(version)
        record = yaml.safe_load(git(repo, "show", f"{commit}:data.csv.dvc"))["outs"][0]["md5"]
        cached = repo / ".dvc" / "cache" / "files" / "md5" / record[:2] / record[2:]
        committed = cached.read_bytes() if cached.is_file() else contents[commit]
        assert md5_of(version) == md5(committed) == md5(contents[commit]), (
            f"the version at commit {commit[:8]} should have the md5 of its own bytes, {md5(contents[commit])}; "
            f"got {md5_of(version)!r}"
        )
        assert message_of(version) == messages[commit], (
            f"the version at commit {commit[:8]} should have its commit message {messages[commit]!r}; "
            f"got {message_of(version)!r}"
        )
    # A version on another branch is not a version of the current branch.
    other = clone(history, sandbox)
    branch = git(other, "rev-parse", "--abbrev-ref", "HEAD").strip()
    git(other, "checkout", "-q", "-b", "experiment")
    elsewhere = graders_version(other, "data.csv", NEW, "experiment's data")
    git(other, "checkout", "-q", branch)
    got = [commit_of(v) for v in vc.list_versions(other, "data.csv")]
    assert got == expected, (
        f"list_versions should list the versions of the current branch ({branch}) only: {expected}; got {got}"
        + (" (it lists the commit of branch 'experiment')" if elsewhere in got else "")
    )


@pytest.mark.points(1)
@pytest.mark.covers("data-path")
def test_data_may_be_given_as_an_absolute_path(vc, history):
    """list_versions and data_hash accept the data file's absolute path (add_version: the next check)."""
    repo = history.repo
    got = [commit_of(v) for v in vc.list_versions(repo, repo / "data.csv")]
    assert got == list(reversed(history.commits)), (
        f"list_versions with the absolute path {repo / 'data.csv'} should list the 3 versions; got {got}"
    )
    assert vc.data_hash(repo, repo / "data.csv") == md5(VERSIONS[-1]), (
        "data_hash with an absolute path should give the checked-out version's md5"
    )


@pytest.mark.points(1)
@pytest.mark.covers("add-unchanged", "data-path")
def test_unchanged_content_makes_no_new_version(vc, history, sandbox):
    """Adding the latest version's bytes again (by absolute path) makes no commit, returns the latest."""
    repo = clone(history, sandbox)
    (repo / "data.csv").write_bytes(VERSIONS[-1])
    version = vc.add_version(repo, repo / "data.csv", "nothing new")
    assert head(repo) == history.commits[-1], "add_version with unchanged content should not make a commit"
    assert commit_of(version) == history.commits[-1], (
        f"add_version with unchanged content should return the latest version ({history.commits[-1]}); "
        f"got commit {commit_of(version)!r}"
    )
    assert md5_of(version) == md5(VERSIONS[-1]), "the returned version should have the latest version's md5"
    # A code commit after the latest version: the latest version is still the one returned.
    (repo / "src" / "train.py").write_text("print('training, version 2')\n")
    git(repo, "commit", "-q", "-am", "training code, version 2")
    code = head(repo)
    version = vc.add_version(repo, "data.csv", "still nothing new")
    assert head(repo) == code, "add_version with unchanged content should not make a commit"
    assert commit_of(version) == history.commits[-1], (
        f"add_version with unchanged content after a code commit should return the latest version "
        f"({history.commits[-1]}), not HEAD ({code}); got commit {commit_of(version)!r}"
    )


@pytest.mark.points(2)
@pytest.mark.covers("add-subfolder", "list-empty", "list-versions")
def test_data_in_a_new_subfolder_is_versioned(vc, history, sandbox):
    """data/raw.csv in a folder git does not know yet is versioned, and listed apart from data.csv."""
    repo = clone(history, sandbox)
    assert list(vc.list_versions(repo, "data/raw.csv")) == [], (
        "list_versions of a file that was never versioned should be an empty list"
    )
    (repo / "data").mkdir()
    (repo / "data" / "raw.csv").write_bytes(RAW)
    version = vc.add_version(repo, "data/raw.csv", "raw sensor data")  # git status shows `?? data/`
    assert commit_of(version) == head(repo) != history.commits[-1], (
        "add_version of data/raw.csv should commit a new version and return its commit"
    )
    tracked = git(repo, "ls-files", "data").split()
    assert "data/raw.csv.dvc" in tracked and "data/raw.csv" not in tracked, (
        f"git should track data/raw.csv.dvc, not data/raw.csv; it tracks {tracked}"
    )
    assert not status(repo), f"after add_version, git should show nothing uncommitted; it shows:\n{status(repo)}"
    listed = list(vc.list_versions(repo, "data/raw.csv"))
    assert [commit_of(v) for v in listed] == [head(repo)] and md5_of(listed[0]) == md5(RAW), (
        f"list_versions of data/raw.csv should be its one version with md5 {md5(RAW)}; got {listed}"
    )
    got = [commit_of(v) for v in vc.list_versions(repo, "data.csv")]
    assert got == list(reversed(history.commits)), (
        f"list_versions of data.csv should not include versions of data/raw.csv; got {got}"
    )


# -- refusing a dirty tree -----------------------------------------------------------------------


def refused_before_any_change(vc, repo: Path, what: str) -> str:
    """Call add_version on new data in ``repo``; it must raise and change nothing. Returns the message."""
    __tracebackhide__ = True
    (repo / "data.csv").write_bytes(NEW)
    before = (head(repo), status(repo), (repo / "data.csv.dvc").read_bytes())
    with learner_error(what=f"add_version with {what}") as caught:
        vc.add_version(repo, "data.csv", "should be refused")
    after = (head(repo), status(repo), (repo / "data.csv.dvc").read_bytes())
    assert after[0] == before[0], f"add_version with {what} should commit nothing"
    assert after[2] == before[2], f"add_version with {what} should refuse before `dvc add` changes data.csv.dvc"
    assert after[1] == before[1], (
        f"add_version with {what} should leave git's status as it was:\n{before[1]}got:\n{after[1]}"
    )
    return str(caught.value)


def assert_names_the_file(message: str, what: str) -> None:
    __tracebackhide__ = True
    assert "src/train.py" in message, (
        f"the error for {what} should name the file with changes by its path, src/train.py; got {message!r}"
    )
    assert "\n" not in message.strip(), f"the error should be one sentence, not a dump; got {message!r}"


@pytest.mark.points(2)
@pytest.mark.covers("dirty-refused", "dirty-message")
def test_modified_code_is_refused_naming_the_file(vc, history, sandbox):
    """An uncommitted change to src/train.py stops add_version, with nothing changed."""
    repo = clone(history, sandbox)
    (repo / "src" / "train.py").write_text("print('changed, not committed')\n")
    message = refused_before_any_change(vc, repo, "an uncommitted change to src/train.py")
    assert_names_the_file(message, "an uncommitted change")


@pytest.mark.points(1)
@pytest.mark.covers("staged-refused", "dirty-message")
def test_staged_code_is_refused_naming_the_file(vc, history, sandbox):
    """A staged, uncommitted change to src/train.py stops add_version, and stays staged."""
    repo = clone(history, sandbox)
    (repo / "src" / "train.py").write_text("print('changed and staged')\n")
    git(repo, "add", "src/train.py")
    message = refused_before_any_change(vc, repo, "a staged change to src/train.py")
    assert_names_the_file(message, "a staged change")


@pytest.mark.points(1)
@pytest.mark.covers("dirty-refused", "dirty-message")
def test_files_beside_the_data_are_not_its_own(vc, history, sandbox):
    """A changed .gitignore of another folder, and a changed README next to data in a subfolder, stop
    add_version: the data's own files are its .dvc file and the .gitignore DVC writes next to it."""
    repo = clone(history, sandbox)
    (repo / "config").mkdir()
    (repo / "config" / ".gitignore").write_text("*.local\n")
    git(repo, "add", "config/.gitignore")
    git(repo, "commit", "-q", "-m", "config folder")
    (repo / "config" / ".gitignore").write_text("*.local\n*.secret\n")
    hand_to_learner(repo)
    message = refused_before_any_change(vc, repo, "an uncommitted change to config/.gitignore")
    assert "config/.gitignore" in message, (
        f"the error should name the file with changes, config/.gitignore; got {message!r}")
    git(repo, "checkout", "-q", "--", "config/.gitignore")
    graders_version(repo, "data/raw.csv", RAW, "raw data")
    (repo / "data" / "README.md").write_text("sensor readings\n")
    git(repo, "add", "data/README.md")
    git(repo, "commit", "-q", "-m", "describe the raw data")
    (repo / "data" / "README.md").write_text("sensor readings, in volts\n")
    (repo / "data" / "raw.csv").write_bytes(RAW + b"c,0.3\n")
    hand_to_learner(repo)
    before = (head(repo), (repo / "data" / "raw.csv.dvc").read_bytes())
    with learner_error(what="add_version of data/raw.csv with an uncommitted change to data/README.md") as caught:
        vc.add_version(repo, "data/raw.csv", "should be refused")
    assert (head(repo), (repo / "data" / "raw.csv.dvc").read_bytes()) == before, (
        "add_version refused for data/README.md should change nothing (no commit, no `dvc add`)")
    assert "data/README.md" in str(caught.value), (
        f"the error should name the file with changes, data/README.md; got {caught.value!r}")


@pytest.mark.points(1)
@pytest.mark.covers("untracked-files")
def test_untracked_file_is_refused_or_left_out(vc, history, sandbox):
    """An untracked notes.txt is either a reason to refuse, or left out of the version's commit."""
    repo = clone(history, sandbox)
    (repo / "notes.txt").write_text("my notes\n")
    (repo / "data.csv").write_bytes(NEW)
    try:
        vc.add_version(repo, "data.csv", "data version 4")
    except NotImplementedError:
        raise
    except Exception:  # refusing is allowed: then nothing may have been committed
        assert head(repo) == history.commits[-1], "add_version that refuses should commit nothing"
        return
    assert "notes.txt" not in files_of(repo, head(repo)), (
        "add_version should not commit the user's untracked notes.txt with the data version"
    )
    assert not git(repo, "ls-files", "notes.txt").strip(), "notes.txt should stay untracked"


# -- checkout_version and data_hash ------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("checkout-bytes")
def test_each_version_checks_out_byte_identical(vc, history, sandbox):
    """In a clone, checking out version 2 then version 3 restores exactly their bytes (version 1: next check)."""
    repo = clone(history, sandbox, cache=True)
    for index in (1, 2):
        vc.checkout_version(repo, "data.csv", history.commits[index])
        got = (repo / "data.csv").read_bytes() if (repo / "data.csv").is_file() else None
        assert got == VERSIONS[index], (
            f"checking out version {index + 1} should restore its exact bytes {VERSIONS[index]!r}; got {got!r}"
        )


@pytest.mark.points(2)
@pytest.mark.covers("checkout-then-add", "hash-checked-out", "checkout-bytes", "add-unchanged", "data-path")
def test_checkout_an_old_version_then_add_a_new_one(vc, history, sandbox):
    """After checking out version 1, adding its bytes again and then new bytes make versions 4 and 5
    on top of version 3, and all 5 stay listed."""
    repo = clone(history, sandbox, cache=True)
    vc.checkout_version(repo, "data.csv", history.commits[0])
    got = (repo / "data.csv").read_bytes() if (repo / "data.csv").is_file() else None
    assert got == VERSIONS[0], f"checking out version 1 should restore its exact bytes {VERSIONS[0]!r}; got {got!r}"
    assert head(repo) == history.commits[-1], (
        f"checkout_version should not move the current branch (HEAD should stay {history.commits[-1]}); "
        f"it is now {head(repo)}"
    )
    assert vc.data_hash(repo, "data.csv") == md5(VERSIONS[0]), (
        f"data_hash after checking out version 1 should be its md5 {md5(VERSIONS[0])}; "
        f"got {vc.data_hash(repo, 'data.csv')!r}"
    )
    # Version 1's bytes are not the latest version's: adding them (by absolute path) is a new version.
    again = vc.add_version(repo, repo / "data.csv", "version 1 again")
    assert commit_of(again) == head(repo) != history.commits[-1] and md5_of(again) == md5(VERSIONS[0]), (
        "after checking out version 1, add_version of those bytes (not the latest version's) should commit "
        f"a new version with md5 {md5(VERSIONS[0])}; got commit {commit_of(again)!r}, md5 {md5_of(again)!r}"
    )
    (repo / "data.csv").write_bytes(NEW)
    version = vc.add_version(repo, "data.csv", "data version 5")
    expected = [head(repo), commit_of(again), *reversed(history.commits)]
    assert data_commits(repo) == expected and commit_of(version) == expected[0], (
        "after checking out version 1, add_version should commit on top of version 3, keeping every "
        f"version on the branch; git's log of data.csv.dvc shows {data_commits(repo)}"
    )
    got = [commit_of(v) for v in vc.list_versions(repo, "data.csv")]
    assert got == expected, f"list_versions should now list the 5 versions newest first {expected}; got {got}"


@pytest.mark.points(1)
@pytest.mark.covers("checkout-unknown")
def test_unknown_commit_is_an_error_naming_it(vc, history, sandbox):
    """Checking out a commit that does not exist names it, and leaves the workspace as it was."""
    repo = clone(history, sandbox)
    (repo / "data.csv").write_bytes(VERSIONS[-1])
    record = (repo / "data.csv.dvc").read_bytes()
    unknown = "0badc0de" * 5
    with learner_error(what="checkout_version of a commit that does not exist") as caught:
        vc.checkout_version(repo, "data.csv", unknown)
    assert unknown[:7] in str(caught.value), f"the error should name the commit {unknown}; got {caught.value!r}"
    assert (repo / "data.csv").read_bytes() == VERSIONS[-1] and (repo / "data.csv.dvc").read_bytes() == record, (
        "checkout_version of an unknown commit should leave data.csv and data.csv.dvc as they were"
    )


@pytest.mark.points(1)
@pytest.mark.covers("hash-md5")
def test_data_hash_is_the_md5_of_the_checked_out_bytes(vc, history):
    """data_hash equals hashlib's md5 of the workspace file (version 3)."""
    content = (history.repo / "data.csv").read_bytes()
    assert content == VERSIONS[-1], "after three add_version calls data.csv should still hold version 3"
    got = vc.data_hash(history.repo, "data.csv")
    assert got == md5(content), f"data_hash should be the md5 of the checked-out bytes, {md5(content)}; got {got!r}"


# -- push and pull -------------------------------------------------------------------------------


def remote_objects(remote: Path) -> dict[str, Path]:
    """{md5: file} of every object in a local DVC remote (files/md5/ab/cdef…)."""
    return {"".join(p.parts[-2:]): p for p in remote.rglob("*") if p.is_file()} if remote.is_dir() else {}


@pytest.mark.points(2)
@pytest.mark.covers("push-all")
def test_push_uploads_every_version_to_the_remote(vc, history, sandbox):
    """After push, the remote folder alone holds the bytes of all 3 versions."""
    guarded(vc.push, history.repo, sandbox)
    objects = remote_objects(history.remote)
    for number, content in enumerate(VERSIONS, start=1):
        path = objects.get(md5(content))
        assert path is not None, (
            f"after push the remote {history.remote} should hold version {number} (md5 {md5(content)}): "
            "push every committed version, not only the checked-out one"
        )
        assert path.read_bytes() == content, f"the remote's copy of version {number} should hold its bytes"


def clone_with_remote(source: History | Path, sandbox: Sandbox, drop: tuple[str, ...] = ()) -> Path:
    """A fresh clone (empty cache) whose default remote is a copy of the versions the graders made.

    The copy comes from the source repository's DVC cache, so these checks do not rely on the
    learner's push.
    """
    origin = source.repo if isinstance(source, History) else source
    cache = origin / ".dvc" / "cache" / "files"
    assert cache.is_dir(), "add_version should store the data in DVC's cache (.dvc/cache) with `dvc add`"
    remote = sandbox.folder("remote-copy")
    shutil.copytree(cache, remote / "files")
    for gone in drop:
        (remote / "files" / "md5" / gone[:2] / gone[2:]).unlink()
    repo = clone(origin, sandbox)
    name, _ = committed_remote(repo)
    (repo / ".dvc" / "config.local").write_text(f"['remote \"{name}\"']\n    url = {remote}\n")
    return repo


@pytest.mark.points(2)
@pytest.mark.covers("pull-restores")
def test_pull_restores_the_checked_out_version_in_a_fresh_clone(vc, history, sandbox):
    """In a clone with an empty cache and version 1's record checked out, pull restores version 1."""
    repo = clone_with_remote(history, sandbox)
    git(repo, "checkout", history.commits[0], "--", "data.csv.dvc")  # the oldest version's record
    guarded(vc.pull, repo, sandbox)
    got = (repo / "data.csv").read_bytes() if (repo / "data.csv").is_file() else None
    assert got == VERSIONS[0], (
        "pull in a fresh clone (empty cache) should restore, from the remote, the version whose .dvc file "
        f"is checked out (version 1, {VERSIONS[0]!r}); got {got!r}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("pull-restores")
def test_pull_restores_data_in_a_subfolder_too(vc, history, sandbox):
    """pull restores every checked-out version, data/raw.csv in a subfolder as well as data.csv."""
    origin = clone(history, sandbox, cache=True)
    graders_version(origin, "data/raw.csv", RAW, "raw data")
    repo = clone_with_remote(origin, sandbox)
    guarded(vc.pull, repo, sandbox)
    got = {f: (repo / f).read_bytes() if (repo / f).is_file() else None for f in ("data.csv", "data/raw.csv")}
    assert got == {"data.csv": VERSIONS[-1], "data/raw.csv": RAW}, (
        "pull in a fresh clone should restore every checked-out version, data/raw.csv in its subfolder too; "
        f"got {got}")


@pytest.mark.points(1)
@pytest.mark.covers("pull-missing")
def test_pull_fails_when_the_remote_lacks_the_data(vc, history, sandbox):
    """pull raises when the remote does not hold the checked-out version."""
    repo = clone_with_remote(history, sandbox, drop=(md5(VERSIONS[-1]),))
    assert_remotes_inside(repo, sandbox)
    with learner_error(what="pull when the remote lacks the checked-out version"):
        vc.pull(repo)


# -- the graders' own safety (no points) ---------------------------------------------------------


@pytest.mark.parametrize("url", ["../../remote", "remote", "../remote"])
def test_graders_never_push_to_a_relative_remote(sandbox, url):
    """A relative remote in an old commit (what DVC reads from /) stops push and pull before they run."""
    repo = sandbox.folder("hostile")
    (repo / ".dvc").mkdir(parents=True)
    git(repo, "init", "-q")
    config = repo / ".dvc" / "config"
    config.write_text(f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {url}\n")
    git(repo, "add", ".dvc/config")
    git(repo, "commit", "-q", "-m", "relative remote")
    config.write_text(f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {sandbox.root / 'r'}\n")
    git(repo, "commit", "-q", "-am", "absolute remote")
    called = []
    with pytest.raises(AssertionError, match="absolute path"):
        guarded(called.append, repo, sandbox)
    assert not called, "the graders should not run push or pull on a repository with a relative remote"

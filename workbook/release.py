"""The repository a learner receives (``workbook release OUT``).

What goes in: the tooling, the catalog, the ready exercises' starter files (generated from
``solutions/`` the way ``workbook stubs`` does, so a maintainer's own attempt in
``exercises/`` never ships), their notebooks, and their graders with every hidden check
(``@pytest.mark.hidden``) cut out of the source with the ``ast`` module. What stays out:
``solutions/``, ``tests/mutants/`` and every maintainers' test (only the tooling tests in
``RELEASE_TESTS`` ship, without their functions that read solutions/), the benchmarks (they
time the solutions; ``benchmarks/results/mutation_*.json`` hold solution diffs), and the
folders of exercises that are not ready.

The release keeps a second copy of each starter file in ``exercises/.starter/`` (hidden in
JupyterLab): ``workbook list`` and ``workbook reset`` compare with it where there is no
``solutions/`` to generate the stubs from. Its ``make test`` runs a smaller gate set: lint,
the tooling tests that need no solutions, and "every check reads not started on the starter
files" (``tests/test_release.py``). The release is a fresh git repository with one commit,
so no history holds what was left out.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from workbook import catalog, paths, stubs

STARTER = ".starter"  # exercises/.starter/<id>/<file>: pristine starter files (paths.starter_dir)
SKIP_PARTS = {".git", ".venv", ".workbook", "__pycache__", ".pytest_cache", ".ipynb_checkpoints",
              "nbgrader_build", "build", "dist", ".ruff_cache"}

# Left out of the release, as glob patterns of repository paths.
DROPPED = (
    "solutions/*",
    # Benchmarks time the solutions, and benchmarks/results/mutation_*.json hold their diffs.
    "benchmarks/*",
    "*.egg-info/*",
)

# The tooling tests a release keeps (its `make test`); every other file under tests/ stays out,
# so a new maintainers' test (mutants, hostile submissions, services) never ships by accident.
RELEASE_TESTS = ("tests/__init__.py", "tests/conftest.py", "tests/test_catalog.py",
                 "tests/test_cli.py", "tests/test_plugin.py", "tests/test_stubs.py",
                 "tests/test_release.py")

# Tests of those files that read the full workbook's solutions/, cut out of their files.
TESTS_NEEDING_SOLUTIONS = {
    "tests/test_stubs.py": ("test_repository_stubs_are_up_to_date",),
    "tests/test_catalog.py": ("test_repository_catalog_has_no_problems",),
    "tests/test_release.py": ("test_release_*",),
}

# Makefile targets that need solutions/, the mutants or the maintainers' benchmarks.
MAKE_TARGETS_DROPPED = ("test-services", "test-notebooks", "stubs", "bench", "bench-services",
                        "mutation", "mutation-all", "contract", "nbgrader", "release")
MAKE_TEST_RULE = """\
## The learner release's gates (built by `workbook release`; there is no solutions/ here): lint,
## the tooling tests that need no solutions, and every check reads "not started" on the
## starter files (tests/test_release.py).
test: setup lint
\tWORKBOOK_SERVICES=local $(BIN)/pytest tests -n 2
"""
RULE = re.compile(r"^(?P<targets>[A-Za-z0-9_.$()/-]+(?:[ \t]+[A-Za-z0-9_.$()/-]+)*)[ \t]*:(?!=)")

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "MLOps Workbook", "GIT_AUTHOR_EMAIL": "workbook@localhost",
    "GIT_COMMITTER_NAME": "MLOps Workbook", "GIT_COMMITTER_EMAIL": "workbook@localhost",
}


class ReleaseError(RuntimeError):
    """The release cannot be built; the message says why and what to do."""


@dataclass
class Release:
    root: Path
    files: list[str] = field(default_factory=list)
    hidden_checks: list[str] = field(default_factory=list)  # "graders/ce4_2/test_drift.py::test_x"
    dropped: list[str] = field(default_factory=list)


def build(out: Path, *, git: bool = True) -> Release:
    """Write the learner release to ``out`` (a new or empty folder); return what went in."""
    out = Path(out).resolve()
    root = paths.root()
    if out.is_relative_to(root) or root.is_relative_to(out):
        raise ReleaseError(f"{out} overlaps the workbook checkout; choose a folder outside it.")
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty; give `workbook release` a new or empty folder.")
    if not paths.solutions_dir().is_dir():
        raise ReleaseError("this checkout has no solutions/ (it is a release itself); build the "
                           "release from the full workbook.")
    exercises = catalog.load()
    ready = {e.id for e in exercises if e.ready}
    release = Release(root=out)
    for relative in source_files(root):
        if _dropped(relative, ready):
            release.dropped.append(relative)
            continue
        content = (root / relative).read_bytes()
        content = _transform(relative, content, release)
        _write(out / relative, content, root / relative)
        release.files.append(relative)
    for stub in stubs.planned_stubs(sorted(ready)):
        relative = stub.destination.relative_to(paths.exercises_dir())
        for path in (out / "exercises" / relative, out / "exercises" / STARTER / relative):
            _write(path, stub.content, stub.source)
            release.files.append(path.relative_to(out).as_posix())
    if git:
        _commit(out)
    return release


def source_files(root: Path) -> list[str]:
    """The checkout's files (POSIX paths): what git tracks or would track, else a folder walk."""
    if (root / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
        names = sorted({n for n in listed if n and (root / n).is_file()})
    else:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return [n for n in names if not SKIP_PARTS & set(n.split("/")) and not n.endswith(".pyc")]


def _dropped(relative: str, ready: set[str]) -> bool:
    if any(fnmatch.fnmatch(relative, pattern) for pattern in DROPPED):
        return True
    parts = relative.split("/")
    if parts[0] == "tests":
        return relative not in RELEASE_TESTS
    if parts[0] == "exercises":
        return True  # written from the stubs of the ready exercises, below
    if parts[0] == "graders" and len(parts) > 2 and parts[1] not in ready:
        return True
    return parts[0] == "notebooks" and Path(relative).suffix == ".ipynb" and Path(relative).stem not in ready


def _transform(relative: str, content: bytes, release: Release) -> bytes:
    if relative == "Makefile":
        return release_makefile(content.decode("utf-8")).encode("utf-8")
    if relative.startswith("graders/") and relative.endswith(".py"):
        text, removed = strip_hidden_checks(content.decode("utf-8"), relative)
        release.hidden_checks += [f"{relative}::{name}" for name in removed]
        return text.encode("utf-8")
    if relative in TESTS_NEEDING_SOLUTIONS:
        patterns = TESTS_NEEDING_SOLUTIONS[relative]
        text, removed = strip_functions(
            content.decode("utf-8"), lambda node: any(fnmatch.fnmatch(node.name, p) for p in patterns))
        missing = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in removed)]
        if missing:
            raise ReleaseError(f"{relative} has no test named {missing[0]} any more; update "
                               "TESTS_NEEDING_SOLUTIONS in workbook/release.py.")
        return text.encode("utf-8")
    if relative.startswith("notebooks/") and relative.endswith(".ipynb"):
        return _strip_notebook_solutions(content)
    return content


def _write(path: Path, content: bytes, source: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if os.access(source, os.X_OK):
        path.chmod(0o755)


# -- hidden checks and other functions, cut out with ast ---------------------------------------


def is_hidden(node: ast.AST) -> bool:
    """A function or class decorated with ``@pytest.mark.hidden`` (or ``@mark.hidden``)."""
    for decorator in getattr(node, "decorator_list", []):
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "hidden" and \
                isinstance(target.value, ast.Attribute | ast.Name) and \
                (getattr(target.value, "attr", None) == "mark" or getattr(target.value, "id", None) == "mark"):
            return True
    return False


def strip_hidden_checks(source: str, name: str = "<grader>") -> tuple[str, list[str]]:
    """``source`` without its hidden checks; and the names removed.

    A module marked hidden as a whole (``pytestmark = pytest.mark.hidden``) cannot be cut
    apart and is refused.
    """
    tree = ast.parse(source, filename=name)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets) \
                and "hidden" in ast.unparse(node.value):
            raise ReleaseError(f"{name} marks every check hidden with pytestmark; mark the "
                               "functions instead, so the release can drop them.")
    return strip_functions(source, is_hidden, name)


def strip_functions(source: str, drop, name: str = "<source>") -> tuple[str, list[str]]:
    """``source`` without the functions and classes (top level, or methods) for which
    ``drop(node)`` is true, decorators included; everything else is kept as it is."""
    tree = ast.parse(source, filename=name)
    spans, removed, used_by_removed = [], [], set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if drop(node):
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    spans.append((first, node.end_lineno))
                    removed.append(node.name)
                    used_by_removed.update(_names(node))
                elif isinstance(node, ast.ClassDef):
                    visit(node.body)

    visit(tree.body)
    if not spans:
        return source, []
    lines = source.splitlines(keepends=True)
    for first, last in sorted(spans, reverse=True):
        # Comment lines just above a removed function belong to it.
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1
        del lines[first - 1:last]
    text = _drop_unused_imports("".join(lines), used_by_removed, name)
    text = re.sub(r"\n{4,}", "\n\n\n", text).rstrip("\n") + "\n"
    ast.parse(text, filename=name)  # still Python
    return text, removed


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _drop_unused_imports(text: str, candidates: set[str], name: str) -> str:
    """Remove the module-level imports only the removed code used (ruff's F401 otherwise)."""
    tree = ast.parse(text, filename=name)
    used = set().union(*(_names(n) for n in tree.body if not isinstance(n, ast.Import | ast.ImportFrom)))
    lines = text.splitlines(keepends=True)
    for node in reversed(tree.body):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        keep = [a for a in node.names
                if (bound := a.asname or a.name.split(".")[0]) not in candidates or bound in used]
        if len(keep) == len(node.names):
            continue
        replacement = []
        if keep:
            node.names = keep
            replacement = [ast.unparse(node) + "\n"]
        lines[node.lineno - 1:node.end_lineno] = replacement
    return "".join(lines)


def _strip_notebook_solutions(content: bytes) -> bytes:
    import nbformat

    if b"BEGIN SOLUTION" not in content:
        return content
    nb = nbformat.reads(content.decode("utf-8"), as_version=4)
    for cell in nb.cells:
        if "BEGIN SOLUTION" in cell.source:
            cell.source = stubs.make_stub(cell.source, python=cell.cell_type == "code")
    return (nbformat.writes(nb) + "\n").encode("utf-8")


# -- the Makefile --------------------------------------------------------------------------------


def release_makefile(text: str) -> str:
    """The workbook's Makefile with the release's ``test`` rule and without the maintainers' targets."""
    blocks = re.split(r"\n[ \t]*\n", text.rstrip("\n"))
    out, seen = [], set()
    for block in blocks:
        targets = _block_targets(block)
        if targets & set(MAKE_TARGETS_DROPPED):
            seen |= targets
            continue
        if "test" in targets:
            seen.add("test")
            out.append(MAKE_TEST_RULE.rstrip("\n"))
            continue
        out.append("\n".join(_phony_without_dropped(line) for line in block.split("\n")))
    if "test" not in seen:
        raise ReleaseError("the Makefile has no `test:` rule; update release_makefile in workbook/release.py.")
    return "\n\n".join(out) + "\n"


def _block_targets(block: str) -> set[str]:
    for line in block.split("\n"):
        if line.startswith(("#", "\t")) or "=" in line.split(":")[0]:
            continue
        match = RULE.match(line)
        if match and not line.startswith(".PHONY"):
            return set(match["targets"].split())
    return set()


def _phony_without_dropped(line: str) -> str:
    if not line.startswith(".PHONY:"):
        return line
    names = [n for n in line.split(":", 1)[1].split() if n not in MAKE_TARGETS_DROPPED]
    return ".PHONY: " + " ".join(names)


# -- git ------------------------------------------------------------------------------------------


def _commit(out: Path) -> None:
    if not shutil.which("git"):
        raise ReleaseError("git is not on PATH; install git, or pass --no-git for a plain folder.")
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "commit", "-q", "-m", "MLOps Workbook: the learner's repository"]):
        done = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True)
        if done.returncode:
            raise ReleaseError(f"`{' '.join(command)}` failed in {out}: {done.stderr.strip()}")


# -- checking a built release ------------------------------------------------------------------------


def solution_regions(root: Path | None = None) -> list[tuple[str, str]]:
    """(file, text) of every region between ``### BEGIN SOLUTION`` and ``### END SOLUTION``."""
    base = (root or paths.root()) / "solutions"
    found = []
    for path in sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        region: list[str] | None = None
        for line in text.splitlines():
            if stubs.BEGIN.match(line):
                region = []
            elif stubs.END.match(line) and region is not None:
                found.append((path.relative_to(base).as_posix(), "\n".join(region)))
                region = None
            elif region is not None:
                region.append(line)
    return found

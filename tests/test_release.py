"""The learner release (``workbook release OUT``).

Two halves. ``test_release_*`` build a release from this checkout and prove what it holds and
what it leaves out; ``workbook release`` cuts them from the release's own copy of this file.
The rest run in the release itself, as part of its ``make test`` (the full workbook skips
them: its quality gates grade stubs generated fresh from solutions/).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbook import catalog, cli, paths, release, runner, stubs

FULL_WORKBOOK = paths.solutions_dir().is_dir()
READY = [e for e in catalog.load() if e.ready]
BEGIN = re.compile(r"^\s*#+\s*BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*#+\s*END SOLUTION\s*$")


def normalised(text: str) -> str:
    """Lines stripped of indentation, blank lines dropped: a region re-indented still matches."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


MIN_REVEALING = 40  # characters of a normalised solution region


def solution_regions() -> list[tuple[str, str]]:
    """(file, normalised text) of every solution region, read here with a regex of its own."""
    regions = []
    for path in sorted(paths.solutions_dir().rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        inside = None
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if BEGIN.match(line):
                inside = []
            elif END.match(line) and inside is not None:
                regions.append((str(path.relative_to(paths.root())), normalised("\n".join(inside))))
                inside = None
            elif inside is not None:
                inside.append(line)
    return regions


def hidden_checks() -> list[tuple[str, str, str]]:
    """(file, name, source) of every function or class marked ``@pytest.mark.hidden``."""
    found = []
    for path in sorted(paths.graders_dir().rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if any(ast.unparse(d).endswith("mark.hidden") for d in getattr(node, "decorator_list", [])):
                found.append((str(path.relative_to(paths.root())), node.name,
                              ast.get_source_segment(text, node)))
    return found


def release_texts(root: Path) -> dict[str, str]:
    """Every file of the release as text (``.git`` aside), and its whole git history as one text."""
    texts = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not {".git", "__pycache__"} & set(path.relative_to(root).parts):
            texts[str(path.relative_to(root))] = path.read_bytes().decode("utf-8", errors="replace")
    log = subprocess.run(["git", "log", "--all", "-p", "--format=%H %s"], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    texts["<git history>"] = "\n".join(line[1:] if line.startswith("+") else line for line in log.splitlines())
    return texts


def run_in(root: Path, *command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """A command in the release, importing *its* workbook package (``python -m`` puts cwd first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOK_")}
    env["WORKBOOK_SERVICES"] = "local"
    return subprocess.run(list(command), cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learner") / "mlops-workbook"
    release.build(out)
    return out


# -- the release, built from the full workbook ---------------------------------------------------


def test_release_has_no_solution_region(built):
    """No region between BEGIN/END SOLUTION appears in any file of the release or its history."""
    regions = solution_regions()
    assert len(regions) > 20, f"solutions/ should hold the regions this test looks for; found {len(regions)}"
    texts = {name: normalised(text) for name, text in release_texts(built).items()}
    # A one-line region as short as `return {"status": "ok"}` reveals nothing and may well
    # appear in provided code elsewhere; every longer region must not.
    leaks = [f"{source} region {region[:60]!r}… is in {name}"
             for source, region in regions if len(region) >= MIN_REVEALING
             for name, text in texts.items() if region in text]
    assert not leaks, "the release should hold no solution region:\n" + "\n".join(leaks)
    marked = [name for name, text in texts.items() if "BEGIN SOLUTION" in text
              and not name.startswith(("workbook/", "tests/", "README", "<git history>"))]
    assert not marked, f"only the tooling and its docs should mention solution markers; found {marked}"


def test_release_has_no_hidden_check(built):
    """No hidden check's name or source appears in any file of the release or its history."""
    hidden = hidden_checks()
    assert hidden, "the graders should have a hidden check for this test to mean something"
    texts = release_texts(built)
    leaks = [f"{file}::{name} is in {where}" for file, name, source in hidden
             for where, text in texts.items() if re.search(rf"\b{name}\b", text) or source in text]
    assert not leaks, "the release should hold no hidden check:\n" + "\n".join(leaks)


def test_release_keeps_every_public_check_as_it_is(built):
    """The graders lose their hidden checks and nothing else: every public check's source is intact."""
    hidden = {(file, name) for file, name, _ in hidden_checks()}
    for exercise in READY:
        for path in sorted(exercise.grader_dir.rglob("*.py")):
            relative = str(path.relative_to(paths.root()))
            text = path.read_text(encoding="utf-8")
            shipped = (built / relative).read_text(encoding="utf-8")
            for node in ast.parse(text).body:
                if isinstance(node, ast.FunctionDef | ast.ClassDef) and (relative, node.name) not in hidden:
                    assert ast.get_source_segment(text, node) in shipped, f"{relative}::{node.name} should ship as it is"


def test_release_leaves_out_what_reveals_answers(built):
    """No solutions/, no mutants, no mutation reports, no tests that need solutions."""
    names = set(release_texts(built)) - {"<git history>"}
    for pattern in ("solutions/*", "tests/mutants/*", "benchmarks/*",
                    "tests/test_quality_gates.py", "tests/test_nbgrader.py"):
        found = sorted(n for n in names if Path(n).match(pattern) or n.startswith(pattern.rstrip("*")))
        assert not found, f"the release should leave out {pattern}; found {found}"
    for exercise in READY:
        for name in exercise.files:
            stub = stubs.stub_for(exercise.id, name)
            assert (built / "exercises" / exercise.id / name).read_bytes() == stub
            assert (built / "exercises" / release.STARTER / exercise.id / name).read_bytes() == stub


def test_release_is_a_fresh_repository_with_one_commit(built):
    """One commit whose tree is exactly the files on disk: no history holds what was left out."""
    git = lambda *a: subprocess.run(["git", *a], cwd=built, capture_output=True, text=True, check=True).stdout  # noqa: E731
    assert git("rev-list", "--all", "--count").strip() == "1"
    assert git("status", "--porcelain") == "", "the release's files should all be committed"
    tracked = set(git("ls-files").split("\n")) - {""}
    on_disk = {str(p.relative_to(built)) for p in built.rglob("*")  # __pycache__: the gates ran here
               if p.is_file() and not {".git", "__pycache__"} & set(p.relative_to(built).parts)}
    assert tracked == on_disk


def test_release_passes_its_own_gates(built):
    """In the release: ruff on our files, its tests collect, its own checks pass (ce4_2, the
    fast one), `workbook list` reads the starter files without solutions/."""
    ours = ["workbook/release.py", "workbook/nbgrader_course.py", "tests/test_release.py",
            "tests/test_stubs.py", "tests/test_catalog.py", "Makefile"]
    lint = run_in(built, sys.executable, "-m", "ruff", "check", *[f for f in ours if f.endswith(".py")])
    assert lint.returncode == 0, f"ruff should pass on the release's copies:\n{lint.stdout}"
    collect = run_in(built, sys.executable, "-m", "pytest", "tests", "--collect-only", "-q")
    assert collect.returncode == 0, f"the release's tests should collect:\n{collect.stdout[-3000:]}"
    own = run_in(built, sys.executable, "-m", "pytest", "tests/test_release.py", "-q",
                 "-k", "this_checkout or ce4_2")
    assert own.returncode == 0 and " passed" in own.stdout, f"the release's own checks should pass:\n{own.stdout[-3000:]}"
    listed = run_in(built, sys.executable, "-m", "workbook.cli", "list")
    assert listed.returncode == 0 and "not started" in listed.stdout, listed.stdout + listed.stderr
    makefile = (built / "Makefile").read_text(encoding="utf-8")
    recipes = [line for line in makefile.splitlines() if line.startswith("\t")]
    assert "test: setup lint" in makefile and not any("solutions" in line for line in recipes)


def test_release_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    """A release never overwrites: one sentence, exit 2."""
    (tmp_path / "something").write_text("mine")
    assert cli.main(["release", str(tmp_path)]) == 2
    assert "is not empty" in " ".join(capsys.readouterr().out.split())


def test_release_cuts_hidden_functions_methods_and_classes():
    """strip_hidden_checks drops decorated functions with their comments, methods and classes."""
    source = (
        "import pytest\n\n\n"
        "def helper():\n    return 1\n\n\n"
        "# about the hidden one\n@pytest.mark.points(2)\n@pytest.mark.hidden\ndef test_secret():\n"
        "    assert helper() == 1\n\n\n"
        "@pytest.mark.points(1)\ndef test_public():\n    assert helper()\n\n\n"
        "class TestGroup:\n    @pytest.mark.hidden\n    def test_a(self):\n        pass\n\n"
        "    def test_b(self):\n        pass\n\n\n"
        "@pytest.mark.hidden\nclass TestAllHidden:\n    def test_c(self):\n        pass\n"
    )
    text, removed = release.strip_hidden_checks(source)
    assert removed == ["test_secret", "test_a", "TestAllHidden"]
    assert "secret" not in text and "about the hidden" not in text and "test_c" not in text
    assert "def test_public" in text and "def test_b" in text and "def helper" in text
    with pytest.raises(release.ReleaseError, match="pytestmark"):
        release.strip_hidden_checks("import pytest\npytestmark = pytest.mark.hidden\n")


def test_release_makefile_has_the_release_gates():
    """The release's Makefile: its own `test` rule, no target that needs solutions/ or mutants."""
    text = release.release_makefile((paths.root() / "Makefile").read_text(encoding="utf-8"))
    assert "test: setup lint" in text
    for target in release.MAKE_TARGETS_DROPPED:
        assert not re.search(rf"^{re.escape(target)}:", text, re.M), f"{target} should be left out"
    assert "lab:" in text and "lint:" in text and "doctor:" in text


# -- the release itself: its `make test` runs these ------------------------------------------------

in_release = pytest.mark.skipif(FULL_WORKBOOK, reason="runs in a learner's release (no solutions/); "
                                "the full workbook's quality gates grade fresh stubs")


@in_release
def test_this_checkout_holds_no_answers():
    """No solutions/, no mutants, no solution markers in the starter files."""
    assert not paths.solutions_dir().exists() and not paths.mutants_dir().exists()
    for path in paths.exercises_dir().rglob("*"):
        if path.is_file():
            assert "BEGIN SOLUTION" not in path.read_text(encoding="utf-8", errors="replace"), path


@in_release
@pytest.mark.parametrize("exercise", READY, ids=[e.id for e in READY])
def test_starter_files_read_not_started(exercise):
    """The starter files are pristine, and every public check reads "not started" on them."""
    for name in exercise.files:
        assert (paths.exercises_dir() / exercise.id / name).read_bytes() == stubs.stub_for(exercise.id, name), (
            f"exercises/{exercise.id}/{name} should be the starter file (`workbook reset {exercise.id}`)")
    run = runner.grade([exercise.id], "exercises")
    assert run.tests, f"the graders of {exercise.id} should run; they said:\n{run.output[-2000:]}"
    wrong = [f"{t['check']}: {t['outcome']}" for t in run.tests if t["outcome"] != "not started"]
    assert not wrong, f"every check of {exercise.id} should read 'not started' on the starter files: {wrong}"
    assert not any(t["visibility"] != "visible" for t in run.tests), "the release should run no hidden check"

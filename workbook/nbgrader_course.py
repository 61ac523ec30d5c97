"""The instructor's nbgrader course, built from the workbook (``workbook nbgrader build``).

The course folder holds, for each ready exercise of the catalog::

    source/<id>/<id>.ipynb   the exercise notebook, with one locked set-up cell and one
                             autograded cell worth the catalog's points
    source/<id>/<file>       the learner files as *stubs* (nbgrader copies side files as they
                             are, so the source must never hold the solution)
    nbgrader_config.py       course id, ``Autograde.exclude_overwriting`` (students' edits of
                             their learner files are graded, not replaced by the stub), the
                             cell time limit, and the trusted checkout

The autograded cell calls :func:`autograde_cell`, which copies the learner files beside the
notebook into a temporary folder and grades them, in a subprocess, with the graders of the
*trusted checkout*: ``$WORKBOOK_TRUSTED_ROOT``, which the course's ``nbgrader_config.py`` sets
to the checkout that built the course (edit it there if the checkout moves). Hidden checks
therefore never appear in a notebook: they are read from the trusted checkout at autograde
time, and the cell prints only how many of them passed, never their names or messages
(``generate_feedback`` shows the cell's output to students).

nbgrader scores an autograded code cell from its output (nbgrader 0.9.6,
``nbgrader.utils.determine_grade``): 0 on an error *or any stderr output*, else the last
expression's value when it reads as a number (more than the cell's points fails the whole
autograde), else full marks. So the cell swallows stderr and always ends with a number, and a
grading error (no report) raises, which scores 0 and shows the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from workbook import catalog, paths

COURSE_ID = "mlops-workbook"
TRUSTED_ENV = "WORKBOOK_TRUSTED_ROOT"
CELL_TIMEOUT = 900  # seconds; one autograded cell runs a whole exercise's graders (budget 600 s)
NBGRADER_SCHEMA = 3
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}

SETUP_CELL = '''\
# Set up by the course; leave this cell as it is. Your files are the ones beside this
# notebook ({files}): the notebook and the grading cell below load them from here.
import os

os.environ["WORKBOOK_TARGET"] = os.path.dirname(os.getcwd())
'''

GRADED_CELL = '''\
# Autograded ({points} points): the course's graders check your {files} and the cell ends with
# the points you earned. Leave this cell as it is; nbgrader restores it before grading.
import contextlib
import io

with contextlib.redirect_stderr(io.StringIO()):  # nbgrader scores a cell that writes to stderr 0
    from workbook.nbgrader_course import autograde_cell

    points = autograde_cell("{id}")
points
'''

CONFIG = '''\
"""nbgrader configuration of the MLOps Workbook course, written by `workbook nbgrader build`.

Run nbgrader from this folder: `nbgrader generate_assignment ce4_2`, students submit,
`nbgrader autograde ce4_2`, `nbgrader generate_feedback ce4_2`, `nbgrader export`.
Each assignment's id is an exercise id; its autograded cell grades the learner files with the
graders of the trusted workbook checkout below, hidden checks included, in a subprocess.
"""

import os

c = get_config()  # noqa: F821 -- nbgrader defines get_config when it loads this file

c.CourseDirectory.course_id = {course_id!r}

# The workbook checkout whose graders grade the submissions (never a student's copy). The
# kernels nbgrader starts inherit it. Set WORKBOOK_TRUSTED_ROOT before running nbgrader to
# use another checkout; the package `workbook` must be installed in the kernel's environment.
os.environ.setdefault({env!r}, {trusted!r})

# Students edit these side files; autograde grades their copies instead of the stubs in source/.
c.Autograde.exclude_overwriting = {exclude!r}

# One autograded cell runs a whole exercise's graders (their own budget is 600 s).
c.Execute.timeout = {timeout}
'''


class CourseError(RuntimeError):
    """The course cannot be built or a submission cannot be graded; the message says why."""


# -- building the course --------------------------------------------------------------------------


def build(out: Path, exercise_ids: list[str] | None = None) -> list[Path]:
    """Write the nbgrader course for the ready exercises (or ``exercise_ids``) to ``out``.

    Returns the files written. ``source/<id>/`` is replaced as a whole; nbgrader's own folders
    (release/, submitted/, autograded/, feedback/, gradebook.db) are left alone.
    """
    import nbformat

    from workbook import stubs

    everything = catalog.load()
    if exercise_ids:
        chosen = [catalog.get(i, everything) for i in exercise_ids]
        for exercise in chosen:
            if not exercise.ready:
                raise CourseError(f"{exercise.id} is planned and has no graders yet; only ready "
                                  "exercises can be nbgrader assignments.")
    else:
        chosen = [e for e in everything if e.ready]
    out = Path(out)
    written = []
    for exercise in chosen:
        folder = out / "source" / exercise.id
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for stub in stubs.planned_stubs([exercise.id]):
            path = folder / stub.destination.relative_to(paths.exercises_dir() / exercise.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(stub.content)
            written.append(path)
        notebook = folder / f"{exercise.id}.ipynb"
        nbformat.write(course_notebook(exercise), notebook)
        written.append(notebook)
    config = out / "nbgrader_config.py"
    config.write_text(config_text(chosen), encoding="utf-8")
    written.append(config)
    return written


def config_text(exercises: list[catalog.Exercise], trusted: Path | None = None) -> str:
    """The course's ``nbgrader_config.py``."""
    return CONFIG.format(
        course_id=COURSE_ID, env=TRUSTED_ENV, trusted=str(trusted or paths.root()),
        exclude={e.id: list(e.files) for e in exercises}, timeout=CELL_TIMEOUT,
    )


def course_notebook(exercise: catalog.Exercise):
    """The exercise notebook with the course's set-up cell first and its autograded cell.

    The autograded cell replaces the notebook's "check your work" cell (``check("<id>")``),
    which runs the same graders; a notebook without one gets the cell at the end.
    """
    import nbformat

    files = ", ".join(exercise.files)
    if exercise.notebook.is_file():
        nb = nbformat.read(exercise.notebook, as_version=4)
    else:  # the catalog's gate asks for one; until then the assignment is its graded cell
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {exercise.title}\n\nEdit {files}."))
    setup = nbformat.v4.new_code_cell(SETUP_CELL.format(files=files))
    setup.metadata["nbgrader"] = _nbgrader_metadata(f"{exercise.id}_setup", locked=True)
    graded = nbformat.v4.new_code_cell(
        GRADED_CELL.format(id=exercise.id, points=exercise.points, files=files))
    graded.metadata["nbgrader"] = _nbgrader_metadata(
        f"{exercise.id}_graders", locked=True, points=exercise.points)
    cells = [c for c in nb.cells if not _is_check_cell(c, exercise.id)]
    nb.cells = [setup, *cells, graded]
    for cell in nb.cells:  # one format (4.4, no cell ids) for the notebook's cells and ours
        cell.pop("id", None)
    nb.nbformat_minor = 4
    return nb


def _is_check_cell(cell, exercise_id: str) -> bool:
    return cell.cell_type == "code" and "workbook.notebook" in cell.source and \
        f'check("{exercise_id}")' in cell.source


def _nbgrader_metadata(grade_id: str, *, locked: bool, points: float | None = None) -> dict:
    meta = {"grade": points is not None, "solution": False, "locked": locked,
            "grade_id": grade_id, "schema_version": NBGRADER_SCHEMA}
    if points is not None:
        meta["points"] = points
    return meta


# -- the autograded cell ----------------------------------------------------------------------------


def trusted_root() -> Path:
    """The workbook checkout whose graders grade submissions: ``$WORKBOOK_TRUSTED_ROOT``, else
    the checkout this package belongs to."""
    env = os.environ.get(TRUSTED_ENV)
    root = Path(env).expanduser().resolve() if env else paths.root()
    if not (root / "catalog.toml").is_file() or not (root / "graders").is_dir():
        raise CourseError(f"{root} is not a workbook checkout (no catalog.toml and graders/); "
                          f"set {TRUSTED_ENV} to the checkout that built the course.")
    return root


def autograde_cell(exercise_id: str, folder: str | os.PathLike | None = None) -> float:
    """Grade the learner files in ``folder`` (default: the notebook's folder) and return the points.

    The files are copied to a temporary folder first: the graders never run in, or write to,
    the student's folder. Prints one line per visible check; hidden checks only as a count.
    """
    trusted = trusted_root()
    exercise = catalog.get(exercise_id, catalog.load(trusted / "catalog.toml"))
    source = Path(folder) if folder is not None else Path.cwd()
    with tempfile.TemporaryDirectory(prefix=f"workbook-nbgrader-{exercise_id}-") as tmp:
        submission = Path(tmp) / "submission"
        for relative in exercise.files:
            path = source / relative
            if path.is_file():
                (submission / exercise_id / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, submission / exercise_id / relative)
        report = Path(tmp) / "results.json"
        run_graders(trusted, exercise_id, submission, report)
        try:
            results = json.loads(report.read_text(encoding="utf-8"))
            score = float(results["exercises"][exercise_id]["score"])
        except (OSError, ValueError, KeyError, TypeError):
            raise CourseError(f"the graders of {exercise_id} wrote no usable report: a grading "
                              "error, not a score (run them by hand to see why).") from None
        if results.get("grading_errors"):
            raise CourseError(f"grading {exercise_id} failed: {' '.join(results['grading_errors'])}")
    print(summary_text(exercise_id, results))
    return score


def run_graders(trusted: Path, exercise_id: str, submission: Path, report: Path) -> None:
    """Run the trusted graders of one exercise on ``submission/<id>/``; the score goes to ``report``.

    Learner code never decides the outcome through this process's exit code: only the report
    counts. stdout and stderr are discarded (nbgrader scores a cell with stderr output 0).
    """
    command = GRADERS[GRADER](trusted, exercise_id, submission, report)
    env = {**os.environ, "WORKBOOK_ROOT": str(trusted)}
    env.pop("WORKBOOK_TARGET", None)
    try:
        subprocess.run(command, cwd=trusted, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=CELL_TIMEOUT - 60)
    except subprocess.TimeoutExpired:
        raise CourseError(f"the graders of {exercise_id} ran past {CELL_TIMEOUT - 60} s") from None


def _pytest_command(trusted: Path, exercise_id: str, submission: Path, report: Path) -> list[str]:
    """The exercise's graders straight from pytest, learner code in the grading process."""
    return [sys.executable, "-m", "pytest", str(trusted / "graders" / exercise_id),
            f"--target={submission}", "--keep-going", f"--workbook-report={report}",
            "-q", "-p", "no:cacheprovider", "--rootdir", str(trusted)]


def _workbook_grade_command(trusted: Path, exercise_id: str, submission: Path, report: Path) -> list[str]:
    """``workbook grade`` (sealed: learner code in a separate, limited process); it writes
    ``results.json`` in the folder it is given."""
    assert report.name == "results.json"
    return [sys.executable, "-m", "workbook.cli", "grade", str(submission),
            "--exercises", exercise_id, "--out", str(report.parent)]


GRADERS = {"pytest": _pytest_command, "workbook grade": _workbook_grade_command}
# Which grader the autograded cell runs: "workbook grade" seals the learner's code away from
# the grading process (issue #11) and never trusts an exit code, only its report.
GRADER = "workbook grade"


def summary_text(exercise_id: str, results: dict) -> str:
    """One line per visible check, hidden checks as a count, then the score."""
    lines = []
    hidden = [t for t in results.get("tests", []) if t.get("visibility") != "visible"]
    for test in results.get("tests", []):
        if test in hidden:
            continue
        mark = "✓" if test["status"] == "passed" else "✗"
        line = f"{mark} {test['check']} ({test['score']:g}/{test['max_score']:g})"
        if test["status"] != "passed" and test.get("output"):
            line += f"\n    {test['outcome']}: {test['output']}"
        lines.append(line)
    if hidden:
        passed = sum(t["status"] == "passed" for t in hidden)
        got = sum(t["score"] for t in hidden)
        most = sum(t["max_score"] for t in hidden)
        lines.append(f"hidden checks: {passed} of {len(hidden)} passed ({got:g}/{most:g} points)")
    ex = results["exercises"][exercise_id]
    lines.append(f"\n{exercise_id}: {ex['score']:g}/{ex['max_score']:g} points")
    return "\n".join(lines)

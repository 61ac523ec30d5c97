"""``workbook grade PATH --out DIR``: grade a submission with the graders of this checkout.

A submission is a fork checkout (``PATH/exercises/<id>/…``) or a folder laid out like
exercises/ (``PATH/<id>/…``). Only the catalog's learner files of each exercise are read
from it — regular files, no links, at most ``MAX_FILE_BYTES`` each — and copied into a
private temporary target; everything else in it (its graders/, conftest.py,
pyproject.toml, plugins, workflows) is ignored. Each exercise is graded by its own pytest
process started from this checkout (its rootdir, its pyproject.toml, ``-p
no:cacheprovider``, ``--keep-going``, sealed by default), so one exercise's crash cannot
take the others down.

pytest's exit code is never trusted: the grade is the JSON report the trusted grading
process writes, and a missing or malformed report, or one whose points do not add up to
the catalog's, is a *grading error* — never a pass. ``workbook grade`` exits 1 on a
grading error and 0 otherwise, whatever the learner's code did.

Outputs in ``--out``: ``results.json`` (Gradescope's shape: score, tests[] with name,
score, max_score, status, output, visibility), ``summary.md`` and ``junit.xml``, plus
``logs/<id>.log`` with each grading process's output.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from workbook import catalog, paths
from workbook.catalog import Exercise

MAX_FILE_BYTES = 5 * 1024 * 1024
DEFAULT_BUDGET = 600.0
START_MARGIN = 300.0  # services and imports, on top of an exercise's time budget
SCRUBBED_ENV = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONSAFEPATH", "PYTEST_ADDOPTS",
                "PYTEST_PLUGINS", "WORKBOOK_TARGET", "WORKBOOK_ROOT", "WORKBOOK_KEEP_GOING")


class GradeError(Exception):
    """The submission cannot be graded at all (no such folder, unknown exercise)."""


@dataclass
class ExerciseResult:
    exercise: Exercise
    report: dict | None = None
    error: str | None = None
    seconds: float = 0.0
    copied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # learner files not copied, with why

    @property
    def score(self) -> float:
        return float(self.report["score"]) if self.report and not self.error else 0.0

    @property
    def max_score(self) -> float:
        return float(self.exercise.points)


@dataclass
class Grade:
    submission: Path
    results: list[ExerciseResult]
    sealed: bool
    commit: str
    seconds: float

    @property
    def errors(self) -> list[ExerciseResult]:
        return [r for r in self.results if r.error]


# -- the submission's files -----------------------------------------------------------------


def submission_folder(path: Path, exercise_id: str) -> Path | None:
    """``PATH/exercises/<id>`` (a fork) or ``PATH/<id>`` (an exercises/-shaped folder)."""
    for base in (path / "exercises", path):
        candidate = base / exercise_id
        if _plain_dir(candidate) and (base == path or _plain_dir(base)):
            return candidate
    return None


def _plain_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def copy_learner_files(source: Path | None, exercise: Exercise, target: Path) -> tuple[list[str], list[str]]:
    """Copy the catalog's learner files of ``exercise`` from ``source`` into ``target/<id>/``.

    Returns (copied, refused-with-reason). A file is refused when it is missing, a link,
    inside a linked folder, not a regular file, or larger than MAX_FILE_BYTES.
    """
    dest_root = target / exercise.id
    dest_root.mkdir(parents=True, exist_ok=True)
    copied, refused = [], []
    for name in exercise.files:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            refused.append(f"{name}: not a path inside the exercise folder")
            continue
        if source is None:
            refused.append(f"{name}: missing")
            continue
        problem = _unsafe(source, relative)
        if problem:
            refused.append(f"{name}: {problem}")
            continue
        dest = dest_root / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(source / relative, flags)
        except OSError as exc:
            refused.append(f"{name}: cannot be read ({exc.strerror})")
            continue
        with os.fdopen(fd, "rb") as src:
            info = os.fstat(src.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                refused.append(f"{name}: not a regular file of at most {MAX_FILE_BYTES} bytes")
                continue
            data = src.read(MAX_FILE_BYTES + 1)
        dest.write_bytes(data[:MAX_FILE_BYTES])
        copied.append(name)
    return copied, refused


def _unsafe(source: Path, relative: Path) -> str | None:
    current = source
    for part in relative.parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if stat.S_ISLNK(mode):
            return "a symbolic link (only regular files are graded)"
    if not stat.S_ISREG(os.lstat(current).st_mode):
        return "not a regular file"
    return None


# -- grading --------------------------------------------------------------------------------


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(extra)
    return env


def checkout_commit() -> str:
    try:
        proc = subprocess.run(["git", "-C", str(paths.root()), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def grade(
    submission: str | os.PathLike,
    out: str | os.PathLike,
    *,
    exercise_ids: list[str] | None = None,
    sealed: bool = True,
    services: str | None = None,
    budget: float | None = None,
    check_timeout: float | None = None,
    on_exercise=None,
) -> Grade:
    """Grade ``submission`` into ``out``; see the module docstring."""
    started = time.monotonic()
    path = Path(submission).expanduser().resolve()
    if not path.is_dir():
        raise GradeError(f"{submission} is not a folder: give the fork's checkout or a folder of exercises.")
    exercises = catalog.load()
    if exercise_ids:
        chosen = [catalog.get(i, exercises) for i in exercise_ids]
    else:
        chosen = [e for e in exercises if e.ready]
    not_ready = [e.id for e in chosen if not e.ready]
    if not_ready:
        raise GradeError(f"{', '.join(not_ready)} cannot be graded yet (status planned in catalog.toml).")
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)

    from workbook.strays import descendants, make_subreaper, stop_processes

    make_subreaper()  # whatever a grading process leaves behind comes back to us to stop
    before = descendants(os.getpid())
    work = Path(tempfile.mkdtemp(prefix="workbook-grade-"))  # private (0700): reports live here
    results = []
    try:
        target = work / "target"
        target.mkdir()
        for exercise in chosen:
            result = ExerciseResult(exercise)
            result.copied, result.refused = copy_learner_files(
                submission_folder(path, exercise.id), exercise, target)
            _run_exercise(result, target, work, out_dir, sealed=sealed, services=services,
                          budget=budget, check_timeout=check_timeout)
            left = descendants(os.getpid()) - before
            if left:
                stop_processes(left)
            results.append(result)
            if on_exercise:
                on_exercise(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = Grade(path, results, sealed, checkout_commit(), time.monotonic() - started)
    write_outputs(result, out_dir)
    return result


def _run_exercise(result: ExerciseResult, target: Path, work: Path, out_dir: Path, *, sealed: bool,
                  services: str | None, budget: float | None, check_timeout: float | None) -> None:
    exercise = result.exercise
    root = paths.root()
    report = work / "reports" / f"{exercise.id}.json"
    report.parent.mkdir(exist_ok=True)
    budget = DEFAULT_BUDGET if budget is None else budget
    command = [
        sys.executable, "-m", "pytest", str(root / "graders" / exercise.id),
        f"--target={target}", f"--workbook-report={report}",
        "--rootdir", str(root), "-c", str(root / "pyproject.toml"),
        "-p", "no:cacheprovider", "--keep-going", f"--exercise-budget={budget:g}",
        "-q",
    ]
    if sealed:
        command.append("--sealed")
    if services:
        command.append(f"--services={services}")
    if check_timeout:
        command.append(f"--check-timeout={check_timeout:g}")
    hide = os.pathsep.join(str(p) for p in (work, out_dir))
    env = _clean_env({"WORKBOOK_SEALED_HIDE": hide, "PYTHONDONTWRITEBYTECODE": "1"})
    log_path = out_dir / "logs" / f"{exercise.id}.log"
    started = time.monotonic()
    limit = (budget if budget > 0 else DEFAULT_BUDGET) + START_MARGIN
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
            result.error = f"the grading process of {exercise.id} ran past {limit:g} s and was stopped."
    result.seconds = time.monotonic() - started
    if result.error:
        return
    result.report, result.error = read_report(report, exercise)
    if result.error:
        result.error += f" (pytest exit code {proc.returncode}; see logs/{exercise.id}.log)"


def read_report(path: Path, exercise: Exercise) -> tuple[dict | None, str | None]:
    """The report of one exercise, or why it cannot be trusted."""
    if not path.is_file():
        return None, f"{exercise.id}: the graders wrote no report"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{exercise.id}: the report is not valid JSON ({exc})"
    problem = report_problem(data, exercise)
    if problem:
        return None, f"{exercise.id}: the report is malformed: {problem}"
    return data, None


def report_problem(data, exercise: Exercise) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        return "no list of tests"
    if not data["tests"]:
        return "no graded check ran"
    total = maximum = 0.0
    for test in data["tests"]:
        if not isinstance(test, dict):
            return "a test entry is not an object"
        for key in ("name", "status", "output"):
            if not isinstance(test.get(key), str):
                return f"a test has no {key!r}"
        score, top = test.get("score"), test.get("max_score")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (score, top)):
            return f"{test['name']}: score and max_score should be numbers"
        if not 0 <= score <= top:
            return f"{test['name']}: score {score} outside 0..{top}"
        if test.get("exercise") != exercise.id:
            return f"{test['name']} belongs to another exercise"
        if (score == top) != (test["status"] == "passed") and top > 0:
            return f"{test['name']}: status {test['status']!r} does not match its score"
        total += score
        maximum += top
    if not math.isclose(maximum, exercise.points):
        return (f"its checks are worth {maximum:g} points, the catalog says {exercise.points}: "
                "some checks did not run (a collection error?)")
    if not math.isclose(total, float(data.get("score", -1))):
        return "the total score is not the sum of the checks' scores"
    return None


# -- outputs --------------------------------------------------------------------------------


def results_json(grade: Grade) -> dict:
    tests, exercises = [], {}
    for result in grade.results:
        entry = {"score": result.score, "max_score": result.max_score, "seconds": round(result.seconds, 1)}
        if result.error:
            entry.update(status="grading error", error=result.error, checks=0, passed=0)
        else:
            entry.update({k: v for k, v in result.report["exercises"].get(result.exercise.id, {}).items()
                          if k not in ("score", "max_score")})
            tests.extend(result.report["tests"])
        if result.refused:
            entry["files_not_graded"] = result.refused
        exercises[result.exercise.id] = entry
    for number, test in enumerate(tests, start=1):
        test["number"] = str(number)
    score = sum(r.score for r in grade.results)
    maximum = sum(r.max_score for r in grade.results)
    errors = [r.error for r in grade.errors]
    output = f"{score:g}/{maximum:g} points over {len(grade.results)} exercises"
    if errors:
        output += "; grading errors: " + " ".join(errors)
    return {
        "score": score,
        "max_score": maximum,
        "execution_time": round(grade.seconds, 1),
        "output": output,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "exercises": exercises,
        "grading_errors": errors,
        "submission": str(grade.submission),
        "graded_with": grade.commit,
        "sealed": grade.sealed,
    }


def summary_markdown(data: dict) -> str:
    lines = [f"# Workbook grade: {data['score']:g}/{data['max_score']:g} points", ""]
    how = "sealed" if data["sealed"] else "not sealed"
    lines += [f"Graded with the workbook at `{data['graded_with'][:12]}` ({how}).", ""]
    lines += ["| exercise | points | checks passed | status |", "|---|---:|---:|---|"]
    for name, ex in data["exercises"].items():
        checks = f"{ex.get('passed', 0)}/{ex.get('checks', 0)}"
        lines.append(f"| {name} | {ex['score']:g}/{ex['max_score']:g} | {checks} | {ex.get('status', '')} |")
    if data["grading_errors"]:
        lines += ["", "## Grading errors", ""]
        lines += [f"- {_md(e)}" for e in data["grading_errors"]]
    failed = [t for t in data["tests"] if t["status"] != "passed"]
    if failed:
        lines += ["", "## Checks that did not pass", ""]
        for test in failed:
            where = f"`{test['name']}` ({test['score']:g}/{test['max_score']:g})"
            if test.get("visibility") == "visible":
                lines.append(f"- {where}: {test.get('outcome', 'failed')} — {_md(test['output'])}")
            else:
                lines.append(f"- {where}: {test.get('outcome', 'failed')} (a hidden check)")
    for name, ex in data["exercises"].items():
        for note in ex.get("files_not_graded", []):
            lines.append(f"- {name}: {_md(note)}")
    return "\n".join(lines) + "\n"


def _md(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit] + " …"
    return text.replace("|", "\\|").replace("<", "&lt;")


def junit_xml(data: dict) -> bytes:
    suites = ET.Element("testsuites", name="workbook", tests=str(len(data["tests"])))
    by_exercise: dict[str, list[dict]] = {}
    for test in data["tests"]:
        by_exercise.setdefault(test["exercise"], []).append(test)
    for name, ex in data["exercises"].items():
        tests = by_exercise.get(name, [])
        failures = sum(t["status"] != "passed" for t in tests)
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(tests)),
                              failures=str(failures), errors="1" if ex.get("error") else "0")
        if ex.get("error"):
            case = ET.SubElement(suite, "testcase", classname=name, name="grading")
            ET.SubElement(case, "error", message=ex["error"][:1000])
        for test in tests:
            case = ET.SubElement(suite, "testcase", classname=name, name=test["check"])
            ET.SubElement(case, "properties")
            case.find("properties").append(ET.Element("property", name="score", value=f"{test['score']:g}"))
            case.find("properties").append(ET.Element("property", name="max_score", value=f"{test['max_score']:g}"))
            if test["status"] != "passed":
                message = test["output"] if test.get("visibility") == "visible" else "a hidden check"
                failure = ET.SubElement(case, "failure", type=test.get("outcome", "failed"), message=message[:1000])
                failure.text = message
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_outputs(grade: Grade, out_dir: Path) -> dict:
    data = results_json(grade)
    (out_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out_dir / "summary.md").write_text(summary_markdown(data), encoding="utf-8")
    (out_dir / "junit.xml").write_bytes(junit_xml(data))
    return data

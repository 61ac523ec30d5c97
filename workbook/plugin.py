"""The workbook's pytest plugin: targets, points, time limits, friendly failures, a score.

Registered through the ``pytest11`` entry point, so ``pytest graders/<id>``
grades with it wherever the package is installed. It only changes how
*graded* checks (tests marked ``@pytest.mark.points(n)``) are reported; other
tests run as pytest runs them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from workbook import paths, sealed
from workbook.loader import ExerciseImportError, load_exercise
from workbook.strays import Strays

DEFAULT_TIMEOUT = 60.0
DEFAULT_BUDGET = 600.0  # one exercise, under --keep-going (the sealed grader's default)

HELP_TARGET = (
    "folder to grade: 'exercises' (default, or $WORKBOOK_TARGET), 'solutions', "
    "or any PATH laid out like exercises/ (PATH/<id>/<file>)."
)
HELP_REPORT = "write the score as JSON (Gradescope results.json shape) to FILE."
HELP_TIMEOUT = "time limit of one graded check in seconds, unless it sets @pytest.mark.timeout (default 60)."
HELP_TRACEBACK = "show full tracebacks for failing checks instead of one-line messages."
HELP_KEEP_GOING = (
    "grade every check even after one ran past its time limit (instructor and CI grading; "
    "also $WORKBOOK_KEEP_GOING=1). Without it, the learner's loop stops at the first time-out."
)
HELP_BUDGET = (
    "total time of one exercise's graded checks, in seconds; checks left when it is spent "
    f"are not run and score 0. Default: {DEFAULT_BUDGET:g} with --keep-going, none without; 0 turns it off."
)
HELP_SEALED = (
    "run the learner's code in a separate, limited process (sealed grading: it cannot change the "
    "grade); also $WORKBOOK_SEALED=1. On by default under `workbook grade`."
)
HELP_SERVICES = (
    "how graders start real services: docker (testcontainers), local (processes from binaries "
    "on PATH) or auto (docker when the engine and image are there, else local). "
    "Default: $WORKBOOK_SERVICES or auto."
)


class CheckTimeout(BaseException):
    """Raised inside a check that ran past its time limit.

    A BaseException, so that a learner's ``except Exception`` cannot swallow it.
    """


class NotRun(pytest.skip.Exception):
    """A check left out: an earlier check timed out, or the exercise's time budget is spent.

    Shown by pytest as a skip (one summary line for all of them, not one error each);
    graded as outcome "not run", worth 0 points.
    """


@dataclass
class CheckResult:
    """One graded check. outcome: passed, failed, not started, timeout, error or skipped."""

    exercise: str
    check: str
    nodeid: str
    points: float
    max_points: float
    outcome: str
    message: str
    hidden: bool


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("workbook", "MLOps workbook grading")
    group.addoption("--target", default=None, metavar="TARGET", help=HELP_TARGET)
    group.addoption("--workbook-report", default=None, metavar="FILE", help=HELP_REPORT)
    group.addoption("--check-timeout", default=None, type=float, metavar="SECONDS", help=HELP_TIMEOUT)
    group.addoption("--workbook-traceback", action="store_true", help=HELP_TRACEBACK)
    group.addoption("--keep-going", action="store_true", default=None, help=HELP_KEEP_GOING)
    group.addoption("--exercise-budget", default=None, type=float, metavar="SECONDS", help=HELP_BUDGET)
    group.addoption("--services", default=None, choices=("auto", "docker", "local"), help=HELP_SERVICES)
    group.addoption("--sealed", action="store_true", default=None, help=HELP_SEALED)
    parser.addini("check_timeout", HELP_TIMEOUT, default=None)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args) -> None:
    """Under --sealed, start the learner's process before any conftest or grader is imported."""
    sealed.prefork(early_config)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the check is graded and worth n points.")
    config.addinivalue_line(
        "markers", "hidden: the check is left out of the student release (instructors and CI run it)."
    )
    config.addinivalue_line("markers", "timeout(seconds): time limit of this check.")
    config.addinivalue_line(
        "markers",
        "covers(*clause_ids): the contract clauses of the learner files this check covers "
        "(`workbook dev contract ID`).",
    )
    config.pluginmanager.register(Grading(config), "workbook-grading")
    config.pluginmanager.import_plugin("workbook.fixtures")
    config.pluginmanager.register(Strays(), "workbook-strays")
    if sealed.enabled(config):
        config.pluginmanager.register(sealed.SealedPlugin(config), "workbook-sealed")


def target_option(config: pytest.Config) -> str:
    return config.getoption("--target") or os.environ.get("WORKBOOK_TARGET") or "exercises"


@pytest.fixture(scope="session")
def target_dir(pytestconfig: pytest.Config) -> Path:
    """The folder being graded (exercises/, solutions/, or a path)."""
    return paths.resolve_target(target_option(pytestconfig))


@pytest.fixture(scope="module")
def exercise_id(request: pytest.FixtureRequest) -> str:
    """The id of the exercise whose graders are running (from graders/<id>/)."""
    return exercise_of(request.path)


@pytest.fixture(scope="module")
def load_module(target_dir: Path, exercise_id: str, pytestconfig: pytest.Config):
    """Import a learner module of this exercise from the target: ``load_module("drift")``.

    Under --sealed the module lives in a separate process and this returns its proxy.
    """
    seal = pytestconfig.pluginmanager.get_plugin("workbook-sealed")

    def load(module: str):
        if seal is not None:
            return seal.session.load(exercise_id, module, target_dir)
        return load_exercise(exercise_id, module, target_dir)

    return load


def exercise_of(path: Path) -> str:
    parts = Path(path).parts
    if "graders" in parts[:-1]:
        index = len(parts) - 1 - parts[::-1].index("graders")
        if index + 1 < len(parts) - 1:
            return parts[index + 1]
    return Path(path).parent.name


def is_graded(item: pytest.Item) -> bool:
    return item.get_closest_marker("points") is not None


class Grading:
    """Per-session state: time limits, outcome of each graded check, the score."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.target = paths.resolve_target(target_option(config))  # the folder being graded
        self.results: dict[str, CheckResult] = {}
        self.order: list[str] = []
        self.keep_going = bool(
            config.getoption("--keep-going") or os.environ.get("WORKBOOK_KEEP_GOING", "") not in ("", "0")
        )
        budget = config.getoption("--exercise-budget")
        if budget is None:
            budget = DEFAULT_BUDGET if self.keep_going else 0.0
        self.budget = budget
        self.spent: dict[str, float] = {}  # exercise -> seconds its graded checks have used
        self.timed_out: dict[str, str] = {}  # exercise -> the first check that timed out

    # -- running a check under a time limit ------------------------------------------------

    def _limit(self, item: pytest.Item) -> float:
        marker = item.get_closest_marker("timeout")
        if marker is not None:
            return float(marker.args[0])
        option = self.config.getoption("--check-timeout")
        if option is not None:
            return float(option)
        ini = self.config.getini("check_timeout")
        if ini:
            try:
                return float(ini)
            except ValueError:
                raise pytest.UsageError(f"Invalid check_timeout {ini!r} from ini file") from None
        return DEFAULT_TIMEOUT

    def _run_limited(self, item: pytest.Item, phase: str):
        if not is_graded(item):
            return (yield)
        exercise = exercise_of(item.path)
        if phase == "setup":
            self._refuse_if_stopped(exercise)
        seconds = self._limit(item)
        by_budget = False
        if self.budget > 0:
            left = max(self.budget - self.spent.get(exercise, 0.0), 0.001)
            if seconds <= 0 or left < seconds:
                seconds, by_budget = left, True
        usable = (
            seconds > 0
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )
        if not usable:
            return (yield)
        def expire(signum, frame):
            where = _running_at(frame, self.target)
            if by_budget:
                limit = f"when {exercise}'s time budget of {self.budget:g} s ran out"
            else:
                limit = f"after {seconds:g} s, the check's time limit"
            if where:
                raise CheckTimeout(f"{where}: still running {limit} — an infinite loop?")
            raise CheckTimeout(
                f"still running {limit}. Look for a loop that never ends, or work repeated "
                "on every call."
            )

        previous = signal.signal(signal.SIGALRM, expire)
        started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return (yield)
        except CheckTimeout:
            self.timed_out.setdefault(exercise, item.name)
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            self.spent[exercise] = self.spent.get(exercise, 0.0) + time.monotonic() - started

    def _refuse_if_stopped(self, exercise: str) -> None:
        """In the learner's loop, the first time-out ends the exercise's grading."""
        first = self.timed_out.get(exercise)
        if first is not None and not self.keep_going:
            raise NotRun(f"fix the time-out of `{first}` first.")
        if self.budget > 0 and self.spent.get(exercise, 0.0) >= self.budget:
            raise NotRun(f"{exercise}'s time budget of {self.budget:g} s was spent.")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        return (yield from self._run_limited(item, "setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        return (yield from self._run_limited(item, "call"))

    # -- turning exceptions into a sentence ------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if not is_graded(item):
            return report
        marker = item.get_closest_marker("points")
        max_points = float(marker.args[0]) if marker.args else 1.0
        outcome, message = "passed", ""
        if report.skipped and call.excinfo is not None and isinstance(call.excinfo.value, NotRun):
            outcome, message = "not run", str(call.excinfo.value.msg)
        elif report.skipped:
            outcome = "skipped"
            longrepr = report.longrepr
            message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        elif report.failed and call.excinfo is not None:
            outcome, message = classify(call.excinfo.value, item)
            if not self.config.getoption("--workbook-traceback"):
                report.longrepr = f"[{outcome}] {message}"
        if report.when == "call" or outcome != "passed":
            report.workbook = asdict(
                CheckResult(
                    exercise=exercise_of(item.path),
                    check=item.name,
                    nodeid=item.nodeid,
                    points=max_points if outcome == "passed" else 0.0,
                    max_points=max_points,
                    outcome=outcome,
                    message=message,
                    hidden=item.get_closest_marker("hidden") is not None,
                )
            )
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "workbook", None)
        if not data:
            return
        if report.nodeid not in self.results:
            self.order.append(report.nodeid)
            self.results[report.nodeid] = CheckResult(**data)
        elif self.results[report.nodeid].outcome == "passed":
            # A teardown failure after a passing call still fails the check.
            self.results[report.nodeid] = CheckResult(**data)

    # -- the score ---------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        if not any("graders" in str(arg) for arg in config.args):
            return None
        target = target_option(config)
        shown = " ".join(str(a) for a in config.invocation_params.args if not str(a).startswith("--target"))
        return [
            f"workbook: grading {paths.resolve_target(target)}",
            f"workbook: reproduce with: pytest {shown} --target={target}".rstrip(),
        ]

    def summary(self) -> dict:
        checks = [self.results[n] for n in self.order]
        exercises: dict[str, dict] = {}
        for check in checks:
            ex = exercises.setdefault(
                check.exercise,
                {"score": 0.0, "max_score": 0.0, "checks": 0, "passed": 0, "not_started": 0},
            )
            ex["score"] += check.points
            ex["max_score"] += check.max_points
            ex["checks"] += 1
            ex["passed"] += check.outcome == "passed"
            ex["not_started"] += check.outcome == "not started"
        for ex in exercises.values():
            ex["status"] = (
                "done" if ex["passed"] == ex["checks"]
                else "not started" if ex["not_started"] == ex["checks"]
                else "in progress"
            )
        return {
            "score": sum(c.points for c in checks),
            "max_score": sum(c.max_points for c in checks),
            "target": str(self.target),
            "exercises": exercises,
            "tests": [
                {
                    "name": f"{c.exercise}::{c.check}",
                    "exercise": c.exercise,
                    "check": c.check,
                    "nodeid": c.nodeid,
                    "score": c.points,
                    "max_score": c.max_points,
                    "status": "passed" if c.outcome == "passed" else "failed",
                    "outcome": c.outcome,
                    "output": c.message,
                    "visibility": "after_published" if c.hidden else "visible",
                }
                for c in checks
            ],
        }

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.results:
            return
        summary = self.summary()
        tr = terminalreporter
        tr.write_sep("=", "workbook score")
        width = max(len(e) for e in summary["exercises"])
        for name, ex in summary["exercises"].items():
            tr.write_line(
                f"{name:<{width}}  {ex['passed']:>3}/{ex['checks']:<3} checks  "
                f"{ex['score']:>5g}/{ex['max_score']:<5g} points  {ex['status']}"
            )
        tr.write_line(f"{'total':<{width}}  {summary['score']:g}/{summary['max_score']:g} points")
        for name in summary["exercises"]:
            left = [c for c in self.results.values() if c.exercise == name and c.outcome == "not run"]
            if left:
                tr.write_line(f"{name}: {len(left)} checks not run — {left[0].message}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.getoption("--workbook-report")
        if path and not hasattr(self.config, "workerinput"):
            Path(path).write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")


def classify(exc: BaseException, item: pytest.Item) -> tuple[str, str]:
    """The outcome of a failed check and one message a learner can act on."""
    if isinstance(exc, CheckTimeout):
        return "timeout", str(exc)
    not_started = _find_in_chain(exc, NotImplementedError)
    if not_started is not None:
        where = _learner_frame(not_started)
        if where is None and str(not_started) not in ("", "YOUR CODE HERE"):
            return "not started", f"{not_started}: write your code there."
        name = f"`{where.name}` " if where else ""
        return "not started", f"{name}still raises NotImplementedError: write your code there."
    if isinstance(exc, (ExerciseImportError, sealed.SealedError, sealed.LearnerExit)):
        return "error", str(exc)
    if isinstance(exc, AssertionError):
        text = str(exc).split("\nassert ")[0].strip() or "assertion failed"
        return "failed", text
    where = _learner_frame(exc)
    place = f" (in `{where.name}`, {Path(where.filename).name} line {where.lineno})" if where else ""
    return "error", f"{type(exc).__name__}: {exc}{place}"


def _find_in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _learner_frame(exc: BaseException):
    """The innermost traceback frame outside the grading code (the learner's code)."""
    remote = getattr(exc, "remote_frames", None)  # raised in the learner's process (--sealed)
    frames = ([traceback.FrameSummary(f, n, name, lookup_line=False) for f, n, name in remote]
              if remote is not None else traceback.extract_tb(exc.__traceback__))
    grader_root = paths.graders_dir()
    package = paths.PACKAGE_DIR
    candidates = [
        f for f in frames
        if not Path(f.filename).is_relative_to(grader_root)
        and not Path(f.filename).is_relative_to(package)
        and "site-packages" not in f.filename
        and "/lib/python" not in f.filename
    ]
    return candidates[-1] if candidates else None



def _running_at(frame, target: Path) -> str | None:
    """Where the learner's code was when a time limit struck: ``drift.py line 3, in `__init__```.

    The innermost frame of a file under the graded folder; failing that, the innermost
    frame outside the graders, this package and installed libraries.
    """
    stack = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    in_target = [f for f in stack if Path(f.f_code.co_filename).is_relative_to(target)]
    chosen = in_target[0] if in_target else None
    if chosen is None:
        grader_root, package = paths.graders_dir(), paths.PACKAGE_DIR
        outside = [
            f for f in stack
            if not Path(f.f_code.co_filename).is_relative_to(grader_root)
            and not Path(f.f_code.co_filename).is_relative_to(package)
            and "site-packages" not in f.f_code.co_filename
            and "/lib/python" not in f.f_code.co_filename
            and not f.f_code.co_filename.startswith("<")
        ]
        chosen = outside[0] if outside else None
    if chosen is None:
        return None
    return f"{Path(chosen.f_code.co_filename).name} line {chosen.f_lineno}, in `{chosen.f_code.co_name}`"

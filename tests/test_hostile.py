"""Hostile submissions: under sealed grading each gets its honest score and leaves nothing running.

Each case is a CE4.2 learner file built from the solution: a cheat at import, in
``alert_if_drift``, or next to the statistics. Its *honest* twin is the same file without
the cheat (a method that simply raises, a module that cannot be imported, statistics
that are simply wrong), graded the ordinary way. A hostile file graded ``--sealed`` must
get exactly the checks its honest twin gets — 0 for what it tried to cheat on — and no
process of it may outlive the run.

The first two cases are the issue's own examples, graded end to end by ``workbook grade``:
a file whose only content is ``os._exit(0)``, and one that makes pytest's ``runtest`` a
no-op. Without sealing, the first made pytest exit 0 with no report and the second got
full marks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from workbook import paths

ROOT = paths.root()
SOLUTION = (ROOT / "solutions" / "ce4_2" / "drift.py").read_text(encoding="utf-8")
METHOD_START = "        target = webhook if webhook is not None else self.webhook\n"
ALERT_CHECKS = "alert or webhook or detects_mean_shift or calm_windows"  # alert_if_drift and two that are not
# A hanging check costs its whole time limit: two of alert_if_drift's checks and two others are enough.
HANG_CHECKS = "alert_reaches_webhook or no_alert_without_drift or detects_mean_shift or calm_windows"
STAT_CHECKS = "ks_statistic_and_p_value or chi_square_matches or detects_mean_shift or calm_windows"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sealed grading needs Linux")


def in_alert(code: str) -> str:
    """The solution with ``code`` run first thing in ``alert_if_drift``."""
    assert METHOD_START in SOLUTION
    body = textwrap.indent(textwrap.dedent(code).strip() + "\n", " " * 8)
    return SOLUTION.replace(METHOD_START, body + METHOD_START, 1)


def at_import(code: str, rest: str = SOLUTION) -> str:
    """``rest`` with ``code`` run first at import (after its ``from __future__`` line)."""
    future = "from __future__ import annotations\n"
    code = textwrap.dedent(code).strip() + "\n"
    if future in rest:
        head, tail = rest.split(future, 1)
        return head + future + code + tail
    return code + rest


WRONG_STATS = SOLUTION + textwrap.dedent('''

    _true_numeric, _true_categorical = _numeric_drift, _categorical_drift


    def _numeric_drift(name, ref, column, threshold):
        result = _true_numeric(name, ref, column, threshold)
        result.update(statistic=0.5, p_value=0.5, drifted=0.5 < threshold)
        return result


    def _categorical_drift(name, ref, column, threshold):
        result = _true_categorical(name, ref, column, threshold)
        result.update(statistic=0.5, p_value=0.5, drifted=0.5 < threshold)
        return result
''')

PATCH_REFERENCES = '''
import scipy.stats
from types import SimpleNamespace

# Every statistic this file reports is 0.5: make the graders' references say so too.
scipy.stats.ks_2samp = lambda *a, **k: SimpleNamespace(statistic=0.5, pvalue=0.5)
scipy.stats.chi2_contingency = lambda *a, **k: SimpleNamespace(statistic=0.5, pvalue=0.5, dof=1)
'''

# The honest twin's own code sees the same fakes, through a private copy of `stats`.
PATCH_OWN_COPY = '''
from types import SimpleNamespace as _Namespace
from scipy import stats as _stats

stats = _Namespace(**{n: getattr(_stats, n) for n in dir(_stats) if not n.startswith("__")})
stats.ks_2samp = lambda *a, **k: _Namespace(statistic=0.5, pvalue=0.5)
stats.chi2_contingency = lambda *a, **k: _Namespace(statistic=0.5, pvalue=0.5, dof=1)
'''

FORGE = '''
import json, os, pathlib
EXERCISE, GRADERS_FILE = "ce4_2", "test_drift.py"
from workbook import paths

forged = {"score": 99, "max_score": 99, "tests": []}
# The report path is on the grading process's command line.
for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
    try:
        args = cmdline.read_bytes().split(b"\\0")
    except OSError:
        continue
    for arg in args:
        if arg.startswith(b"--workbook-report="):
            try:
                pathlib.Path(arg.split(b"=", 1)[1].decode()).write_text(json.dumps(forged))
            except OSError:
                pass
for name, text in ((GRADERS_FILE, "\\n# forged\\n"), ("test_forged.py", "def test_free(): pass\\n")):
    try:
        with open(paths.graders_dir() / EXERCISE / name, "a") as out:
            out.write(text)
    except OSError:
        pass
'''

READ_TRUSTED = '''
from workbook import paths

# Copy the answers: the hidden graders' source, and the reference solution itself.
GRADERS_SOURCE = (paths.graders_dir() / "ce4_2" / "test_drift.py").read_text()
exec((paths.solutions_dir() / "ce4_2" / "drift.py").read_text())
'''

DAEMON = '''
import os, time

if os.fork() == 0:  # a daemon that sleeps through the grading and after it
    os.setsid()
    if os.fork() == 0:
        time.sleep(3600)
    os._exit(0)
'''

NETWORK = '''
import socket

try:  # fetch the answers from outside
    socket.create_connection(("10.255.255.1", 80), timeout=2).close()
except OSError as exc:
    raise RuntimeError(f"no answers from outside: {exc}") from exc
'''

# name -> (hostile file, honest twin: a file, or None for "scores 0", checks to run, hint)
CASES = {
    "exit_at_import": ("import os\nos._exit(0)\n", None, None),
    "patch_pytest_runtest": (
        "import _pytest.python\n_pytest.python.Function.runtest = lambda self: None\n", None, None),
    "sys_exit_at_import": (at_import("import sys\nsys.exit(0)"), None, ALERT_CHECKS),
    "patch_the_plugin": (at_import(
        "import workbook.plugin as p\n"
        "p.classify = lambda exc, item: ('passed', '')\n"
        "p.Grading.summary = lambda self: {'score': 99, 'max_score': 99, 'tests': []}\n"
        "raise RuntimeError('no implementation here')\n", rest=""), None, ALERT_CHECKS),
    "forge_report_and_graders": (at_import(FORGE, rest=""), None, ALERT_CHECKS),
    "read_graders_and_solution": (at_import(READ_TRUSTED, rest=""), None, ALERT_CHECKS),
    "exit_in_method": (in_alert("import os\nos._exit(0)"), "method", ALERT_CHECKS),
    "sys_exit_in_method": (in_alert("import sys\nsys.exit(0)"), "method", ALERT_CHECKS),
    "infinite_output": (in_alert("while True:\n    print('x' * 4096)"), "method", ALERT_CHECKS),
    "fork_bomb": (in_alert("import os\nwhile True:\n    os.fork()"), "method", ALERT_CHECKS),
    "hang_in_method": (in_alert("import time\ntime.sleep(3600)"), "method", HANG_CHECKS),
    "network_beyond_loopback": (in_alert(NETWORK), "method", ALERT_CHECKS),
    "sleeping_daemon": (at_import(DAEMON), "solution", ALERT_CHECKS),
    "patch_references": (at_import(PATCH_REFERENCES, rest=WRONG_STATS), "wrong_stats", STAT_CHECKS),
}

HONEST = {
    "method": in_alert("raise RuntimeError('alert_if_drift does not work')"),
    "solution": SOLUTION,
    "wrong_stats": WRONG_STATS + PATCH_OWN_COPY,
}


# A check that waits out its time limit (the hanging case) costs the whole limit, once per
# check it is in: keep that short, yet long enough that the checks that do not hang finish in it on
# a loaded machine (10 s failed two of them at load 15); the others keep more room.
CHECK_TIMEOUT = {"hang_in_method": 25}


def run_graders(tmp: Path, text: str, select: str | None, *, sealed: bool, tag: str,
                check_timeout: float = 20, exercise: str = "ce4_2", module: str = "drift",
                services: str | None = None, env_extra: dict[str, str] | None = None) -> dict:
    target = tmp / "target"
    (target / exercise).mkdir(parents=True, exist_ok=True)
    (target / exercise / f"{module}.py").write_text(text, encoding="utf-8")
    report = tmp / "report.json"
    command = [sys.executable, "-m", "pytest", str(ROOT / "graders" / exercise), f"--target={target}",
               f"--workbook-report={report}", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
               "-c", str(ROOT / "pyproject.toml"), "--keep-going", f"--check-timeout={check_timeout:g}", "-q"]
    if select:
        command += ["-k", select]
    if sealed:
        command.append("--sealed")
    if services:
        command.append(f"--services={services}")
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBOOK_TARGET", "PYTEST_ADDOPTS")}
    env["WORKBOOK_SEALED_TAG"] = tag
    env.update(env_extra or {})
    env.pop("WORKBOOK_SEALED", None)
    proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert report.is_file(), f"the graders wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
    return json.loads(report.read_text())


def outcomes(report: dict) -> dict[str, str]:
    return {t["check"]: t["status"] for t in report["tests"]}


def tagged_processes(tag: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if tag.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def grader_files(exercise: str = "ce4_2") -> dict[str, str]:
    folder = ROOT / "graders" / exercise
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def honest_reports(tmp_path_factory) -> dict[str, dict]:
    """The honest twins, graded the ordinary way (unsealed), once for the whole module."""
    found = {}
    for name, text in HONEST.items():
        select = STAT_CHECKS if name == "wrong_stats" else ALERT_CHECKS
        found[name] = run_graders(tmp_path_factory.mktemp(name), text, select, sealed=False, tag="honest")
    return found


# Cases whose defence is the sandbox user and the private mount namespace (the graders'
# files out of the learner's reach and sight), which sealed grading sets up only where the
# grader runs as root. Run as another user they would write into this very checkout.
NEEDS_ROOT = {"forge_report_and_graders", "read_graders_and_solution", "forge_report_graders_and_leave_a_daemon"}


def require_root_for(case: str) -> None:
    assert NEEDS_ROOT <= {*CASES, *SERVICE_CASES}, f"NEEDS_ROOT names no case: {NEEDS_ROOT - {*CASES, *SERVICE_CASES}}"
    if case in NEEDS_ROOT and os.getuid() != 0:
        pytest.skip(f"{case}: the graders' files are kept out of the learner's reach and sight only where the "
                    "grader runs as root (a user id of its own, a private mount namespace); as another user "
                    "this case would change the checkout's graders. CI grades as root (infra/ci/grade-fork.yml).")


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][2] is not None])
def test_hostile_submission_gets_its_honest_score(case, tmp_path, honest_reports):
    """A hostile learner file graded --sealed scores what its honest twin scores, and leaves nothing running."""
    require_root_for(case)
    hostile, honest, select = CASES[case]
    tag = f"workbook-hostile-{uuid.uuid4().hex}"
    graders_before = grader_files()
    report = run_graders(tmp_path, hostile, select, sealed=True, tag=tag,
                         check_timeout=CHECK_TIMEOUT.get(case, 20))
    time.sleep(0.5)
    left = tagged_processes(tag)
    assert not left, f"{case}: processes of the learner's code still running after the run: {left}"
    assert grader_files() == graders_before, f"{case}: the graders' files changed during the run"
    got = outcomes(report)
    assert got, f"{case}: no graded check ran"
    if honest is None:
        passed = [c for c, s in got.items() if s == "passed"]
        assert not passed and report["score"] == 0, f"{case}: should score 0; passed {passed}"
        return
    words = select.split(" or ")  # the twin ran a wider selection (-k matches substrings): its share of it
    expected = {c: s for c, s in outcomes(honest_reports[honest]).items() if any(w in c for w in words)}
    assert got == expected, (
        f"{case}: sealed outcomes should equal the honest twin's; differ on "
        f"{ {c: (got.get(c), expected.get(c)) for c in set(got) | set(expected) if got.get(c) != expected.get(c)} }"
    )
    assert report["score"] == honest_reports[honest]["score"]
    if honest == "method":
        assert 0 < report["score"] < report["max_score"], "the checks that avoid alert_if_drift still pass"


def test_network_refusal_is_named(tmp_path):
    """The learner's process reaches loopback only: a connection elsewhere is refused, and the check says so."""
    hostile, _, _ = CASES["network_beyond_loopback"]
    report = run_graders(tmp_path, hostile, "missing_webhook", sealed=True, tag="net")
    (test,) = report["tests"]
    assert "network access beyond loopback is refused" in test["output"], test["output"]


@pytest.mark.parametrize("case", ["exit_at_import", "patch_pytest_runtest"])
def test_issue_examples_score_zero_under_workbook_grade(case, tmp_path):
    """The issue's two forgeries, graded end to end by `workbook grade`: 0 points, no grading error."""
    hostile, _, _ = CASES[case]
    submission = tmp_path / "fork"
    (submission / "exercises" / "ce4_2").mkdir(parents=True)
    (submission / "exercises" / "ce4_2" / "drift.py").write_text(hostile)
    out = tmp_path / "out"
    tag = f"workbook-hostile-{uuid.uuid4().hex}"
    env = {**os.environ, "WORKBOOK_SEALED_TAG": tag}
    proc = subprocess.run([sys.executable, "-m", "workbook.cli", "grade", str(submission), "--exercises", "ce4_2",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"workbook grade should exit 0 (no grading error):\n{proc.stdout}\n{proc.stderr}"
    data = json.loads((out / "results.json").read_text())
    assert data["score"] == 0 and data["max_score"] > 0, f"{case} should score 0; got {data['score']}"
    assert data["tests"] and all(t["status"] == "failed" for t in data["tests"])
    assert not tagged_processes(tag)


# -- the boundary itself -----------------------------------------------------------------------

PROXY_DEMO = '''
import dataclasses, sys


@dataclasses.dataclass
class Report:
    features: dict
    drifted: bool


class Feature:
    def __init__(self, p):
        self.p_value = p


def report():
    return Report(features={"x": Feature(0.01)}, drifted=True)


def call(webhook, payload):
    return webhook(payload)


def refuse():
    raise ValueError("threshold should be between 0 and 1")


def leave():
    sys.exit(3)
'''


def test_proxies_behave_like_the_learners_objects(tmp_path):
    """Learner objects stay remote but read as themselves; callbacks and errors cross the boundary."""
    from dataclasses import asdict

    from workbook import sealed

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mod.py").write_text(PROXY_DEMO)
    session = sealed.Session()
    try:
        mod = session.load("demo", "mod", tmp_path)
        got = mod.report()
        assert type(got).__name__ == "Report" and got.drifted is True
        feature = got.features["x"]
        assert isinstance(got.features, dict) and type(feature).__name__ == "Feature"
        assert feature.p_value == 0.01
        assert asdict(got)["drifted"] is True
        received = []
        mod.call(received.append, {"drifted_features": ["x"]})
        assert received == [{"drifted_features": ["x"]}]

        def down(payload):
            raise RuntimeError("the alerting service is down")

        with pytest.raises(RuntimeError, match="alerting service is down"):
            mod.call(down, {})
        with pytest.raises(ValueError, match="between 0 and 1") as caught:
            mod.refuse()
        assert caught.value.remote_frames[-1][2] == "refuse"
        with pytest.raises(sealed.LearnerExit, match=r"sys.exit\(3\)"):
            mod.leave()
        assert mod.report().drifted is True, "the process survives a sys.exit it raised"
    finally:
        session.close()


def test_child_replies_cannot_name_arbitrary_globals():
    """A reply naming a function off the allow-list (os.system) is refused, never called."""
    import pickle

    from workbook import sealed

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo forged",))

    with pytest.raises(sealed.UnreadableValue, match="system"):
        sealed.FromChild(pickle.dumps(("ok", Evil())), child=None).load()


# -- an exercise with services (CE4.3 on PostgreSQL), under both service backends ------------------

CE4_3_SOLUTION = (ROOT / "solutions" / "ce4_3" / "monitor.py").read_text(encoding="utf-8")
CE4_3_CHECKS = "postgres or window_excludes_its_start or late_label"
CE4_3_FORGE = FORGE.replace('EXERCISE, GRADERS_FILE = "ce4_2", "test_drift.py"',
                            'EXERCISE, GRADERS_FILE = "ce4_3", "test_monitor.py"')
# name -> (hostile monitor.py, honest twin: None for "scores 0", "solution" for the solution's outcomes)
SERVICE_CASES = {
    "patch_pytest_runtest": ("import _pytest.python\n_pytest.python.Function.runtest = lambda self: None\n", None),
    "forge_report_graders_and_leave_a_daemon": (at_import(CE4_3_FORGE + DAEMON, rest=CE4_3_SOLUTION), "solution"),
}


def require_backend(backend: str) -> None:
    from workbook.services import docker

    if backend == "docker" and not docker.engine_answers():
        message = "no Docker engine answers here; start dockerd (see .ci/run) to run the docker scenarios"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def service_leftovers(run_id: str) -> list[str]:
    """Processes, temporary folders and containers of one grading run (its WORKBOOK_RUN_ID)."""
    from workbook.services import docker

    found = [f"process left: {pid}" for pid in tagged_processes(run_id)]
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    found += [f"temporary folder left: {p}" for p in tmp.glob(f"workbook-{run_id}-*")]
    if docker.engine_answers():
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=workbook.run={run_id}"],
                             capture_output=True, text=True).stdout.split()
        found += [f"container left: {cid}" for cid in ids]
    return found


@pytest.fixture(scope="module")
def ce4_3_honest(tmp_path_factory) -> dict:
    """The CE4.3 solution graded the ordinary way (unsealed, local services): the honest outcomes."""
    return run_graders(tmp_path_factory.mktemp("ce4_3-honest"), CE4_3_SOLUTION, CE4_3_CHECKS, sealed=False,
                       tag="honest", exercise="ce4_3", module="monitor", services="local", check_timeout=60)


@pytest.mark.parametrize("backend", ["local", "docker"])
@pytest.mark.parametrize("case", list(SERVICE_CASES))
def test_hostile_submission_with_services_gets_its_honest_score(case, backend, tmp_path, ce4_3_honest):
    """CE4.3 on a real PostgreSQL, --sealed, with either backend: the honest score, nothing left running."""
    require_root_for(case)
    require_backend(backend)
    hostile, honest = SERVICE_CASES[case]
    run_id = uuid.uuid4().hex[:12]
    before = grader_files("ce4_3")
    report = run_graders(tmp_path, hostile, CE4_3_CHECKS, sealed=True, tag=run_id, exercise="ce4_3",
                         module="monitor", services=backend, env_extra={"WORKBOOK_RUN_ID": run_id},
                         check_timeout=60)
    time.sleep(0.5)
    assert not service_leftovers(run_id), f"{case} ({backend}): left behind {service_leftovers(run_id)}"
    assert grader_files("ce4_3") == before, f"{case} ({backend}): the graders' files changed during the run"
    got = outcomes(report)
    assert got, f"{case} ({backend}): no graded check ran"
    if honest is None:
        passed = [c for c, s in got.items() if s == "passed"]
        assert not passed and report["score"] == 0, f"{case} ({backend}): should score 0; passed {passed}"
        return
    expected = outcomes(ce4_3_honest)
    assert any(s == "passed" for s in expected.values()), "the solution's honest run passed nothing"
    differ = {c: (got.get(c), expected.get(c)) for c in set(got) | set(expected) if got.get(c) != expected.get(c)}
    said = "\n".join(f"--- {t['check']}: {t['output'][-1500:]}" for t in report["tests"] if t["check"] in differ)
    assert got == expected, (
        f"{case} ({backend}): sealed outcomes should equal the solution's; differ on {differ}\n{said}"
    )
    assert report["score"] == ce4_3_honest["score"]


# -- the learner's whole program (a uvicorn app) ---------------------------------------------------

HOSTILE_APP = '''
import json, os, pathlib

# At import, in the uvicorn process the graders start: overwrite the report, the graders and
# the solution. Each attempt's outcome is served back, so the test sees what happened.
attempts = {}
for name, path in json.loads(os.environ["HOSTILE_TARGETS"]).items():
    try:
        with open(path, "a") as out:
            out.write("# forged\\n")
        attempts[name] = "written"
    except OSError as exc:
        attempts[name] = type(exc).__name__
attempts["uid"] = os.getuid()
attempts["sees_graders"] = any(pathlib.Path(os.environ["HOSTILE_GRADERS"]).glob("*/*.py"))


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(attempts).encode()})
'''


def test_learner_program_cannot_write_the_graders_files_or_the_report(tmp_path, monkeypatch):
    """A learner's uvicorn app, started the way graders start it under --sealed, runs as the sandbox
    user: its import can write its own working copy, and neither the report, the graders nor the solutions."""
    import httpx

    from workbook import sealed
    from workbook.services.asgi import serve_asgi

    if os.getuid() != 0:
        pytest.skip("a learner's program runs as another user only where the grader runs as root")
    reports = tmp_path / "reports"
    reports.mkdir()
    report = reports / "ce4_2.json"
    report.write_text("{}")
    app_dir = tmp_path / "target" / "demo"
    app_dir.mkdir(parents=True)
    (app_dir / "hostile_app.py").write_text(HOSTILE_APP)
    forged_grader = ROOT / "graders" / "ce4_2" / "test_forged.py"
    targets = {"report": str(report), "new_report": str(reports / "forged.json"),
               "grader": str(ROOT / "graders" / "ce4_2" / "test_drift.py"), "new_grader": str(forged_grader),
               "solution": str(ROOT / "solutions" / "ce4_2" / "drift.py"), "own_copy": str(app_dir / "notes.txt")}
    before, solution_before = grader_files(), (ROOT / "solutions" / "ce4_2" / "drift.py").read_bytes()
    monkeypatch.setenv(sealed.ENV_HIDE, str(reports))
    session = sealed.Session()
    monkeypatch.setattr(sealed, "_active", session)
    running = serve_asgi("hostile_app:app", app_dir, ready_path="/", learner=True, env={
        "HOSTILE_TARGETS": json.dumps(targets), "HOSTILE_GRADERS": str(ROOT / "graders")})
    try:
        attempts = httpx.get(f"{running.endpoint.url}/", timeout=10).json()
    finally:
        running.stop()
        session.close()
    assert attempts["uid"] == session.sandbox_user()[0] not in (0, None), (
        f"the learner's app should run as the run's sandbox user {session.sandbox_user()[0]}; got uid {attempts['uid']}"
    )
    assert attempts["own_copy"] == "written", f"the app should write its own working copy; got {attempts}"
    refused = {k: v for k, v in attempts.items() if k not in ("uid", "own_copy", "sees_graders")}
    assert all(v != "written" for v in refused.values()), f"the learner's app wrote grader files: {attempts}"
    assert not attempts["sees_graders"], "the learner's app should not see the graders' files"
    assert report.read_text() == "{}" and not (reports / "forged.json").exists()
    assert grader_files() == before and not forged_grader.exists()
    assert (ROOT / "solutions" / "ce4_2" / "drift.py").read_bytes() == solution_before


"""Nothing a grading session starts outlives it: containers, processes, temporary folders.

Each scenario runs a real pytest session in a subprocess that starts PostgreSQL, Redis
and Prometheus, then ends it one way (success, a failing test, SIGINT, SIGTERM, two
xdist workers) and looks for anything left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from workbook.services import docker as docker_backend

SESSION_TESTS = '''
import os
import pathlib
import time

import pytest


@pytest.mark.parametrize("n", range(int(os.environ.get("N_TESTS", "1"))))
def test_uses_services(postgres, redis, prometheus, n):
    with postgres.connect() as conn:
        conn.execute("SELECT 1")
    redis.get_client().ping()
    pathlib.Path(os.environ["READY_DIR"], f"ready-{os.getpid()}-{n}").write_text("ready")
    if os.environ.get("HANG"):
        time.sleep(120)
    assert not os.environ.get("FAIL"), "failing on purpose"
'''

SCENARIOS = ["success", "failing-test", "sigint", "sigterm", "xdist"]


def require_backend(backend: str) -> None:
    if backend == "docker" and not docker_backend.engine_answers():
        message = "no Docker engine answers here; start dockerd (see .ci/run) to run the docker scenarios"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def leftovers(roots: list[Path], run_id: str) -> list[str]:
    """Folders, processes and containers that carry this run's id."""
    found = [f"temporary folder left: {p}" for root in roots if root.exists()
             for p in root.iterdir() if run_id in p.name]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if run_id in cmdline:
                found.append(f"process left: {proc.name} {cmdline[:120]}")
    if docker_backend.engine_answers():
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=workbook.run={run_id}"],
                             capture_output=True, text=True).stdout.split()
        found += [f"container left: {cid}" for cid in ids]
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("backend", ["local", "docker"])
def test_session_leaves_nothing_behind(tmp_path, backend, scenario):
    """After the session ends (however it ends), no container, process or temp folder remains."""
    require_backend(backend)
    (tmp_path / "test_session.py").write_text(SESSION_TESTS)
    root, ready = tmp_path / "services-tmp", tmp_path / "ready"
    ready.mkdir()
    run_id = uuid.uuid4().hex[:12]
    env = {**os.environ, "WORKBOOK_SERVICES_TMP": str(root), "WORKBOOK_RUN_ID": run_id,
           "READY_DIR": str(ready)}
    args = [sys.executable, "-m", "pytest", str(tmp_path / "test_session.py"), f"--services={backend}",
            "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path)]
    expected_ready = 1
    if scenario == "failing-test":
        env["FAIL"] = "1"
    if scenario in ("sigint", "sigterm"):
        env["HANG"] = "1"
    if scenario == "xdist":
        env["N_TESTS"] = "2"
        args += ["-n", "2"]
        expected_ready = 2
    # A run started in the background by a shell (`make test &`, some CI runners) inherits
    # SIGINT ignored, and its sessions would sleep through Ctrl-C: give the session the
    # default disposition a terminal gives it.
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        if scenario in ("sigint", "sigterm"):
            deadline = time.monotonic() + 90
            while len(list(ready.iterdir())) < expected_ready and proc.poll() is None:
                assert time.monotonic() < deadline, "the session never got its services ready"
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT if scenario == "sigint" else signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(list(ready.iterdir())) == expected_ready, f"the services never got ready:\n{output[-3000:]}"
    expected_rc = {"success": 0, "xdist": 0, "failing-test": 1, "sigint": 2, "sigterm": 2}[scenario]
    assert proc.returncode == expected_rc, f"pytest exit code {proc.returncode}:\n{output[-3000:]}"
    assert leftovers([root, Path(tempfile.gettempdir())], run_id) == []

"""The `workbook` command on a small course."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbook import paths
from workbook.cli import main
from workbook.services.base import free_port
from workbook.state import State


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_list_shows_every_item_with_status(course, capsys):
    """`workbook list` shows ready and planned items and the next exercise."""
    code, out = run(capsys, "list")
    assert code == 0
    assert "demo" in out and "not started" in out
    assert "later" in out and "planned" in out
    assert "0/1 ready exercises done; 1 more planned." in out
    assert "Next: demo" in out


def test_check_reports_not_started_then_done(course, capsys):
    """`workbook check` grades, records progress, shows a hint; a solved exercise is done."""
    code, out = run(capsys, "check", "demo")
    assert code == 1
    assert "demo: 0/4 points — not started" in out
    assert "Hint 1/2: first hint" in out
    (paths.exercises_dir() / "demo" / "mod.py").write_text(
        (paths.solutions_dir() / "demo" / "mod.py").read_text()
    )
    code, out = run(capsys, "check", "demo")
    assert code == 0
    assert "demo: 4/4 points — done" in out
    assert State.load().results["demo"]["status"] == "done"
    _, out = run(capsys, "list")
    assert "done" in out and "4/4" in out


def test_check_collapses_checks_not_started(course, capsys):
    """An untouched stub is one line for all its checks, naming where to start, not a line each."""
    code, out = run(capsys, "check", "demo")
    assert code == 1
    assert "3 checks not started — start with `double`" in out
    assert "test_spin" not in out and "same as above" not in out


def test_check_after_a_timeout_reads_not_run_and_passes_pytest_options(course, capsys):
    """After a learner's infinite loop the other checks are one "not run" line; options after
    `--` reach pytest."""
    (paths.exercises_dir() / "demo" / "mod.py").write_text(
        "def double(x):\n    while True:\n        pass\n\ndef spin():\n    return 1\n"
    )
    code, out = run(capsys, "check", "demo", "--", "--check-timeout=1")
    assert code == 1
    assert "mod.py line 2, in `double`: still running after 1 s" in out
    assert "2 checks not run — fix the time-out of `test_double` first." in out
    assert "demo: 0/4 points" in out


def test_check_shows_failing_message(course, capsys):
    """A wrong answer shows the check's sentence under its name."""
    (paths.exercises_dir() / "demo" / "mod.py").write_text(
        "def double(x):\n    return x\n\ndef spin():\n    return 1\n"
    )
    code, out = run(capsys, "check", "demo")
    assert code == 1
    assert "double(3) should be 6; got 3" in out
    assert "in progress" in out


def test_hint_advances_one_at_a_time(course, capsys):
    """Each `workbook hint` shows the next hint; past the last it lists them all."""
    assert "Hint 1/2 for demo: first hint" in run(capsys, "hint", "demo")[1]
    assert "Hint 2/2 for demo: second hint" in run(capsys, "hint", "demo")[1]
    out = run(capsys, "hint", "demo")[1]
    assert "That was the last hint" in out and "1. first hint" in out


def test_reset_restores_stub_and_keeps_backup(course, capsys):
    """`workbook reset` restores the starter file and keeps the learner's copy."""
    learner = paths.exercises_dir() / "demo" / "mod.py"
    stub = learner.read_text()
    learner.write_text("my work\n")
    code, out = run(capsys, "reset", "demo")
    assert code == 0
    assert learner.read_text() == stub
    backups = list((paths.state_dir() / "backups" / "demo").rglob("mod.py"))
    assert [b.read_text() for b in backups] == ["my work\n"]


def test_unknown_or_planned_exercise_is_one_sentence(course, capsys):
    """Unknown ids and planned exercises give a sentence and exit code 2, not a traceback."""
    code, out = run(capsys, "check", "nope")
    assert code == 2 and "no exercise 'nope'" in out
    code, out = run(capsys, "check", "later")
    assert code == 2 and "planned and has no graders yet" in out


def test_stubs_check_fails_when_out_of_date(course, capsys):
    """`workbook stubs --check` exits 1 naming the stale file; `workbook stubs` fixes it."""
    (paths.exercises_dir() / "demo" / "mod.py").write_text("x = 1\n")
    code, out = run(capsys, "stubs", "--check")
    assert code == 1 and "exercises/demo/mod.py" in out
    assert run(capsys, "stubs")[0] == 0
    assert run(capsys, "stubs", "--check")[0] == 0


def test_corrupt_state_is_discarded_with_a_message(course, capsys):
    """An unreadable state file is started afresh, with a warning instead of a crash."""
    State.file().parent.mkdir(parents=True, exist_ok=True)
    State.file().write_text("{not json")
    code, out = run(capsys, "list")
    assert code == 0 and "unreadable" in out
    State().save()
    assert json.loads(State.file().read_text())["_"].startswith("DON'T EDIT THIS FILE!")


def test_doctor_lists_every_service_and_backend(capsys):
    """`workbook doctor` shows each service under both backends, with a path, an image or a fix."""
    from workbook.services import settings

    code, out = run(capsys, "doctor")
    for service in settings.SERVICES:
        assert service in out
    assert "local" in out and "docker" in out
    assert code in (0, 1)
    if code == 1:
        assert "apt-get install" in out or "workbook images build" in out or "dockerd" in out


# -- workbook lab -----------------------------------------------------------------------------


def _lab_command(monkeypatch, capsys, *argv: str) -> tuple[list[str], dict]:
    """Run `workbook lab ARGV` with JupyterLab's start replaced by a recorder."""
    from workbook import cli

    started = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command, **kw: started.append((command, kw)) or 0)
    code, _ = run(capsys, "lab", *argv)
    assert code == 0 and len(started) == 1, "`workbook lab` should start JupyterLab once"
    return started[0]


@pytest.mark.parametrize("argv", [
    ["--port=9000", "--no-browser"],
    ["--", "--port=9000", "--no-browser"],
    ["--port", "9000", "--no-browser"],
], ids=["options", "after --", "separate value"])
def test_lab_passes_jupyterlab_options_through(course, monkeypatch, capsys, argv):
    """`workbook lab --port=9000` and `workbook lab -- --port=9000` give JupyterLab the options, in order."""
    command, _ = _lab_command(monkeypatch, capsys, *argv)
    given = [a for a in argv if a != "--"]
    assert command[-len(given):] == given, f"JupyterLab's command should end with {given}; got {command}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_passes_args_to_workbook_lab():
    """`make lab ARGS="--port=9000 --no-browser"` runs `workbook lab --port=9000 --no-browser`."""
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "lab", "ARGS=--port=9000 --no-browser"],
                         cwd=paths.PACKAGE_DIR.parent, capture_output=True, text=True, check=True).stdout
    assert ".venv/bin/workbook lab --port=9000 --no-browser" in out, f"make lab should pass ARGS on; it runs:\n{out}"


def test_other_commands_still_refuse_unknown_options(course, capsys):
    """Only `lab` passes unknown options on; `workbook list --port=9000` is still an error."""
    with pytest.raises(SystemExit) as exc:
        main(["list", "--port=9000"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --port=9000" in capsys.readouterr().err


def test_lab_roots_the_server_at_the_repository_and_opens_the_exercise_side_by_side(
        course, monkeypatch, capsys):
    """The server is rooted at the repository and opens a workspace: notebook left, learner file right."""
    command, kw = _lab_command(monkeypatch, capsys)
    assert f"--ServerApp.root_dir={course}" in command
    assert not any(a.endswith(".ipynb") for a in command), "a notebook argument would root the server in notebooks/"
    assert kw["cwd"] == course
    assert "--LabApp.default_url=/lab/workspaces/workbook" in command
    folder = Path(next(a for a in command if a.startswith("--LabApp.workspaces_dir=")).split("=", 1)[1])
    [saved] = list(folder.glob("*.jupyterlab-workspace"))
    workspace = json.loads(saved.read_text())
    dock = workspace["data"]["layout-restorer:data"]["main"]["dock"]
    assert dock["orientation"] == "horizontal"
    assert [area["widgets"] for area in dock["children"]] == [
        ["notebook:notebooks/demo.ipynb"], ["editor:exercises/demo/mod.py"]]
    assert workspace["data"]["editor:exercises/demo/mod.py"]["data"] == {
        "path": "exercises/demo/mod.py", "factory": "Editor"}


def test_lab_puts_the_venv_first_on_path(course, monkeypatch, capsys):
    """The server (so its kernels and terminals) gets this venv's bin first on PATH."""
    from workbook.notebook import venv_bin

    monkeypatch.setenv("PATH", f"/usr/local/bin{os.pathsep}/usr/bin")
    _, kw = _lab_command(monkeypatch, capsys)
    first = kw["env"]["PATH"].split(os.pathsep)[0]
    assert first == str(venv_bin()), f"PATH should start with {venv_bin()}; got {kw['env']['PATH']}"
    assert (venv_bin() / "pytest").exists(), "the venv's bin should hold pytest"
    assert kw["env"]["WORKBOOK_ROOT"] == str(course)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server we started (its own process group: kernels and terminals with it)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_lab_really_starts_with_passed_options(course, tmp_path):
    """A real `workbook lab -- --port=N --no-browser` answers on that port, rooted at the
    repository, without nbgrader's warning; its terminals and kernels find the venv's pytest first."""
    import httpx
    from tornado.ioloop import IOLoop
    from tornado.websocket import websocket_connect

    from workbook.notebook import venv_bin

    shutil.copy(paths.PACKAGE_DIR.parent / "nbgrader_config.py", course / "nbgrader_config.py")
    port, token = free_port(), "workbook-test"
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbook.cli", "lab", "--", f"--port={port}", "--no-browser",
             "--ip=127.0.0.1", f"--IdentityProvider.token={token}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"`workbook lab` exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"JupyterLab did not answer within 90 s:\n{log.read_text()}"
            try:
                if httpx.get(f"{base}/api/status", headers=auth, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        names = {item["name"] for item in httpx.get(f"{base}/api/contents", headers=auth).json()["content"]}
        assert {"exercises", "notebooks", "catalog.toml"} <= names, f"the server should serve the repository; got {names}"
        workspace = httpx.get(f"{base}/lab/api/workspaces/workbook", headers=auth).json()
        assert "editor:exercises/demo/mod.py" in workspace["data"], "the workspace should open the learner file"
        assert "No nbgrader_config.py" not in log.read_text()

        terminal = httpx.post(f"{base}/api/terminals", headers=auth).json()["name"]
        url = f"ws://127.0.0.1:{port}/terminals/websocket/{terminal}?token={token}"

        async def which_pytest() -> str:
            ws = await websocket_connect(url)
            ws.write_message(json.dumps(["stdin", "echo PYTEST=$(command -v pytest)=\r"]))
            seen = ""
            while "PYTEST=/" not in seen or "=\r" not in seen.split("PYTEST=/", 1)[1]:
                message = await ws.read_message()
                assert message is not None, f"the terminal closed; it printed:\n{seen}"
                kind, *data = json.loads(message)
                seen += "".join(d for d in data if isinstance(d, str)) if kind == "stdout" else ""
            ws.close()
            return seen.rsplit("PYTEST=", 1)[1].split("=", 1)[0]

        found = IOLoop.current().run_sync(which_pytest, timeout=30)
        assert found == str(venv_bin() / "pytest"), f"a JupyterLab terminal should find the venv's pytest first; got {found}"

        kernel = httpx.post(f"{base}/api/kernels", headers=auth, json={"name": "python3"}, timeout=30).json()["id"]
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}"
        code = "import os, shutil; print('PYTEST=' + str(shutil.which('pytest')))"

        async def kernel_pytest() -> str:
            ws = await websocket_connect(url)
            ws.write_message(json.dumps({
                "header": {"msg_id": "1", "msg_type": "execute_request", "username": "", "session": "s",
                           "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False}}))
            while True:
                message = await ws.read_message()
                assert message is not None, "the kernel's channel closed"
                reply = json.loads(message)
                if reply["msg_type"] == "stream" and "PYTEST=" in reply["content"]["text"]:
                    ws.close()
                    return reply["content"]["text"].split("PYTEST=", 1)[1].strip()
                if reply["msg_type"] == "error":
                    pytest.fail(f"the kernel raised: {reply['content']['evalue']}")

        found = IOLoop.current().run_sync(kernel_pytest, timeout=60)
        assert found == str(venv_bin() / "pytest"), f"a kernel should find the venv's pytest first; got {found}"
    finally:
        _stop(proc)


def test_notebook_check_cell_shows_the_check_table_and_the_next_hint(course, capsys):
    """The notebook's last cell: one line for the untouched checks, the score, the hint `workbook check` shows."""
    from workbook.notebook import check

    assert check("demo") == 0
    out = capsys.readouterr().out
    assert "· 3 checks not started — start with `double`" in out and out.count("not started") == 2, out
    assert "demo: 0/4 points — not started" in out
    assert "Hint 1/2: first hint" in out
    assert State.load().results["demo"]["status"] == "not started", "the cell should record progress"
    (paths.exercises_dir() / "demo" / "mod.py").write_text((paths.solutions_dir() / "demo" / "mod.py").read_text())
    assert check("demo") == 4
    out = capsys.readouterr().out
    assert "demo: 4/4 points — done" in out and "Hint" not in out

"""Serve a learner's ASGI app (FastAPI) under a real uvicorn process on a free loopback port."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx

from workbook.services.base import (
    Endpoint,
    LocalProcess,
    Running,
    free_port,
    make_tempdir,
    register,
    remove_tree,
)
from workbook.services.local import start_process


def serve_asgi(
    app: str, app_dir: str | Path | None = None, *, ready_path: str = "/health",
    env: dict[str, str] | None = None, timeout: float = 30.0, learner: bool = False,
) -> Running:
    """``python -m uvicorn app --app-dir app_dir`` until ``ready_path`` answers (any HTTP status).

    ``learner=True``: the app is the learner's, sealed under sealed grading (workbook.sealed.learner_program).
    """
    log_dir = make_tempdir("uvicorn")
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log"]
    if app_dir is not None:
        argv += ["--app-dir", str(app_dir)]
    process = LocalProcess(argv, log_dir / "uvicorn.log", env=env, cwd=Path(app_dir) if app_dir else None,
                           learner=learner)
    endpoint = Endpoint("uvicorn", "local", "127.0.0.1", port)
    return start_process(
        f"uvicorn serving {app}", process, endpoint,
        lambda: httpx.get(f"{endpoint.url}{ready_path}", timeout=2) is not None, log_dir,
        hint="does the module import, and does it define the app object uvicorn was told to serve?",
        timeout=timeout,
    )


@dataclass
class Spawned:
    """A uvicorn process started without waiting for it: its process, URL and log folder."""

    process: LocalProcess
    url: str
    log_dir: Path
    running: Running


def spawn_uvicorn(
    app: str, app_dir: str | Path, *, name: str, env: dict[str, str], pythonpath: str | Path,
    cwd: str | Path | None = None, options: tuple[str, ...] = (), unset: tuple[str, ...] = (),
) -> Spawned:
    """Start ``python -m uvicorn app`` as the learner's program now, on a free loopback port.

    For graders that start several servers at once and wait for each when a check needs it.
    The program gets ``env`` (with ``pythonpath`` as PYTHONPATH, unbuffered output, no
    bytecode files) on top of the grader's environment, minus the variables in ``unset``:
    a server's settings are the ones given here, never ones the grader happens to have.
    Its log and, without ``cwd``, its working folder are a fresh temporary folder, removed
    when it stops (``running.stop()``, also at the end of the run).
    """
    log_dir = make_tempdir(name)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--app-dir", str(app_dir), "--no-access-log", *options]
    process = LocalProcess(argv, log_dir / "uvicorn.log", cwd=Path(cwd) if cwd else log_dir, learner=True,
                           env={**env, "PYTHONPATH": str(pythonpath), "PYTHONUNBUFFERED": "1",
                                "PYTHONDONTWRITEBYTECODE": "1"})
    with mock.patch.dict(os.environ):
        for variable in unset:
            os.environ.pop(variable, None)
        process.start()

    def stop() -> None:
        process.stop()
        remove_tree(log_dir)

    running = register(Running(None, stop, process.logs))  # type: ignore[arg-type]
    return Spawned(process, f"http://127.0.0.1:{port}", log_dir, running)

"""Serve a learner's ASGI app (FastAPI) under a real uvicorn process on a free loopback port."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from workbook.services.base import Endpoint, LocalProcess, Running, free_port, make_tempdir
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

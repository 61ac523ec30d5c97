"""Serve a learner's ASGI app (FastAPI) under a real uvicorn process on a free loopback port."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from workbook.services.base import (
    Endpoint,
    LocalProcess,
    Running,
    free_port,
    make_tempdir,
    register,
    remove_tree,
    wait_until,
)


def serve_asgi(
    app: str, app_dir: str | Path | None = None, *, ready_path: str = "/health",
    env: dict[str, str] | None = None, timeout: float = 30.0,
) -> Running:
    """``python -m uvicorn app --app-dir app_dir`` until ``ready_path`` answers (any HTTP status)."""
    log_dir = make_tempdir("uvicorn")
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log"]
    if app_dir is not None:
        argv += ["--app-dir", str(app_dir)]
    process = LocalProcess(argv, log_dir / "uvicorn.log", env=env, cwd=Path(app_dir) if app_dir else None)
    endpoint = Endpoint("uvicorn", "local", "127.0.0.1", port)
    started = time.monotonic()
    process.start()

    def stop() -> None:
        process.stop()
        remove_tree(log_dir)

    running = register(Running(endpoint, stop, process.logs))
    try:
        wait_until(lambda: httpx.get(f"{endpoint.url}{ready_path}", timeout=2) is not None,
                   what=f"uvicorn serving {app}", timeout=timeout, logs=process.logs, alive=process.alive,
                   hint="does the module import, and does it define the app object uvicorn was told to serve?")
    except BaseException:
        running.stop()
        raise
    running.started_s = time.monotonic() - started
    return running

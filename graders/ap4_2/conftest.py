"""The AP4.2 graders' serving set-up, started once and early.

Two copies of the exercise's serving app (serving_app.py, with the learner's pipeline.py)
run under real uvicorn processes, each with its own MLflow experiment, and a real
Prometheus scrapes both every second. Prometheus takes up a new scrape target only every
few seconds, so the apps start in the background when the first check of this folder
begins; the end-to-end checks (test_drift_serving.py) wait for them. Under -x (mutation
testing, where most runs stop at the first direct check) they start on demand instead.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ap4_2_support import APPS, PATIENCE, WINDOW_SIZE, reference_frame

from workbook.checks import require_started
from workbook.services.base import make_tempdir, remove_tree


@dataclass
class Serving:
    """The apps being started: ``app(name)`` waits for one and returns its endpoint and settings."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    error: BaseException | None = None
    futures: dict[str, Future] = field(default_factory=dict)
    reference: object = None
    start_all: Callable[[], None] | None = None  # starts the apps, when they are started on demand

    def job(self, name: str) -> str:
        return f"ap4_2-{name}-{self.run}"

    def experiment(self, name: str) -> str:
        return f"ap4_2-serving-{name}-{self.run}"

    def app(self, name: str):
        __tracebackhide__ = True
        if self.error is not None:
            raise self.error
        if not self.futures and self.start_all is not None:
            self.start_all()
        try:
            return self.futures[name].result(timeout=60)
        except Exception as exc:
            if "NotImplementedError" in str(exc):  # the app could not build an unwritten monitor
                raise NotImplementedError(f"the serving app could not start: {exc}") from None
            raise


@pytest.fixture(scope="package", autouse=True)
def serving(request: pytest.FixtureRequest, target_dir: Path):
    from workbook.services.asgi import serve_asgi

    state = Serving()
    source = target_dir / "ap4_2"
    if not any(item.path.name == "test_drift_serving.py" for item in request.session.items):
        yield state  # only the direct checks run (`-k`, a mutant's checks): nothing to serve
        return
    mlflow_server = request.getfixturevalue("mlflow_server")
    prometheus = request.getfixturevalue("prometheus")
    try:
        require_started("ap4_2", source, ["pipeline.py"])
        missing = [n for n in ("pipeline.py", "detector.py", "serving_app.py") if not (source / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{source} should hold {', '.join(missing)} (run `workbook reset ap4_2` "
                                    "to restore the provided files)")
    except (NotImplementedError, FileNotFoundError) as exc:
        state.error = exc
        yield state
        return
    folder = make_tempdir("ap4_2-serving")
    app_dir = folder / "app"
    app_dir.mkdir()
    for path in source.glob("*.py"):
        shutil.copy2(path, app_dir / path.name)
    state.reference = reference_frame()
    state.reference.to_parquet(folder / "reference.parquet")
    lock = threading.Lock()
    started = []

    def start(name: str):
        running = serve_asgi("serving_app:app", app_dir, env={
            "AP4_2_REFERENCE": str(folder / "reference.parquet"),
            "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
            "AP4_2_EXPERIMENT": state.experiment(name),
            "AP4_2_WINDOW_SIZE": str(WINDOW_SIZE),
            "AP4_2_PATIENCE": str(PATIENCE),
        })
        with lock:
            started.append(running)
            prometheus.scrape(state.job(name), f"{running.endpoint.host}:{running.endpoint.port}")
        return running.endpoint

    # Local processes die with the thread that started them: the pool lives until the end.
    pool = ThreadPoolExecutor(max_workers=len(APPS), thread_name_prefix="ap4_2-serving")

    def start_all() -> None:
        state.futures = {name: pool.submit(start, name) for name in APPS}

    if request.config.option.maxfail == 1:
        # -x (mutation testing): most runs stop at an early direct check, so the apps start
        # only when an end-to-end check asks for them.
        state.start_all = start_all
    else:
        start_all()
    try:
        yield state
    finally:
        for future in state.futures.values():
            future.exception()  # wait for a start still under way
        for running in started:
            running.stop()
        pool.shutdown(wait=True)
        remove_tree(folder)

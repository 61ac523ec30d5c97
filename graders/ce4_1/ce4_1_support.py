"""Support for the CE4.1 graders: the servers they start, the model they serve, and a reader
of the Prometheus text format.

Three uvicorn processes run the learner's ``metrics.py``, all spawned at once at the start
(so their start-up overlaps with the first checks):

* ``harness``: the graders' own Starlette app (``HARNESS_SOURCE``) with routes built to tell
  right from wrong: a route template, any status code, a handler that raises, a streamed body,
  requests held open on purpose;
* ``serving``: the provided ``serving.py`` with one worker, scraped every second by a real
  Prometheus;
* ``workers``: ``serving.py`` under ``uvicorn --workers 2`` in multiprocess mode.

Expectations never come from the learner's objects: the graders train the model here with
scikit-learn and compute classes and confidences with it; counts are the requests the
graders sent; the text is parsed with prometheus_client's parser and checked with promtool.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from workbook.services.asgi import spawn_uvicorn
from workbook.services.base import (
    LocalProcess,
    Running,
    ServiceStartError,
    tail,
    wait_until,
)

N_FEATURES = 4
CLASSES = np.array(["bronze", "gold", "silver"])  # labels, not indices 0..k-1
MODEL_NAME = "tier-classifier"
MODEL_VERSION = "2024.11.3"
PROMETHEUS_JOB = "ce4_1-serving"
#: Rows whose first feature is exactly SLOW make the model sleep SLOW_SECONDS; BOOM makes it raise.
SLOW = 3.25
SLOW_SECONDS = 0.15
BOOM = -3.25
MODEL_MODULE = "ce4_1_grader_model"
MODEL_SOURCE = textwrap.dedent('''
    """A linear classifier with scikit-learn's interface that needs numpy only (written by the CE4.1 graders)."""
    import time

    import numpy as np


    class LinearClassifier:
        """Softmax over X @ coef_.T + intercept_, with a fitted LogisticRegression's parameters.

        A row whose first feature is SLOW takes SLOW_SECONDS; one whose first feature is BOOM raises.
        """

        def __init__(self, coef, intercept, classes):
            self.coef_ = np.asarray(coef, dtype=float)
            self.intercept_ = np.asarray(intercept, dtype=float)
            self.classes_ = np.asarray(classes)
            self.n_features_in_ = self.coef_.shape[1]

        def predict_proba(self, X):
            X = np.asarray(X, dtype=float)
            if np.any(X[:, 0] == BOOM):
                raise RuntimeError("the model failed on this row")
            if np.any(X[:, 0] == SLOW):
                time.sleep(SLOW_SECONDS)
            z = X @ self.coef_.T + self.intercept_
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)

        def predict(self, X):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
''').replace("SLOW_SECONDS", repr(SLOW_SECONDS)).replace("SLOW", repr(SLOW)).replace("BOOM", repr(BOOM))

HARNESS_MODULE = "ce4_1_harness"
HARNESS_MODEL = ("harness-model", "7.2.1")
HARNESS_CLASSES = ["spam", "ham"]
STREAM_CHUNKS, STREAM_PAUSE = 3, 0.1
HARNESS_SOURCE = textwrap.dedent('''
    """The CE4.1 graders' test app: the learner's metrics on a Starlette app whose routes tell
    right from wrong (written by the graders; served by uvicorn)."""
    import asyncio

    import prometheus_client
    from metrics import ServingMetrics, instrument
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    REGISTRY = CollectorRegistry()
    METRICS = ServingMetrics(REGISTRY, model_name=MODEL_NAME, model_version=MODEL_VERSION, classes=CLASSES)
    held = {"event": None, "entered": 0}


    def event():
        if held["event"] is None:
            held["event"] = asyncio.Event()
        return held["event"]


    async def item(request):
        return JSONResponse({"item": request.path_params["item_id"]})


    async def status(request):
        return Response(status_code=int(request.path_params["code"]))


    async def boom(request):
        raise RuntimeError("the handler failed")


    async def stream(request):
        async def body():
            for _ in range(STREAM_CHUNKS):
                await asyncio.sleep(STREAM_PAUSE)
                yield b"chunk\\n"
        return StreamingResponse(body(), media_type="text/plain")


    async def stream_fails(request):
        async def body():
            yield b"first chunk\\n"
            await asyncio.sleep(0.01)
            raise RuntimeError("the stream failed half-way")
        return StreamingResponse(body(), media_type="text/plain")


    async def hold(request):
        held["entered"] += 1
        await event().wait()
        return JSONResponse({"held": True})


    async def release(request):
        event().set()
        return JSONResponse({"entered": held["entered"]})


    async def held_count(request):
        return JSONResponse({"entered": held["entered"]})


    async def global_registry(request):
        return Response(prometheus_client.generate_latest(prometheus_client.REGISTRY), media_type="text/plain")


    async def given_registry(request):
        return Response(prometheus_client.generate_latest(REGISTRY), media_type="text/plain")


    async def health(request):
        return JSONResponse({"status": "ok"})


    async def on_error(request, exc):
        return JSONResponse({"handled_by": "the app's error handler"}, status_code=500)


    app = Starlette(routes=[
        Route("/items/{item_id}", item),
        Route("/status/{code}", status),
        Route("/boom", boom),
        Route("/stream", stream),
        Route("/stream-fails", stream_fails),
        Route("/hold", hold),
        Route("/release", release, methods=["POST"]),
        Route("/held", held_count),
        Route("/never/{thing}", item),
        Route("/global-registry", global_registry),
        Route("/given-registry", given_registry),
        Route("/health", health),
    ], exception_handlers={Exception: on_error})
    instrument(app, METRICS)
''').replace("MODEL_NAME", repr(HARNESS_MODEL[0])).replace("MODEL_VERSION", repr(HARNESS_MODEL[1])) \
    .replace("CLASSES", repr(HARNESS_CLASSES)).replace("STREAM_CHUNKS", repr(STREAM_CHUNKS)) \
    .replace("STREAM_PAUSE", repr(STREAM_PAUSE))


# -- the model --------------------------------------------------------------------------------


def _import(folder: Path, name: str, source: str):
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(name, None)
        return __import__(name)
    finally:
        sys.path.remove(str(folder))


@dataclass
class Model:
    """The model the servers load (numpy only) and the scikit-learn reference it was built from."""

    path: Path
    reference: LogisticRegression
    rows: np.ndarray  # ordinary rows for requests (no SLOW or BOOM marker)

    def expected(self, rows: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Classes and confidences by scikit-learn: predict and the max of predict_proba."""
        return [str(c) for c in self.reference.predict(rows)], self.reference.predict_proba(rows).max(axis=1)


def train_model(folder: Path) -> Model:
    light = _import(folder, MODEL_MODULE, MODEL_SOURCE)
    X, y = make_classification(n_samples=400, n_features=N_FEATURES, n_informative=3, n_redundant=0,
                               n_classes=3, n_clusters_per_class=1, random_state=4)
    fitted = LogisticRegression(max_iter=2000).fit(X, CLASSES[y])
    model = light.LinearClassifier(fitted.coef_, fitted.intercept_, fitted.classes_)
    import joblib

    path = folder / "model.joblib"
    joblib.dump(model, path)
    rows = np.round(X[:120], 6)
    assert not np.isin(rows[:, 0], [SLOW, BOOM]).any()
    return Model(path, fitted, rows)


# -- the servers ------------------------------------------------------------------------------


@dataclass
class Server:
    """One uvicorn process (or a supervisor and its workers) running the learner's metrics.py."""

    role: str
    process: LocalProcess
    url: str
    running: Running | None = None
    _state: str = "spawned"
    _error: str = ""
    extra: dict = field(default_factory=dict)

    def logs(self) -> str:
        return self.process.logs()

    def up(self, timeout: float = 45.0) -> Server:
        """Wait until the server answers HTTP; fail the check (with its log) if it never does."""
        __tracebackhide__ = True
        if self._state == "spawned":
            try:
                probe = f"{self.url}{self.extra.get('probe', '/health')}"
                wait_until(lambda: httpx.get(probe, timeout=2).status_code == 200,
                           what=f"the {self.role} server", timeout=timeout, logs=self.logs,
                           alive=self.process.alive)
                self._state = "up"
            except ServiceStartError as exc:
                self._state, self._error = "failed", str(exc)
        if self._state == "failed":
            if "NotImplementedError" in self.logs():
                raise NotImplementedError(f"the {self.role} server's log shows NotImplementedError: "
                                          "part of metrics.py still raises it")
            raise AssertionError(
                f"uvicorn should serve an app using your metrics.py ({self.role} server: "
                f"{self.extra.get('what', '')}); it did not. {self._error}")
        return self

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()


def spawn(role: str, app: str, app_dir: Path, pythonpath: Path, env: dict[str, str],
          workers: int = 1, what: str = "", probe: str = "/health") -> Server:
    """Start ``uvicorn app`` now, without waiting for it to answer."""
    options = ("--log-level", "warning", *(("--workers", str(workers)) if workers > 1 else ()))
    spawned = spawn_uvicorn(app, app_dir, name=f"ce4_1-{role}", env=env, pythonpath=pythonpath,
                            options=options, unset=("PROMETHEUS_MULTIPROC_DIR",))  # only the settings given here
    return Server(role, spawned.process, spawned.url, spawned.running, extra={"what": what, "probe": probe})


# -- the Prometheus text format ---------------------------------------------------------------

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Scrape:
    """One /metrics text, parsed: family types and every sample by (name, sorted labels)."""

    text: str
    types: dict[str, str]
    samples: dict[Key, float]
    duplicates: list[Key]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (yet)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, tuple(sorted(labels.items()))) in self.samples

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(labels)[label] for labels in self.series(name) if label in dict(labels)}

    def buckets(self, name: str, **labels: str) -> dict[float, float]:
        """le -> cumulative count of one histogram series."""
        out = {}
        for key, v in self.series(f"{name}_bucket").items():
            d = dict(key)
            le = d.pop("le", None)
            if le is not None and d == labels:
                out[float(le)] = v
        return out


def parse(text: str, where: str) -> Scrape:
    """Parse the Prometheus text format; a clear failure when it is not valid."""
    __tracebackhide__ = True
    types: dict[str, str] = {}
    samples: dict[Key, float] = {}
    duplicates: list[Key] = []
    try:
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key in samples:
                    duplicates.append(key)
                samples[key] = sample.value
    except Exception as exc:
        raise AssertionError(f"{where} should be the Prometheus text format; parsing it failed: {exc}") from None
    return Scrape(text, types, samples, duplicates)


def scrape(url: str) -> Scrape:
    """GET url/metrics on a new connection, parsed."""
    __tracebackhide__ = True
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, (
        f"GET /metrics should answer 200; got {response.status_code}: {response.text[:300]}")
    return parse(response.text, "GET /metrics")


def family_type(scrape: Scrape, name: str) -> str | None:
    """The TYPE of a metric whatever the parser calls its family (counters lose ``_total``)."""
    for candidate in (name, name.removesuffix("_total")):
        if candidate in scrape.types:
            return scrape.types[candidate]
    return None


def promtool_check(text: str) -> str:
    """Problems ``promtool check metrics`` finds in ``text`` (empty when clean)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise AssertionError("promtool is not on PATH: install it (apt-get install prometheus).")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    return (result.stdout + result.stderr).strip() if result.returncode != 0 or result.stdout.strip() else ""


def bucket_of(bounds: list[float], value: float) -> tuple[float, float]:
    """(lower, upper] bucket of ``value`` among the sorted finite ``bounds`` (upper inf above them)."""
    lower = 0.0
    for bound in bounds:
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, math.inf


def wait_for(check, *, timeout: float, interval: float = 0.05):
    """Poll ``check`` until it returns a truthy value; the last value when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def log_tail(server: Server) -> str:
    return tail(server.logs())

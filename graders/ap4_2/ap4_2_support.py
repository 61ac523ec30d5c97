"""Support for the AP4.2 graders: constructed traffic, scripted detectors, MLflow look-ups,
and a tracking server that can be taken down.

No verdict rests on a random draw: the "production" windows are evenly spread quantiles of
the reference's distribution (calm) or the same moved by a known amount (shifted), and the
scripted detectors decide drift from values the graders chose.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from workbook.checks import field

# The served apps (conftest.py, test_drift_serving.py): both monitors use these settings.
WINDOW_SIZE = 100
PATIENCE = 3
APPS = ("shifted", "calm")


# -- deterministic data -----------------------------------------------------------------------


def spread(n: int, *, offset: float = 0.5, loc: float = 0.0, seed: int = 0) -> np.ndarray:
    """``n`` evenly spread quantiles of a normal distribution, in a fixed shuffled order."""
    values = stats.norm.ppf((np.arange(n) + offset) / n) + loc
    return np.random.default_rng(seed).permutation(values)


def reference_frame(n: int = 2000) -> pd.DataFrame:
    return pd.DataFrame({"x": spread(n, seed=1), "y": spread(n, seed=2)})


def calm_window(k: int, size: int) -> pd.DataFrame:
    """Window ``k``: spread quantiles of the reference's distribution (KS p-value near 1)."""
    offset = 0.2 + 0.6 * ((0.37 * k) % 1.0)
    return pd.DataFrame({"x": spread(size, offset=offset, seed=100 + k),
                         "y": spread(size, offset=1 - offset, seed=200 + k)})


def shifted_window(k: int, size: int, shift: float = 1.0) -> pd.DataFrame:
    """Window ``k`` with x moved by ``shift`` standard deviations; y calm."""
    window = calm_window(k, size)
    window["x"] += shift
    return window


def ks(reference: pd.DataFrame, window: pd.DataFrame, name: str):
    return stats.ks_2samp(np.asarray(reference[name], dtype=float), np.asarray(window[name], dtype=float))


def flags(size: int, **values: float) -> pd.DataFrame:
    """A window of ``size`` identical rows: ``flags(5, x=0.9, y=0.1)``."""
    return pd.DataFrame({name: np.full(size, value, dtype=float) for name, value in values.items()})


# -- scripted detectors (the graders' own callables: under sealed grading they run here) --------


class RecordingDetector:
    """Records every (reference, window) it is given; never reports drift."""

    def __init__(self):
        self.calls: list[tuple[pd.DataFrame, pd.DataFrame]] = []

    def __call__(self, reference, window):
        self.calls.append((pd.DataFrame(reference).copy(), pd.DataFrame(window).copy()))
        return {str(name): {"score": 0.0, "drifted": False} for name in pd.DataFrame(reference).columns}


class MeanDetector:
    """Score = the window's mean of each feature; drifted when that mean is above 0.5.

    So a window of rows ``x=0.9`` has drifted in x, one of ``x=0.1`` has not, and the
    graders know every score without asking the learner's code.
    """

    def __init__(self, as_objects: bool = False):
        self.as_objects = as_objects
        self.calls = 0

    def __call__(self, reference, window):
        self.calls += 1
        window = pd.DataFrame(window)
        report = {}
        for name in pd.DataFrame(reference).columns:
            mean = float(np.asarray(window[name], dtype=float).mean())
            result = {"score": mean, "drifted": mean > 0.5}
            report[str(name)] = SimpleNamespace(**result) if self.as_objects else result
        return report


class DerivedFeatureDetector:
    """Reports one feature of the reference (x, its mean) and one the reference does not have
    (x_minus_y, the mean of x - y): a detector's result need not list the reference's columns."""

    def __call__(self, reference, window):
        window = pd.DataFrame(window)
        x = float(np.asarray(window["x"], dtype=float).mean())
        diff = float((np.asarray(window["x"], dtype=float) - np.asarray(window["y"], dtype=float)).mean())
        return {"x": {"score": x, "drifted": x > 0.5}, "x_minus_y": {"score": diff, "drifted": False}}


# -- reading what the learner's code returns ----------------------------------------------------


def results_list(results, *, what: str) -> list:
    __tracebackhide__ = True
    try:
        return [results[i] for i in range(len(results))]
    except TypeError:
        raise AssertionError(f"{what} should return a list of WindowResult; got {results!r}") from None


def res(result, name: str, *, what: str = "a WindowResult") -> Any:
    __tracebackhide__ = True
    return field(result, name, what=what)


def sample(monitor, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample of the monitor's metrics, read from their text exposition (what
    Prometheus scrapes) with prometheus_client's parser; None when there is no such sample."""
    __tracebackhide__ = True
    text = monitor.metrics_text()
    assert isinstance(text, str), f"metrics_text() should return text; got {type(text).__name__}"
    labels = labels or {}
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def sample_type(monitor, name: str) -> str | None:
    """The type ("counter", "gauge", ...) of the metric family a sample belongs to, as its
    exposition declares it; None when there is no such sample."""
    for family in text_string_to_metric_families(monitor.metrics_text()):
        if any(found.name == name for found in family.samples):
            return family.type
    return None


# -- MLflow, read from the tracking server's REST API --------------------------------------------


class TrackingReader:
    """Reads experiments and runs straight from the MLflow tracking server (its REST API, the
    one ``MlflowClient`` calls), so the graders need not import mlflow (seconds per grading).
    A run reads like the client's: ``run.info.run_id``, ``run.info.start_time``,
    ``run.data.tags`` / ``.params`` / ``.metrics`` (dicts)."""

    def __init__(self, tracking_uri: str):
        self.api = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow"

    def experiment_id(self, name: str) -> str | None:
        answer = httpx.get(f"{self.api}/experiments/get-by-name", params={"experiment_name": name}, timeout=30)
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.json()["experiment"]["experiment_id"]

    def runs(self, experiment: str, *, since_ms: int | None = None) -> list:
        """Every run of ``experiment`` (none when it does not exist), oldest first."""
        experiment_id = self.experiment_id(experiment)
        if experiment_id is None:
            return []
        query = f"attributes.start_time >= {since_ms}" if since_ms is not None else ""
        found, token = [], None
        while True:
            body = {"experiment_ids": [experiment_id], "filter": query, "max_results": 1000}
            if token:
                body["page_token"] = token
            answer = httpx.post(f"{self.api}/runs/search", json=body, timeout=30)
            answer.raise_for_status()
            data = answer.json()
            found += [self._run(r) for r in data.get("runs", [])]
            token = data.get("next_page_token")
            if not token:
                break
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    @staticmethod
    def _run(raw: dict) -> SimpleNamespace:
        data = raw.get("data", {})
        pairs = lambda key: {p["key"]: p["value"] for p in data.get(key, [])}  # noqa: E731
        info = raw["info"]
        return SimpleNamespace(
            info=SimpleNamespace(run_id=info["run_id"], start_time=int(info.get("start_time", 0))),
            data=SimpleNamespace(tags=pairs("tags"), params=pairs("params"),
                                 metrics={k: float(v) for k, v in pairs("metrics").items()}),
        )


def runs_in(reader: TrackingReader, experiment: str, *, since_ms: int | None = None) -> list:
    return reader.runs(experiment, since_ms=since_ms)


def describe(runs: Iterable) -> str:
    return "[" + ", ".join(f"run {r.info.run_id[:8]} tags {dict(r.data.tags)}" for r in runs) + "]"


# -- a tracking server the graders can take down ------------------------------------------------


class TrackingProxy:
    """A real HTTP server in front of the MLflow server.

    ``mode``: "up" forwards every request to MLflow, "error" answers 503, "junk" answers 200
    with an HTML page (not MLflow), "hang" accepts the request and never answers (until the
    proxy stops). ``requests`` counts what arrived.
    """

    def __init__(self, upstream: str, mode: str = "up"):
        self.upstream = upstream.rstrip("/")
        self.mode = mode
        self.requests = 0
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> TrackingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.requests += 1
                if proxy.mode == "hang":
                    proxy._release.wait(30)
                    self.close_connection = True
                    return
                if proxy.mode == "error":
                    status, content, kind = 503, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}', "application/json"
                elif proxy.mode == "junk":  # a web server that is not MLflow (a wrong URL)
                    status, content, kind = 200, b"<html><body>Welcome to nginx!</body></html>", "text/html"
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                    answer = httpx.request(self.command, proxy.upstream + self.path, content=body,
                                           headers=headers, timeout=30)
                    status, content = answer.status_code, answer.content
                    kind = answer.headers.get("content-type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TrackingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def now_ms() -> int:
    return int(time.time() * 1000)

"""Graders for AP4.2 — end to end: serving app -> monitor -> Prometheus and MLflow.

The exercise's serving app (with the learner's pipeline.py) runs under real uvicorn, twice:
one copy gets calm traffic, the other calm traffic and then traffic whose feature x moved
by one standard deviation. A real Prometheus scrapes both; the drift metrics are read with
PromQL, the retraining runs are counted with the MLflow client between requests, and the
expected scores are scipy's KS statistics on the very windows sent (conftest.py starts it all).
"""

from __future__ import annotations

import math

import httpx
import pandas as pd
import pytest
from ap4_2_support import (
    PATIENCE,
    WINDOW_SIZE,
    TrackingReader,
    calm_window,
    describe,
    ks,
    runs_in,
    shifted_window,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def client(mlflow_server):
    """The tracking server, read with its REST API (ap4_2_support.TrackingReader)."""
    return TrackingReader(mlflow_server.tracking_uri)


class Traffic:
    """Rows sent to one app, in requests of ``chunk`` rows (so windows fill across requests)."""

    def __init__(self, url: str, windows: list[pd.DataFrame], chunk: int):
        self.url, self.chunk = url, chunk
        self.rows = pd.concat(windows, ignore_index=True)
        self.sent = 0

    def send_until(self, end: int) -> None:
        while self.sent < end:
            part = self.rows.iloc[self.sent:min(self.sent + self.chunk, end)]
            body = [{"request_id": f"r{self.sent + i}", **row} for i, row in enumerate(part.to_dict("records"))]
            answer = httpx.post(f"{self.url}/predict", json=body, timeout=30)
            assert answer.status_code == 200, (
                f"POST /predict with {len(body)} rows should answer 200; got {answer.status_code}: {answer.text[:300]}")
            self.sent += len(part)


def scraped(prometheus, job: str, windows: int) -> dict[str, float]:
    """Wait until Prometheus has scraped the app after its last window; the drift gauges by feature."""
    __tracebackhide__ = True
    seen = prometheus.wait_for(f'model_drift_windows_total{{job="{job}"}} == {windows}', timeout=30)
    got = prometheus.query(f'model_drift_windows_total{{job="{job}"}}')
    assert seen, (
        f"Prometheus should see model_drift_windows_total = {windows} on the app after {windows} windows; "
        f"it sees {[s['value'][1] for s in got] or 'no such series'}")
    return {s["metric"].get("feature"): float(s["value"][1])
            for s in prometheus.query(f'model_drift_score{{job="{job}"}}')}


FEATURES = ("x", "y")


def assert_scores_are_the_last_windows_ks(serving, prometheus, job: str, windows: list) -> dict[str, float]:
    """Once Prometheus has scraped the app after its last window: each feature's
    model_drift_score is scipy's KS statistic of that window against the reference."""
    __tracebackhide__ = True
    gauges = scraped(prometheus, job, len(windows))
    for name in FEATURES:
        expected = ks(serving.reference, windows[-1], name).statistic
        got = gauges.get(name)
        assert got is not None and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12), (
            f"PromQL model_drift_score{{feature=\"{name}\"}} should be the last window's KS statistic "
            f"{expected:.6g} (scipy); got {got}")
    return gauges


def window_counts(prometheus, job: str) -> dict[str, float | None]:
    """The app's drifted-window and retraining-run counters, as Prometheus reads them."""
    return {name: one_value(prometheus, f'{name}{{job="{job}"}}')
            for name in ("model_drifted_windows_total", "model_retraining_runs_total")}


def one_value(prometheus, promql: str) -> float | None:
    found = prometheus.query(promql)
    return float(found[0]["value"][1]) if len(found) == 1 else None


@pytest.mark.points(4)
@pytest.mark.covers("patience", "one-run-per-episode", "metric-score", "metric-runs", "metric-drifted",
                    "registry", "state-across-calls")
def test_shifted_traffic_raises_the_drift_metric_and_starts_exactly_one_run(serving, prometheus, client):
    """Served traffic, x shifted from window 2: no run at window 3, one at window 4, still one after."""
    endpoint = serving.app("shifted")
    job, experiment = serving.job("shifted"), serving.experiment("shifted")
    windows = [calm_window(k, WINDOW_SIZE) if k < 2 else shifted_window(k, WINDOW_SIZE) for k in range(7)]
    traffic = Traffic(endpoint.url, windows, chunk=37)
    first_run_at = 2 + PATIENCE - 1  # windows 2, 3, 4 drift in a row
    traffic.send_until(first_run_at * WINDOW_SIZE)
    runs = runs_in(client, experiment)
    assert runs == [], (
        f"after windows 0-{first_run_at - 1} (x shifted from window 2, patience {PATIENCE}) no retraining run "
        f"should exist yet; got {describe(runs)}")
    traffic.send_until((first_run_at + 1) * WINDOW_SIZE)
    runs = runs_in(client, experiment)
    assert len(runs) == 1 and runs[0].data.tags.get("window") == str(first_run_at), (
        f"the {PATIENCE}rd shifted window in a row (window {first_run_at}) should start exactly one run; "
        f"got {describe(runs)}")
    traffic.send_until(len(windows) * WINDOW_SIZE)
    runs = runs_in(client, experiment)
    assert len(runs) == 1, f"the drift going on (windows 5, 6) should start no second run; got {describe(runs)}"

    assert_scores_are_the_last_windows_ks(serving, prometheus, job, windows)
    high = prometheus.query(f'model_drift_score{{job="{job}"}} > 0.2')
    assert [s["metric"].get("feature") for s in high] == ["x"], (
        f"only x moved: PromQL model_drift_score > 0.2 should return feature x only; got {high}")
    counts = window_counts(prometheus, job)
    assert counts == {"model_drifted_windows_total": 5.0, "model_retraining_runs_total": 1.0}, (
        f"Prometheus should read 5 drifted windows and 1 retraining run; got {counts}")


@pytest.mark.points(3)
@pytest.mark.covers("patience", "metric-score", "metric-windows", "registry")
def test_unshifted_traffic_starts_no_run_and_keeps_the_metric_low(serving, prometheus, client):
    """Served calm traffic: five windows, low drift scores in Prometheus, no retraining run."""
    endpoint = serving.app("calm")
    job, experiment = serving.job("calm"), serving.experiment("calm")
    windows = [calm_window(10 + k, WINDOW_SIZE) for k in range(5)]
    Traffic(endpoint.url, windows, chunk=53).send_until(len(windows) * WINDOW_SIZE)
    runs = runs_in(client, experiment)
    assert runs == [], f"calm traffic should start no retraining run; got {describe(runs)}"
    gauges = assert_scores_are_the_last_windows_ks(serving, prometheus, job, windows)
    assert all(gauges[name] < 0.2 for name in FEATURES), f"calm traffic should keep the drift scores low; got {gauges}"
    counts = window_counts(prometheus, job)
    assert counts == {"model_drifted_windows_total": 0.0, "model_retraining_runs_total": 0.0}, (
        f"calm traffic: Prometheus should read 0 drifted windows and 0 runs; got {counts}")

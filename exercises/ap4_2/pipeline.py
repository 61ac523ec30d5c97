"""AP4.2 — Drift detection in production, with a retraining trigger.

The serving app hands every production input to a ``ProductionDriftMonitor``. The monitor
keeps a sample of them, cuts the sample into windows, compares each window with the data
the model was trained on (the *reference*), exports what it finds as Prometheus metrics,
and starts a retraining run in MLflow when drift persists.

>>> monitor = ProductionDriftMonitor(reference_df, tracking_uri="http://127.0.0.1:5000",
...                                  window_size=500, patience=3)
>>> results = monitor.observe({"age": 41, "income": 52_000.0})   # on every request
>>> [r.index for r in results]            # the windows this call completed (most calls: none)

How the monitor works, step by step (each promise ends with its id; the graders check each):

Rows. ``observe(rows)`` takes a pandas DataFrame, one row as a mapping (a dict), or a
list of mappings [rows-input].
Only the reference's columns are kept: other columns (a request id, a timestamp) are
ignored, and the caller's DataFrame is left as it was [extra-columns].
A row without one of the reference's columns raises ValueError naming that column, and
nothing of that call is kept [missing-column].

Sampling. With ``sample_rate`` below 1 only part of the rows is kept: the monitor draws
one number per row with ``numpy.random.default_rng(seed)`` (one generator, created in
``__init__``, ``.random()`` once per row in arrival order, across calls) and keeps the
row when the number is below ``sample_rate``. With ``sample_rate=1`` every row is
kept [sampling].

Windows. The kept rows fill windows of exactly ``window_size`` rows, in arrival order,
back to back: row 0 to window_size - 1 are window 0, the next window_size rows window 1,
and so on; no row is in two windows and none is skipped [windows].
A window is checked as soon as its last row arrives. Rows of a window that is not full
yet wait for later calls: a partial window is never checked [partial-window].
So one call may complete no window, one, or several, and a window may be filled by many
calls [state-across-calls].

Checking a window. ``detector(reference, window)`` is called once per full window with
the reference exactly as given and the window as a DataFrame with the reference's
columns, in the reference's order, indexed 0 .. window_size - 1 [detector-call].
It returns a mapping from feature name to a result that holds ``score`` (a number) and
``drifted`` (true or false), as keys or attributes [detector-interface].
The default detector is ``ks_detector`` from detector.py (next to this file) [detector-default].
A window has drifted when at least one of its features has drifted [window-drifted].

Metrics, on ``registry`` (names as Prometheus shows them):

* ``model_drift_score{feature}``: a gauge, set after each checked window to that
  window's score, for every feature of the detector's result [metric-score];
* ``model_drift_windows_total``: a counter of the windows checked [metric-windows];
* ``model_drifted_windows_total``: a counter of the windows that drifted [metric-drifted];
* ``model_retraining_runs_total``: a counter of the retraining runs started [metric-runs];
* ``model_retraining_failures_total``: a counter of the attempts to start a run that
  failed [metric-failures].

Retraining. The *streak* is the number of drifted windows in a row; a window that has
not drifted sets it back to 0 [streak].
A retraining run starts at the window where the streak reaches ``patience``, and not
before [patience].
Those drifted windows in a row are one drift *episode*: it starts at most one run, however
long it lasts [one-run-per-episode].
After a window without drift, a new episode that reaches ``patience`` starts a new
run [episode-reset].

The run. It is an MLflow run in the experiment named ``experiment`` on the tracking
server at ``tracking_uri``; the experiment is created when it does not exist [run-experiment].
Its tags: ``trigger`` = ``"drift"``, ``window`` = the index of the window that started it
(as text), ``drifted_features`` = the names of that window's drifted features, sorted and
joined by commas [run-tags].
Its params: ``window_size`` and ``patience`` [run-params].
Its metrics: ``drift_score.<feature>`` = that window's score of each feature [run-metrics].
Its start time is the moment the monitor started it [run-start-time].
(What happens in the run, the training itself, is the retraining pipeline's job: AP2.1's,
for example. Its status is not graded.)

When the tracking server fails. Serving must go on: when the run cannot be started
(nobody answers at ``tracking_uri``, the server answers with an error, or with something
that is not an MLflow answer), ``observe`` does not raise, and the failed attempt is
counted [tracking-down].
The episode then has no run yet, so the next drifted window of the same episode tries
again [retry].
Each request to the tracking server waits at most ``timeout`` seconds for its answer, so
a server that accepts the connection and never answers cannot hold serving up [timeout].
Creating the monitor does not contact the tracking server (the app must start while it
is down) [init-offline].

Tip: ``mlflow.MlflowClient`` retries a failing request for minutes by default. Either call
the tracking server's REST API with httpx and a timeout (``POST
{tracking_uri}/api/2.0/mlflow/runs/create`` and friends), or turn those retries off
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd
from detector import ks_detector
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

log = logging.getLogger("ap4_2.pipeline")

Detector = Callable[[pd.DataFrame, pd.DataFrame], Mapping[str, Any]]


@dataclass
class WindowResult:
    """What the monitor found in one full window."""

    index: int  # 0 for the monitor's first window, 1 for the next, ... [result-index]
    drifted: bool  # at least one feature drifted [result-drifted]
    drifted_features: list[str]  # the drifted features' names, sorted [result-features]
    scores: dict[str, float] = field(default_factory=dict)  # feature -> the detector's score [result-scores]
    run_id: str | None = None  # the MLflow run this window started, else None [result-run-id]


class ProductionDriftMonitor:
    """Windows of production inputs, drift metrics, and a retraining trigger."""

    def __init__(
        self,
        reference: pd.DataFrame,
        *,
        tracking_uri: str,
        experiment: str = "drift-retraining",
        window_size: int = 500,
        patience: int = 3,
        detector: Detector | None = None,
        sample_rate: float = 1.0,
        seed: int = 0,
        registry: CollectorRegistry | None = None,
        timeout: float = 5.0,
    ):
        """Keep the reference and the settings; register the metrics.

        ``reference``: the training data; its columns are the monitored features.
        Raises TypeError when it is not a pandas DataFrame, ValueError when it has no rows
        or no columns [reference-invalid].
        ``tracking_uri``: the MLflow tracking server's URL (``http://host:port``).
        The defaults: ``experiment="drift-retraining"``, ``window_size=500``, ``patience=3``,
        ``sample_rate=1.0``, ``seed=0``, ``timeout=5.0`` seconds [defaults].
        Raises ValueError naming the parameter when ``window_size`` or ``patience`` is below 1,
        or ``sample_rate`` is not above 0 and at most 1 [settings-invalid].
        ``registry``: the prometheus_client CollectorRegistry the metrics are registered on;
        by default a new one of the monitor's own, so that two monitors in one process do
        not clash. It is available as ``monitor.registry`` [registry].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def observe(self, rows: pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[WindowResult]:
        """Take production inputs; check every window they complete.

        Returns one WindowResult per window completed by this call, in order; an empty list
        when none was [observe-returns].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def metrics_text(self) -> str:
        """The metrics of ``registry`` in Prometheus' text format, as ``GET /metrics`` shows them (provided)."""
        return generate_latest(self.registry).decode("utf-8")


# YOUR CODE HERE

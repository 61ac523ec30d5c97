"""AP3.2 — Compare deployment strategies: REST, serverless, batch.

A harness that serves the same model three ways, measures each from real runs,
prices each with a simple cost model, and writes a comparison table and a plot.

* REST: a web service under uvicorn (for example ``uvicorn rest_app:app``), called over HTTP.
* Serverless: the Lambda-style ``handler(event, context)`` of ``handler.py``, called with
  API Gateway HTTP API (v2.0) events.
* Batch: a job that reads a CSV file of rows and writes a CSV file of predictions.

A result (the dict every ``measure_*`` returns) holds [summary-fields]:

* ``strategy``: "rest", "serverless" or "batch"
* ``count``: how many predictions were made
* ``elapsed_s``: the wall time of the whole run, in seconds (``time.perf_counter``)
* ``throughput_per_s``: ``count / elapsed_s`` [throughput]
* ``latencies_ms``: the raw latencies, in milliseconds, in the order they were measured
* ``mean_ms``, ``p50_ms``, ``p95_ms``, ``p99_ms``: the mean and the percentiles of
  ``latencies_ms``, as ``numpy.percentile`` computes them (linear interpolation) [percentiles]
* ``cold_start_ms``: the latency of the cold start (serverless only; None otherwise)
* ``predictions``: the predictions, in the order of the rows
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd

STRATEGIES = ("rest", "serverless", "batch")
TABLE_COLUMNS = ["strategy", "count", "elapsed_s", "throughput_per_s", "mean_ms", "p50_ms",
                 "p95_ms", "p99_ms", "cold_start_ms", "monthly_usd", "per_1000_usd"]


@dataclass(frozen=True)
class CostAssumptions:
    """The prices of the cost model (on-demand list prices of a large cloud, in USD).

    instance_usd_per_hour: one always-on VM serving REST (2 vCPU, 4 GiB)
    hours_per_month: hours a month (365 * 24 / 12)
    request_usd: serverless price of one invocation (0.20 USD per million)
    gb_second_usd: serverless price of one GB-second of run time
    memory_gb: memory given to the serverless function
    batch_usd_per_hour: the VM running the batch job, billed only while it runs
    """

    instance_usd_per_hour: float = 0.0416
    hours_per_month: float = 730.0
    request_usd: float = 0.20 / 1_000_000
    gb_second_usd: float = 0.0000166667
    memory_gb: float = 0.5
    batch_usd_per_hour: float = 0.0416


class LambdaContext:
    """The context object a Lambda handler gets (the fields handlers commonly read)."""

    def __init__(self, memory_mb: int = 512, timeout_s: float = 30.0):
        self.function_name = "ap3-2-predict"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def api_gateway_event(method: str, path: str, body: str | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API event, payload format version 2.0."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "api.example.test"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "ap32", "domainName": "api.example.test",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "ap3_2-harness"},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def summarize(strategy: str, latencies_ms: list[float], elapsed_s: float, count: int,
              predictions: list[Any], *, cold_start_ms: float | None = None) -> dict[str, Any]:
    """A result dict (see the module docstring) from raw measurements.

    The mean and percentiles are those of ``latencies_ms``.
    Raises ValueError when ``latencies_ms`` is empty or ``elapsed_s`` is not positive [summary-errors].
    """
    raise NotImplementedError("YOUR CODE HERE")


def measure_rest(url: str, rows: list[list[float]], *, timeout: float = 10.0) -> dict[str, Any]:
    """Send each row, one after the other, to ``POST {url}/predict`` as ``{"features": row}``.

    The server gets exactly ``len(rows)`` requests: no warm-up, no retry [rest-count].
    Each latency is the time of one request and its answer; ``elapsed_s`` is the time of the
    whole loop [rest-latency]. ``predictions`` are the answers' ``prediction`` fields, in order
    [rest-predictions]. An answer other than 200 raises RuntimeError naming the status [rest-error].
    """
    raise NotImplementedError("YOUR CODE HERE")


def measure_serverless(handler_path: str | Path, rows: list[list[float]], model_path: str | Path
                       ) -> dict[str, Any]:
    """Invoke ``handler(event, context)`` of the file ``handler_path`` once per row.

    The file is imported afresh on every call (a new module object, as a new Lambda container
    would), so its first invocation is a cold start [fresh-module]. During the run the
    environment variable ``MODEL_PATH`` is ``model_path``; afterwards it is what it was [model-env].
    Each event is an API Gateway v2.0 event for ``POST /predict`` whose body is the JSON
    ``{"features": row}`` (see ``api_gateway_event``) [event-format]. The handler is invoked
    exactly ``len(rows)`` times [serverless-count]. ``cold_start_ms`` is the latency of the first
    invocation [cold-start]; ``latencies_ms`` (and the mean and percentiles) hold the others,
    the warm ones, only [warm-latencies]; ``count`` is ``len(rows)`` and ``elapsed_s`` covers
    every invocation. A status code other than 200 raises RuntimeError [serverless-error].
    Raises ValueError when there are fewer than 2 rows (one cold, at least one warm) [serverless-min-rows].
    """
    raise NotImplementedError("YOUR CODE HERE")


def measure_batch(model_path: str | Path, input_csv: str | Path, output_csv: str | Path,
                  *, batch_size: int = 1000) -> dict[str, Any]:
    """Predict every row of ``input_csv`` (a header, then one feature per column) into ``output_csv``.

    The input is read ``batch_size`` rows at a time; each latency is the time of one batch
    (read, predict, write), so there are ceil(rows / batch_size) of them [batch-chunks].
    ``elapsed_s`` covers the whole job, loading the model included [batch-elapsed].
    ``output_csv`` has a header and one column ``prediction``: one line per input row, in order;
    a file already there is replaced [batch-output]. ``count`` is the number of rows predicted [batch-count].
    """
    raise NotImplementedError("YOUR CODE HERE")


def estimate_costs(results: list[dict[str, Any]], assumptions: CostAssumptions = CostAssumptions(),
                   *, monthly_predictions: int = 1_000_000) -> dict[str, dict[str, float]]:
    """The monthly cost of ``monthly_predictions`` predictions with each measured strategy.

    Returns ``{strategy: {"monthly_usd": ..., "per_1000_usd": ...}}``, one entry per result [cost-keys].

    * rest: always-on instances, each serving ``throughput_per_s`` predictions a second;
      instances = max(1, ceil(needed_per_s / throughput_per_s)), where needed_per_s =
      monthly_predictions / (hours_per_month * 3600); monthly = instances *
      instance_usd_per_hour * hours_per_month [cost-rest]
    * serverless: every invocation pays request_usd plus memory_gb * gb_second_usd per second
      it runs, taken as the warm ``mean_ms``: monthly = monthly_predictions * (request_usd +
      memory_gb * gb_second_usd * mean_ms / 1000) [cost-serverless]
    * batch: the batch VM runs only for monthly_predictions / throughput_per_s seconds:
      monthly = that / 3600 * batch_usd_per_hour [cost-batch]
    * per_1000_usd = monthly_usd / monthly_predictions * 1000 [cost-per-1000]

    Raises ValueError for a strategy other than "rest", "serverless" or "batch" [cost-unknown].
    """
    raise NotImplementedError("YOUR CODE HERE")


def comparison_table(results: list[dict[str, Any]], costs: dict[str, dict[str, float]]
                     ) -> list[dict[str, Any]]:
    """One row per result, in order, with the columns of TABLE_COLUMNS [table-rows]."""
    raise NotImplementedError("YOUR CODE HERE")


def plot_comparison(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Provided: a PNG of the p50/p95/p99 latency and the cost per 1,000 predictions of each row.

    Drawn on a bare matplotlib Figure with the Agg canvas, so no window opens and the global
    pyplot backend is left alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    latency_axes, cost_axes = figure.subplots(1, 2)
    names = [r["strategy"] for r in rows]
    x = np.arange(len(rows))
    for i, column in enumerate(["p50_ms", "p95_ms", "p99_ms"]):
        latency_axes.bar(x + (i - 1) * 0.25, [r[column] for r in rows], 0.25, label=column)
    latency_axes.set_xticks(x, names)
    latency_axes.set_ylabel("latency (ms)")
    latency_axes.set_yscale("log")
    latency_axes.legend()
    cost_axes.bar(names, [r["per_1000_usd"] for r in rows])
    cost_axes.set_ylabel("USD per 1,000 predictions")
    figure.tight_layout()
    figure.savefig(path, format="png")


def write_report(results: list[dict[str, Any]], costs: dict[str, dict[str, float]],
                 out_dir: str | Path) -> dict[str, Path]:
    """Write the comparison into ``out_dir`` (created when missing) and return the four paths.

    * ``comparison.json``: ``{"rows": comparison_table(...), "latencies_ms": {strategy: raw
      latencies}}`` [report-json]
    * ``comparison.csv``: a header of TABLE_COLUMNS, then one line per row [report-csv]
    * ``comparison.md``: a Markdown pipe table: the header of TABLE_COLUMNS, the ``|---|`` line,
      one line per row [report-markdown]
    * ``comparison.png``: a plot of the p50/p95/p99 latency and the cost per 1,000 predictions
      of each strategy, drawn with matplotlib's Agg backend (no window); ``plot_comparison``
      (provided) draws it [report-plot]

    Returns ``{"json": path, "csv": path, "markdown": path, "plot": path}``.
    """
    raise NotImplementedError("YOUR CODE HERE")


def run_comparison(model_path: str | Path, rows: list[list[float]], *, rest_url: str,
                   handler_path: str | Path, out_dir: str | Path, batch_size: int = 1000,
                   assumptions: CostAssumptions = CostAssumptions(),
                   monthly_predictions: int = 1_000_000) -> list[dict[str, Any]]:
    """Measure the same rows with REST, serverless and batch (in that order), price them, write the report.

    The batch job reads ``out_dir/batch_input.csv`` (the rows, with a header ``x0, x1, ...``)
    and writes ``out_dir/batch_predictions.csv``. Returns ``comparison_table`` of the three
    results, whose rows are the ones of the report files [run-all].
    """
    raise NotImplementedError("YOUR CODE HERE")

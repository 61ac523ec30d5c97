"""CE4.1 — Instrument model serving with Prometheus metrics.

``serving.py`` (next to this file, provided) is a small FastAPI model service. It creates
one ``ServingMetrics``, calls ``record_prediction`` for every prediction it makes, and
calls ``instrument(app, metrics)`` once. You write those three pieces with
``prometheus_client``; Prometheus scrapes ``GET /metrics`` and answers PromQL about them.

The metrics (names, types and labels are what AP4.1's dashboards and alerts read):

* ``http_requests_total`` is a counter of HTTP requests with the labels ``endpoint`` and ``status`` [requests-total].
  ``status`` is the status class of the answer, ``"2xx"``, ``"4xx"``, ``"5xx"`` (see ``status_class``) [status-label].
  ``endpoint`` is the route template that matched, ``/users/{user_id}/predict``, never the
  path itself, so a request carrying a new user id never creates a new series; a path that
  matches a route but not its method (answered 405) counts under that route's template too [endpoint-template].
  A path that no route matches is counted under the one endpoint value ``OTHER_ENDPOINT`` [unknown-path].
* ``http_request_duration_seconds`` is a histogram of request durations in seconds, label ``endpoint`` [latency-histogram].
  Its buckets resolve the 100 ms latency objective: 0.1 is a bucket bound, and so are at least
  one value in [0.05, 0.1) and one in (0.1, 0.2]; every bound is positive [latency-buckets].
  A duration runs from the request's arrival until the last byte of the answer's body is
  sent, so a streamed body is timed to its end [latency-whole-response].
  Every request is timed, failed ones included [latency-all-requests].
* ``http_requests_in_flight`` is a gauge (no labels) of the requests being handled right now;
  it goes back down when a request ends, however it ends [in-flight].
* ``model_prediction_confidence`` is a histogram (no labels) of the confidence of each
  prediction, observed once per prediction; not a gauge of the last value, which loses all
  but one prediction per scrape [confidence-histogram].
  Its buckets are at least 5 bounds, all within (0, 1] [confidence-buckets].
* ``model_predictions_total`` is a counter of predictions with the label ``class``: the
  predicted class label as text, ``str(label)`` ("cat", "3"), not its index [predictions-by-class].
* ``model_info`` is a gauge with the labels ``name`` and ``version`` of the served model, set to 1 [model-info].

Good habits the graders check:

* Every series a dashboard or alert needs exists at 0 before the first request, so that
  ``rate()`` and ``increase()`` count the first requests too: ``model_predictions_total`` for
  each class given to ``ServingMetrics`` [classes-at-zero], and, once ``instrument`` has run,
  ``http_requests_total`` for every route template of the app with each of "2xx", "4xx" and "5xx" [routes-at-zero].
  (Whether the scrapes of ``/metrics`` itself are counted, and its series made at 0, is yours to choose.)
* Metrics live on their own registry, never on prometheus_client's global default one,
  so two apps (or two tests) in one process do not collide [own-registry].
* Serving never waits for Prometheus: metrics are kept in the process (or the multiprocess
  folder) until something scrapes ``/metrics``; nothing is pushed anywhere [no-push].

Several worker processes (``uvicorn --workers 2``, gunicorn): each process has its own
memory, and a scrape reaches one of them. prometheus_client's multiprocess mode is on when
the environment variable ``PROMETHEUS_MULTIPROC_DIR`` names an empty folder before the
processes start: every process then writes its values to files there, and ``exposition``
reads them all with ``prometheus_client.multiprocess.MultiProcessCollector`` on a new
``CollectorRegistry`` made for that scrape (not the registry the metrics are defined on,
which would list this process's values a second time), so counts total every worker's
requests exactly [multiprocess-exposition].
Gauges need a ``multiprocess_mode`` there: ``"livesum"`` for the requests in flight (the sum over
the live processes) and ``"max"`` (or ``"mostrecent"``) for ``model_info``, so each is one
series without a ``pid`` label [multiprocess-gauges]. (``Info`` metrics do not work in
multiprocess mode: use a gauge.) The folder must be emptied before the server starts; a
gunicorn server also calls ``multiprocess.mark_process_dead(pid)`` in its ``child_exit`` hook.

Docs: https://prometheus.github.io/client_python/ (instrumenting, multiprocess mode),
https://prometheus.io/docs/practices/naming/ and https://prometheus.io/docs/practices/histograms/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

#: The ``endpoint`` label of requests to a path that no route of the app matches.
OTHER_ENDPOINT = "other"
#: The status classes every route's request counter starts with, at 0.
STATUS_CLASSES = ("2xx", "4xx", "5xx")


def status_class(status_code: int) -> str:
    """The class of an HTTP status code: 200 and 204 are "2xx", 404 is "4xx", 503 is "5xx" [status-class].

    Every code from 100 to 599 belongs to the class of its hundreds digit ("1xx" … "5xx").
    """
    raise NotImplementedError("YOUR CODE HERE")


class ServingMetrics:
    """The metrics of one model service, defined on one registry.

    >>> metrics = ServingMetrics(model_name="churn", model_version="3", classes=["no", "yes"])
    >>> metrics.record_prediction("yes", 0.83)
    >>> body, content_type = metrics.exposition()
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        model_name: str,
        model_version: str,
        classes: Iterable[Any] = (),
    ):
        """Define every metric of the module docstring on ``registry``.

        ``registry`` defaults to a new ``CollectorRegistry`` of this instance's own, so two
        instances never share (or collide on) a metric [registry-default].
        ``model_name`` and ``model_version`` are the labels of ``model_info``; ``classes`` the
        class labels the model can predict (each gets its ``model_predictions_total`` series at 0).
        Keep the registry in ``self.registry``.
        """
        raise NotImplementedError("YOUR CODE HERE")

    def record_prediction(self, predicted_class: Any, confidence: float) -> None:
        """Count one prediction of ``predicted_class`` and observe its ``confidence`` (0 to 1).

        Accepts numpy scalars as well as Python values: ``np.int64(3)`` is the class "3" and
        ``np.float64(0.8)`` the confidence 0.8 [numpy-values].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def exposition(self) -> tuple[bytes, str]:
        """The text Prometheus scrapes, and its content type: ``(body, content_type)``.

        The body passes ``promtool check metrics`` (a HELP text for each metric, each series
        listed once) [exposition-valid]. See the module docstring for multiprocess mode.
        """
        raise NotImplementedError("YOUR CODE HERE")


class MetricsMiddleware:
    """Pure ASGI middleware: counts, times and tracks every HTTP request of the app it wraps.

    ``app`` is the next ASGI app, ``metrics`` the ``ServingMetrics`` to record into and
    ``routes`` the app's routes (``app.routes``), to find each request's route template.
    Scopes that are not HTTP (lifespan, websocket) pass through untouched.

    A handler that raises is counted with the status class "5xx" and timed, and the
    exception goes on to the framework unchanged, which answers 500 [exception-5xx]. That holds
    for a streamed body that fails part-way too, after its 200 status line went out: the
    request failed, so it is "5xx" (a ``BaseHTTPMiddleware`` cannot see that; hence pure ASGI).
    """

    def __init__(self, app, metrics: ServingMetrics, routes):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def endpoint(self, scope) -> str:
        """The route template of the route matching this request, or ``OTHER_ENDPOINT``."""
        raise NotImplementedError("YOUR CODE HERE")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raise NotImplementedError("YOUR CODE HERE")


def instrument(app, metrics: ServingMetrics) -> None:
    """Instrument a Starlette application (a FastAPI app is one) with ``metrics``.

    Adds ``MetricsMiddleware`` around the app, adds the route ``GET /metrics`` answering
    ``metrics.exposition()`` with its content type [metrics-route], and creates the
    request counter's series of every route at 0 (see the module docstring).
    Call it once, after the routes are defined and before the app serves.
    """
    raise NotImplementedError("YOUR CODE HERE")

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
    ### BEGIN SOLUTION
    return f"{int(status_code) // 100}xx"
    ### END SOLUTION


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
        ### BEGIN SOLUTION
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests by route template and status class",
            ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request duration in seconds, until the body is sent",
            ["endpoint"], registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.5, 1.0, 2.5))
        self.in_flight = Gauge(
            "http_requests_in_flight", "HTTP requests being handled now",
            registry=self.registry, multiprocess_mode="livesum")
        self.confidence = Histogram(
            "model_prediction_confidence", "probability of the predicted class, one observation a prediction",
            registry=self.registry, buckets=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0))
        self.predictions = Counter(
            "model_predictions_total", "predictions by predicted class", ["class"], registry=self.registry)
        self.model_info = Gauge(
            "model_info", "the served model: name and version", ["name", "version"],
            registry=self.registry, multiprocess_mode="max")
        self.model_info.labels(model_name, model_version).set(1)
        for label in classes:
            self.predictions.labels(str(label))
        ### END SOLUTION

    def record_prediction(self, predicted_class: Any, confidence: float) -> None:
        """Count one prediction of ``predicted_class`` and observe its ``confidence`` (0 to 1).

        Accepts numpy scalars as well as Python values: ``np.int64(3)`` is the class "3" and
        ``np.float64(0.8)`` the confidence 0.8 [numpy-values].
        """
        ### BEGIN SOLUTION
        self.predictions.labels(str(predicted_class)).inc()
        self.confidence.observe(float(confidence))
        ### END SOLUTION

    def exposition(self) -> tuple[bytes, str]:
        """The text Prometheus scrapes, and its content type: ``(body, content_type)``.

        The body passes ``promtool check metrics`` (a HELP text for each metric, each series
        listed once) [exposition-valid]. See the module docstring for multiprocess mode.
        """
        ### BEGIN SOLUTION
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
        ### END SOLUTION


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
        ### BEGIN SOLUTION
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return route.path
        return OTHER_ENDPOINT
        ### END SOLUTION

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ### BEGIN SOLUTION
        endpoint = self.endpoint(scope)
        status = 500  # what the framework answers when the handler raises
        started = time.perf_counter()
        self.metrics.in_flight.inc()

        async def send_and_watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException:
            status = 500
            raise
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, status_class(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        ### END SOLUTION


def instrument(app, metrics: ServingMetrics) -> None:
    """Instrument a Starlette application (a FastAPI app is one) with ``metrics``.

    Adds ``MetricsMiddleware`` around the app, adds the route ``GET /metrics`` answering
    ``metrics.exposition()`` with its content type [metrics-route], and creates the
    request counter's series of every route at 0 (see the module docstring).
    Call it once, after the routes are defined and before the app serves.
    """
    ### BEGIN SOLUTION
    async def serve_metrics(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    app.add_route("/metrics", serve_metrics, methods=["GET"], include_in_schema=False)
    for route in app.routes:
        if hasattr(route, "methods"):
            for status in STATUS_CLASSES:
                metrics.requests.labels(route.path, status)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.routes)
    ### END SOLUTION

"""The graders' small model-serving app, instrumented with CE4.1's metric names.

Served under real uvicorn by the AP4.1 graders and scraped by a real Prometheus.
``POST /control`` switches it: ``{"slow": 0.3}`` sleeps that many seconds per
prediction, ``{"fail": true}`` answers every prediction with a 500, ``{"drift": 0.35}``
sets the drift score of feature "age". Everything is deterministic: the n-th
prediction's class and confidence depend on n only.
"""

from __future__ import annotations

import asyncio

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

registry = CollectorRegistry()
REQUESTS = Counter("http_requests_total", "HTTP requests by endpoint and status class",
                   ["endpoint", "status"], registry=registry)
LATENCY = Histogram("http_request_duration_seconds", "request latency", ["endpoint"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=registry)
CONFIDENCE = Histogram("model_prediction_confidence", "probability of the predicted class",
                       buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=registry)
PREDICTIONS = Counter("model_predictions_total", "predictions by class", ["class"], registry=registry)
DRIFT = Gauge("model_drift_score", "drift score (PSI) by feature", ["feature"], registry=registry)

# Every series exists from the first scrape (at 0), so rate() sees the first requests.
for status in ("2xx", "4xx", "5xx"):
    REQUESTS.labels("/predict", status)
LATENCY.labels("/predict")
for cls in ("0", "1"):
    PREDICTIONS.labels(cls)
for feature in ("age", "income"):
    DRIFT.labels(feature).set(0.0)

state = {"slow": 0.0, "fail": False, "served": 0}


async def predict(request: Request) -> Response:
    loop = asyncio.get_running_loop()
    start = loop.time()
    if state["slow"]:
        await asyncio.sleep(state["slow"])
    n = state["served"]
    state["served"] += 1
    if state["fail"]:
        status, response = "5xx", JSONResponse({"error": "model unavailable"}, status_code=500)
    elif request.query_params.get("bad"):
        status, response = "4xx", JSONResponse({"error": "bad input"}, status_code=422)
    else:
        cls, confidence = str(n % 2), 0.55 + 0.1 * (n % 4)
        PREDICTIONS.labels(cls).inc()
        CONFIDENCE.observe(confidence)
        status, response = "2xx", JSONResponse({"class": cls, "confidence": confidence})
    REQUESTS.labels("/predict", status).inc()
    LATENCY.labels("/predict").observe(loop.time() - start)
    return response


async def control(request: Request) -> Response:
    body = await request.json()
    if "slow" in body:
        state["slow"] = float(body["slow"])
    if "fail" in body:
        state["fail"] = bool(body["fail"])
    if "drift" in body:
        DRIFT.labels("age").set(float(body["drift"]))
    return JSONResponse({k: v for k, v in state.items()})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


app = Starlette(routes=[
    Route("/predict", predict, methods=["POST"]),
    Route("/control", control, methods=["POST"]),
    Route("/health", health),
    Route("/metrics", metrics),
])

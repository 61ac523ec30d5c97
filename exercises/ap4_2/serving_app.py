"""AP4.2 — the serving app that feeds production inputs to your monitor (provided; not graded by itself).

Serve it from this folder with uvicorn::

    AP4_2_REFERENCE=reference.parquet MLFLOW_TRACKING_URI=http://127.0.0.1:5000 \\
        uvicorn serving_app:app --port 8000

``POST /predict`` takes one input row as a JSON object (``{"age": 41, "income": 52000}``)
or a list of them, hands them to the monitor, and answers ``{"predictions": [...]}``.
``GET /metrics`` is what Prometheus scrapes: the monitor's metrics and the app's own.
``GET /health`` answers ``{"status": "ok"}``.

Settings (environment variables): ``AP4_2_REFERENCE`` the training data (.parquet or .csv),
``MLFLOW_TRACKING_URI``, and optionally ``AP4_2_EXPERIMENT``, ``AP4_2_WINDOW_SIZE``,
``AP4_2_PATIENCE``, ``AP4_2_SAMPLE_RATE``, ``AP4_2_SEED``; unset ones keep the monitor's
defaults. The monitor is built when the app starts, not at import.

The "model" is a stand-in (the sign of the sum of the inputs): this app is about watching
the inputs, not about the predictions.
"""

from __future__ import annotations

import contextlib
import os

import pandas as pd
from pipeline import ProductionDriftMonitor
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SETTINGS = {  # environment variable -> (monitor argument, type)
    "AP4_2_EXPERIMENT": ("experiment", str),
    "AP4_2_WINDOW_SIZE": ("window_size", int),
    "AP4_2_PATIENCE": ("patience", int),
    "AP4_2_SAMPLE_RATE": ("sample_rate", float),
    "AP4_2_SEED": ("seed", int),
}

state: dict = {}


def read_reference(path: str) -> pd.DataFrame:
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def build_monitor(reference: pd.DataFrame, registry: CollectorRegistry) -> ProductionDriftMonitor:
    options = {argument: kind(os.environ[name]) for name, (argument, kind) in SETTINGS.items()
               if os.environ.get(name)}
    return ProductionDriftMonitor(
        reference,
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        registry=registry,
        **options,
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    registry = CollectorRegistry()
    state["registry"] = registry
    state["predictions"] = Counter("model_predictions_total", "predictions by class", ["class"],
                                   registry=registry)
    reference = read_reference(os.environ["AP4_2_REFERENCE"])
    state["features"] = [str(name) for name in reference.columns]
    state["monitor"] = build_monitor(reference, registry)
    yield
    state.clear()


async def predict(request: Request) -> Response:
    body = await request.json()
    rows = body if isinstance(body, list) else [body]
    if not all(isinstance(row, dict) for row in rows):
        return JSONResponse({"error": "send a JSON object, or a list of them"}, status_code=422)
    monitor: ProductionDriftMonitor = state["monitor"]
    try:
        # Called on the event loop, one request at a time: the monitor's windows need no lock.
        monitor.observe(rows)
    except ValueError as exc:  # a row without a feature the model needs
        return JSONResponse({"error": str(exc)}, status_code=422)
    predictions = []
    for row in rows:
        label = int(sum(float(row[name]) for name in state["features"]) > 0)
        state["predictions"].labels(str(label)).inc()
        predictions.append(label)
    return JSONResponse({"predictions": predictions})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(state["registry"]), media_type=CONTENT_TYPE_LATEST)


app = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health),
        Route("/metrics", metrics),
    ],
    lifespan=lifespan,
)

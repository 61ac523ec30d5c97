"""CE4.1 — the model service to instrument (provided: you do not need to change it).

A small FastAPI service in the spirit of CE3.1, with the parts that matter here: it
loads a classifier, creates one ``ServingMetrics`` from your ``metrics.py``, records every
prediction, and calls ``instrument(app, METRICS)`` once its routes exist.

Serve it from this folder (``MODEL_PATH`` is a model saved with ``joblib.dump``)::

    MODEL_PATH=model.joblib uvicorn serving:app --port 8000
    PROMETHEUS_MULTIPROC_DIR=/tmp/prom MODEL_PATH=model.joblib uvicorn serving:app --workers 2

Routes:

* ``POST /predict`` with ``{"features": [x1, ..., xn]}`` answers
  ``{"prediction": label, "confidence": c}``: the class with the highest ``predict_proba``
  and that probability. A body that is not a list of numbers, or has the wrong number of
  features, is refused with 422. An error of the model is not caught: the framework answers 500.
* ``POST /users/{user_id}/predict``: the same, for one user (a path with an id in it).
* ``GET /health`` answers ``{"status": "ok", "worker": pid}``: which worker process answered.
* ``GET /metrics``: what Prometheus scrapes (added by your ``instrument``).

Settings: ``MODEL_PATH`` (default ``model.joblib``), ``MODEL_NAME`` (default ``model``),
``MODEL_VERSION`` (default ``0``).
"""

from __future__ import annotations

import os

import joblib
import numpy as np
from fastapi import FastAPI, HTTPException
from metrics import ServingMetrics, instrument
from pydantic import BaseModel

MODEL = joblib.load(os.environ.get("MODEL_PATH", "model.joblib"))
METRICS = ServingMetrics(
    model_name=os.environ.get("MODEL_NAME", "model"),
    model_version=os.environ.get("MODEL_VERSION", "0"),
    classes=MODEL.classes_,
)

app = FastAPI(title="CE4.1 model service")


class PredictRequest(BaseModel):
    features: list[float]


def predict_one(features: list[float]) -> dict:
    if len(features) != MODEL.n_features_in_:
        raise HTTPException(422, f"expected {MODEL.n_features_in_} features, got {len(features)}")
    proba = MODEL.predict_proba(np.asarray([features], dtype=float))[0]
    best = int(np.argmax(proba))
    label, confidence = MODEL.classes_[best], float(proba[best])
    METRICS.record_prediction(label, confidence)
    return {"prediction": label.item() if isinstance(label, np.generic) else label, "confidence": confidence}


@app.post("/predict")
def predict(request: PredictRequest) -> dict:
    return predict_one(request.features)


@app.post("/users/{user_id}/predict")
def predict_for_user(user_id: str, request: PredictRequest) -> dict:
    return {"user_id": user_id, **predict_one(request.features)}


@app.get("/health")
def health() -> dict:
    return {"status": "ok", "worker": os.getpid()}


instrument(app, METRICS)

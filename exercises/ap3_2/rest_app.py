"""AP3.2 — a minimal REST service for the comparison (provided; not graded).

Serve it with ``MODEL_PATH=model.joblib uvicorn rest_app:app --port 8000`` from this folder.
``POST /predict`` takes ``{"features": [x1, ..., xn]}`` and answers
``{"prediction": p, "probabilities": [...]}``; ``GET /health`` answers ``{"status": "ok"}``.
CE3.1 builds the full service (validation, auth, rate limits); this one is the bare path.
"""

from __future__ import annotations

import os
from functools import lru_cache

import joblib
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="AP3.2 REST")


class PredictRequest(BaseModel):
    features: list[float]


@lru_cache(maxsize=1)
def model():
    return joblib.load(os.environ["MODEL_PATH"])


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest) -> dict:
    m = model()
    return {"prediction": m.predict([request.features])[0].item(),
            "probabilities": m.predict_proba([request.features])[0].tolist()}

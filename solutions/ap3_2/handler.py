"""AP3.2 — A serverless handler for a scikit-learn model.

``handler(event, context)`` is a Lambda-style function behind an API Gateway
HTTP API (the Lambda proxy integration, payload format version 2.0). It gets
one HTTP request as an event dict and returns one HTTP response as a dict.

The event fields it reads (every other field is there too, and ignored):

* ``requestContext["http"]["method"]``: "GET", "POST", ...
* ``rawPath``: the path, such as "/predict"
* ``body``: the request body as a string, or absent when there is none
* ``isBase64Encoded``: when true, ``body`` is the base64 of the real body [base64-body]

What it answers:

* ``POST /predict`` with the JSON body ``{"features": [x1, ..., xn]}`` answers 200 and
  ``{"prediction": p, "probabilities": [q1, ..., qk]}``, where ``p`` is the model's own
  ``predict`` of that one row (a class label, not an index) and ``q`` its ``predict_proba`` row,
  as plain JSON numbers [predict-response].
* ``GET /health`` answers 200 and ``{"status": "ok"}``, without loading the model [health].
* Any other path answers 404 [unknown-route].
* ``/predict`` or ``/health`` with another method answers 405, with an ``Allow`` header
  naming the method the path accepts [wrong-method].
* A body that is not valid JSON (or not valid base64) answers 400 [malformed-json].
* A JSON body that is not an object with a ``features`` list of exactly
  ``model.n_features_in_`` finite numbers answers 422; booleans, strings, null and nested
  lists are not numbers [invalid-features]. Bad input never gets a 5xx.

Every answer is a dict with an int ``statusCode``, ``headers`` holding
``"content-type": "application/json"`` and a ``body`` that is a JSON string [response-format].
An error's body is ``{"error": "<one sentence>"}`` [error-body].

Cold and warm starts: importing this module does no work. The model is loaded with
``joblib.load`` from the file named by the ``MODEL_PATH`` environment variable at the
first invocation that needs it (the cold start) [lazy-load], and kept for every later
invocation (warm starts), which never read the file again [warm-reuse]. When the model
cannot be loaded, ``/predict`` answers 503 with an error body, and the next invocation
tries again [model-unavailable]. ``reset()`` forgets the model, so the next invocation
is a cold start again [reset].
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from typing import Any

import joblib

_model: Any = None

ROUTES = {"/predict": "POST", "/health": "GET"}


def reset() -> None:
    """Forget the loaded model: the next invocation is a cold start."""
    ### BEGIN SOLUTION
    global _model
    _model = None
    ### END SOLUTION


def respond(status: int, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway v2 response: status code, JSON headers and a JSON string body."""
    ### BEGIN SOLUTION
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(payload),
        "isBase64Encoded": False,
    }
    ### END SOLUTION


def get_model() -> Any:
    """The model, loaded from MODEL_PATH on first use and kept afterwards."""
    ### BEGIN SOLUTION
    global _model
    if _model is None:
        _model = joblib.load(os.environ["MODEL_PATH"])
    return _model
    ### END SOLUTION


def parse_features(body: Any, n_features: int) -> list[float] | str:
    """The feature list of a parsed JSON body, or a sentence saying what is wrong with it."""
    ### BEGIN SOLUTION
    if not isinstance(body, dict) or not isinstance(body.get("features"), list):
        return "the body should be a JSON object with a 'features' list"
    features = body["features"]
    if len(features) != n_features:
        return f"'features' should hold {n_features} numbers; got {len(features)}"
    for value in features:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"every feature should be a finite number; got {value!r}"
    return [float(v) for v in features]
    ### END SOLUTION


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Answer one API Gateway HTTP API (v2.0) event; see the module docstring."""
    ### BEGIN SOLUTION
    method = event.get("requestContext", {}).get("http", {}).get("method", "")
    path = event.get("rawPath", "")
    if path not in ROUTES:
        return respond(404, {"error": f"no route for {path}"})
    if method != ROUTES[path]:
        return respond(405, {"error": f"{path} accepts {ROUTES[path]} only"}, {"allow": ROUTES[path]})
    if path == "/health":
        return respond(200, {"status": "ok"})
    try:
        model = get_model()
    except Exception as exc:  # a missing or broken model file: unavailable, not a crash
        return respond(503, {"error": f"the model could not be loaded: {exc}"})
    raw = event.get("body") or ""
    try:
        if event.get("isBase64Encoded"):
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        body = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return respond(400, {"error": "the body is not valid JSON"})
    features = parse_features(body, int(model.n_features_in_))
    if isinstance(features, str):
        return respond(422, {"error": features})
    prediction = model.predict([features])[0]
    probabilities = model.predict_proba([features])[0]
    return respond(200, {
        "prediction": prediction.item() if hasattr(prediction, "item") else prediction,
        "probabilities": [float(p) for p in probabilities],
    })
    ### END SOLUTION

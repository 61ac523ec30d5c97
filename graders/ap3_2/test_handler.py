"""Graders for AP3.2's serverless handler (handler.py).

The handler is invoked in this process with real API Gateway HTTP API v2.0 events (the
shape AWS documents, every field present). Each expected prediction comes from the
scikit-learn model the grader trained, never from the learner's answer.
"""

from __future__ import annotations

import json
import math
import os
from unittest import mock

import joblib
import numpy as np
import pytest
from ap3_2_support import (
    COLD_DELAY_S,
    N_FEATURES,
    Context,
    event,
    other_model,
    predict_event,
    rows,
    slow_model,
    train_model,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The model files: the main model, another model, and a slow-to-load copy of the main one
    (in a folder of pytest's, which the learner's process can read under sealed grading)."""
    folder = tmp_path_factory.mktemp("ap3_2-handler")
    main, other = train_model(), other_model()
    paths = {"main": folder / "model.joblib", "other": folder / "other.joblib", "slow": folder / "slow.joblib"}
    joblib.dump(main, paths["main"])
    joblib.dump(other, paths["other"])
    joblib.dump(slow_model(), paths["slow"])
    return {"folder": folder, "main": main, "other": other, "paths": paths}


@pytest.fixture
def fresh(load_module, models):
    """A freshly imported handler module, with MODEL_PATH pointing at the main model."""
    with mock.patch.dict(os.environ, {"MODEL_PATH": str(models["paths"]["main"])}):
        module = load_module("handler")
        module.reset()
        yield module
        module.reset()


def invoke(module, evt) -> tuple[int, dict, object]:
    """Call the handler; return (status, lower-cased headers, parsed body)."""
    __tracebackhide__ = True
    response = module.handler(evt, Context())
    assert isinstance(response, dict), f"handler should return a dict; got {type(response).__name__}"
    status = response.get("statusCode")
    assert isinstance(status, int) and not isinstance(status, bool), (
        f"statusCode should be an int; got {status!r}")
    headers = {str(k).lower(): v for k, v in (response.get("headers") or {}).items()}
    body = response.get("body")
    assert isinstance(body, str), f"body should be a JSON string; got {type(body).__name__}"
    try:
        parsed = json.loads(body)
    except ValueError:
        raise AssertionError(f"body should be JSON; got {body[:200]!r}") from None
    return status, headers, parsed


def expect_error(module, evt, status: int, what: str) -> dict:
    __tracebackhide__ = True
    got, headers, body = invoke(module, evt)
    assert got == status, f"{what} should answer {status}; got {got} with {body}"
    assert headers.get("content-type", "").startswith("application/json"), (
        f"{what}: the content-type header should be application/json; got {headers}")
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
        f"{what}: the body should be {{'error': '<sentence>'}}; got {body}")
    return headers


@pytest.mark.points(4)
@pytest.mark.covers("predict-response", "response-format")
def test_predictions_equal_the_models_own(fresh, models):
    """POST /predict answers the model's own predict and predict_proba for each row."""
    model = models["main"]
    for row in rows(12, seed=1):
        status, headers, body = invoke(fresh, predict_event(row))
        assert status == 200, f"POST /predict with {row} should answer 200; got {status} {body}"
        assert headers.get("content-type", "").startswith("application/json"), (
            f"content-type should be application/json; got {headers}")
        expected = model.predict([row])[0].item()
        assert body.get("prediction") == expected, (
            f"prediction for {row} should be the model's label {expected}; got {body.get('prediction')!r}")
        probabilities = body.get("probabilities")
        np.testing.assert_allclose(probabilities, model.predict_proba([row])[0], rtol=1e-9, atol=1e-12,
                                   err_msg=f"probabilities for {row} should be predict_proba's row")


@pytest.mark.points(2)
@pytest.mark.covers("base64-body")
def test_base64_encoded_body_is_decoded(fresh, models):
    """A body sent with isBase64Encoded true is decoded before it is parsed."""
    row = rows(1, seed=2)[0]
    status, _, body = invoke(fresh, predict_event(row, b64=True))
    assert status == 200, f"a base64-encoded /predict body should answer 200; got {status} {body}"
    assert body.get("prediction") == models["main"].predict([row])[0].item(), (
        f"the prediction of a base64 body should be the model's; got {body}")
    expect_error(fresh, event("POST", "/predict", "not//base64!!", b64=False) | {"isBase64Encoded": True},
                 400, "a body flagged base64 that is not base64")
    import base64

    junk = base64.b64encode(json.dumps({"features": row}).encode()).decode() + "*!"
    expect_error(fresh, event("POST", "/predict", junk) | {"isBase64Encoded": True},
                 400, "a body flagged base64 with characters outside the base64 alphabet")


@pytest.mark.points(1)
@pytest.mark.covers("health")
def test_health_answers_without_loading_the_model(load_module, models):
    """GET /health answers 200 {"status": "ok"}, even when the model file is missing."""
    with mock.patch.dict(os.environ, {"MODEL_PATH": str(models["folder"] / "absent.joblib")}):
        module = load_module("handler")
        module.reset()
        status, _, body = invoke(module, event("GET", "/health"))
    assert (status, body) == (200, {"status": "ok"}), f"GET /health should answer 200 {{'status': 'ok'}}; got {status} {body}"


@pytest.mark.points(2)
@pytest.mark.covers("unknown-route", "error-body")
def test_unknown_route_is_404(fresh):
    """A path that is neither /predict nor /health answers 404 with an error body."""
    for method, path in [("POST", "/predictions"), ("GET", "/"), ("POST", "/predict/extra"), ("GET", "/HEALTH")]:
        expect_error(fresh, event(method, path, json.dumps({"features": [0.0] * N_FEATURES})), 404,
                     f"{method} {path}")


@pytest.mark.points(2)
@pytest.mark.covers("wrong-method")
def test_wrong_method_is_405_with_allow(fresh):
    """A known path with the wrong method answers 405 and names the right one in Allow."""
    for method, path, allowed in [("GET", "/predict", "POST"), ("PUT", "/predict", "POST"),
                                  ("POST", "/health", "GET"), ("DELETE", "/health", "GET")]:
        headers = expect_error(fresh, event(method, path, json.dumps({"features": [0.0] * N_FEATURES})),
                               405, f"{method} {path}")
        assert allowed in str(headers.get("allow", "")), (
            f"{method} {path}: the Allow header should name {allowed}; got {headers.get('allow')!r}")


@pytest.mark.points(2)
@pytest.mark.covers("malformed-json")
def test_malformed_json_is_400(fresh):
    """A body that is not JSON answers 400, never 5xx."""
    for body in ['{"features": [1, 2', "features=1,2,3", "", "{'features': [1]}", "\x00\x01"]:
        expect_error(fresh, event("POST", "/predict", body), 400, f"POST /predict with body {body!r}")
    missing = event("POST", "/predict")
    expect_error(fresh, missing, 400, "POST /predict without a body")


INVALID = [
    {"features": [0.5] * (N_FEATURES - 1)},
    {"features": [0.5] * (N_FEATURES + 1)},
    {"features": []},
    {"features": [0.5] * (N_FEATURES - 1) + ["1.0"]},
    {"features": [0.5] * (N_FEATURES - 1) + [None]},
    {"features": [0.5] * (N_FEATURES - 1) + [True]},
    {"features": [0.5] * (N_FEATURES - 1) + [[1.0]]},
    {"features": [0.5] * (N_FEATURES - 1) + [{"v": 1}]},
    {"features": "0.5,0.5"},
    {"features": None},
    {"feature": [0.5] * N_FEATURES},
    [[0.5] * N_FEATURES],
    [0.5] * N_FEATURES,
    "0.5",
    17,
    None,
]


@pytest.mark.points(3)
@pytest.mark.covers("invalid-features")
def test_invalid_features_are_422_never_5xx(fresh):
    """Wrong feature count, non-numbers, bools, nulls, nested lists and non-objects answer 422."""
    for payload in INVALID:
        expect_error(fresh, event("POST", "/predict", json.dumps(payload)), 422, f"POST /predict with {payload!r}")
    for text in ["NaN", "Infinity", "-Infinity", "1e999"]:
        body = '{"features": [' + ", ".join(["0.5"] * (N_FEATURES - 1) + [text]) + "]}"
        expect_error(fresh, event("POST", "/predict", body), 422, f"POST /predict with a feature {text}")
    # Ints are numbers: a row of ints is valid.
    status, _, body = invoke(fresh, predict_event([1, 0, -1, 2, 0, 1]))
    assert status == 200, f"a row of ints is valid and should answer 200; got {status} {body}"


@pytest.mark.points(3)
@pytest.mark.covers("lazy-load", "warm-reuse")
def test_model_loads_on_first_invocation_and_is_reused(load_module, models, tmp_path):
    """Importing does no work; the first invocation loads MODEL_PATH; later ones never reread it."""
    path = tmp_path / "model.joblib"
    joblib.dump(models["main"], path)
    with mock.patch.dict(os.environ):
        os.environ.pop("MODEL_PATH", None)
        module = load_module("handler")  # no MODEL_PATH at import: importing must not load the model
        module.reset()
        os.environ["MODEL_PATH"] = str(path)
        row = rows(1, seed=3)[0]
        first = invoke(module, predict_event(row))
        assert first[0] == 200, f"the first invocation should load MODEL_PATH and answer 200; got {first}"
        joblib.dump(models["other"], path)  # a warm container never reads the file again
        os.environ["MODEL_PATH"] = str(tmp_path / "gone.joblib")
        for probe in rows(6, seed=4):
            status, _, body = invoke(module, predict_event(probe))
            assert status == 200 and body.get("prediction") == models["main"].predict([probe])[0].item(), (
                "a warm invocation should reuse the model loaded by the first one (the file changed "
                f"since); got {status} {body}")
        module.reset()


@pytest.mark.points(2)
@pytest.mark.covers("reset")
def test_reset_makes_the_next_invocation_cold(load_module, models):
    """After reset(), the next invocation loads MODEL_PATH again."""
    with mock.patch.dict(os.environ, {"MODEL_PATH": str(models["paths"]["main"])}):
        module = load_module("handler")
        module.reset()
        probes = rows(8, seed=5)
        for row in probes[:2]:
            invoke(module, predict_event(row))
        os.environ["MODEL_PATH"] = str(models["paths"]["other"])
        module.reset()
        answers = [invoke(module, predict_event(row))[2].get("prediction") for row in probes]
        expected = models["other"].predict(probes).tolist()
        module.reset()
    assert answers == expected, f"after reset() the handler should load MODEL_PATH again; got {answers}, expected {expected}"


@pytest.mark.points(2)
@pytest.mark.covers("model-unavailable")
def test_missing_model_is_503_then_recovers(load_module, models, tmp_path):
    """A model that cannot be loaded gives 503; the next invocation tries the file again."""
    path = tmp_path / "late.joblib"
    with mock.patch.dict(os.environ, {"MODEL_PATH": str(path)}):
        module = load_module("handler")
        module.reset()
        row = rows(1, seed=6)[0]
        expect_error(module, predict_event(row), 503, "POST /predict while MODEL_PATH names a missing file")
        path.write_bytes(b"this is not a joblib file")
        expect_error(module, predict_event(row), 503, "POST /predict while MODEL_PATH names a broken file")
        joblib.dump(models["main"], path)
        status, _, body = invoke(module, predict_event(row))
        module.reset()
    assert status == 200 and body.get("prediction") == models["main"].predict([row])[0].item(), (
        f"once the model file exists, the next invocation should load it and answer; got {status} {body}")


@pytest.mark.points(2)
@pytest.mark.covers("lazy-load", "warm-reuse")
def test_cold_start_is_slower_than_warm(load_module, models):
    """With a model that takes 0.3 s to load, the first invocation pays it and the next ones do not."""
    import time

    with mock.patch.dict(os.environ, {"MODEL_PATH": str(models["paths"]["slow"])}):
        started = time.perf_counter()
        module = load_module("handler")
        module.reset()
        imported = time.perf_counter() - started
        timings = []
        for row in rows(5, seed=8):
            t = time.perf_counter()
            status, _, body = invoke(module, predict_event(row))
            timings.append(time.perf_counter() - t)
            assert status == 200, f"POST /predict should answer 200; got {status} {body}"
        module.reset()
    assert imported < COLD_DELAY_S, f"importing handler.py should not load the model; it took {imported:.3f} s"
    assert timings[0] >= COLD_DELAY_S, (
        f"the first invocation should load the model (>= {COLD_DELAY_S} s); it took {timings[0]:.3f} s")
    assert max(timings[1:]) < COLD_DELAY_S * 0.8, (
        f"warm invocations should not load the model again; they took {[round(t, 3) for t in timings[1:]]} s")
    assert not any(math.isnan(t) for t in timings)

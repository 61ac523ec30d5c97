"""Graders for CE3.1 — a REST API serving a model (FastAPI under real uvicorn processes).

The servers (``conftest.py``, ``ce3_1_support.py``) run the learner's ``app:app`` with
different settings; the checks talk HTTP to them with httpx. Predictions are compared
with the models' own ``predict`` / ``predict_proba``, called here on the grader's copy.
Rate-limit checks accept fixed windows, sliding windows and token buckets: a burst is
judged with the refill a token bucket may add during it, and a burst shorter than
window/limit (tried up to three times) pins the limit exactly. No verdict rests on a
random draw or on the machine being fast; a busy machine only makes the off-by-one
cases harder to see, never a correct service fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
import socket
import time

import httpx
import numpy as np
import pytest
from ce3_1_support import (
    BOOM,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY,
    DEFAULT_RATE_LIMIT,
    DEFAULT_WINDOW,
    MAIN_MAX_BATCH,
    MAIN_MAX_BODY,
    MAIN_NAME,
    MAIN_RATE_LIMIT,
    MAIN_VERSION,
    MAIN_WINDOW,
    N_FEATURES,
    PLAIN_FEATURES,
    REDIS_WINDOW,
    REDIS_WINDOW_LIMIT,
    SECRET,
    SHARED_RATE_LIMIT,
    Server,
    file_size,
    spied_calls,
    stub_check,
)

JSON = {"Content-Type": "application/json"}


# -- inputs -----------------------------------------------------------------------------------


def rows(n: int, width: int = N_FEATURES, seed: int = 0) -> list[list[float]]:
    """Seeded rows spread over the models' input space (plain Python floats)."""
    return np.round(np.random.default_rng(seed).normal(0, 2, size=(n, width)), 6).tolist()


def padded(payload: dict, size: int) -> bytes:
    """``payload`` as JSON, followed by spaces up to exactly ``size`` bytes (still valid JSON)."""
    body = json.dumps(payload).encode()
    assert len(body) <= size, "the payload is already larger than the size asked for"
    return body + b" " * (size - len(body))


# -- talking to a server ----------------------------------------------------------------------


def call(server: Server, method: str, path: str, *, key: str | None = None, body=None,
         raw: bytes | None = None, headers: dict | None = None) -> httpx.Response:
    """One request; a 500 whose cause is an unfinished stub reads "not started"."""
    __tracebackhide__ = True
    sent = dict(headers or {})
    if key is not None:
        sent["X-API-Key"] = key
    if raw is not None:
        sent = {**JSON, **sent}
        response = server.client.request(method, path, content=raw, headers=sent)
    elif body is not None:
        response = server.client.request(method, path, json=body, headers=sent)
    else:
        response = server.client.request(method, path, headers=sent)
    if response.status_code == 500:
        stub_check(server)
    return response


def body_of(response: httpx.Response, what: str) -> dict:
    __tracebackhide__ = True
    try:
        data = response.json()
    except ValueError:
        raise AssertionError(f"{what} should answer JSON; got {response.status_code} {response.text[:200]!r}") from None
    if not isinstance(data, dict):
        raise AssertionError(f"{what} should answer a JSON object; got {data!r:.200}")
    return data


def expect_status(response: httpx.Response, status, what: str) -> dict | None:
    """Fail unless the status is ``status`` (an int or a tuple of accepted ones)."""
    __tracebackhide__ = True
    accepted = status if isinstance(status, tuple) else (status,)
    if response.status_code not in accepted:
        shown = " or ".join(str(s) for s in accepted)
        raise AssertionError(f"{what} should answer {shown}; got {response.status_code} {response.text[:300]!r}")
    try:
        return response.json()
    except ValueError:
        return None


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assert_prediction(entry, model, row, what: str) -> None:
    """``entry`` holds the model's own prediction and confidence for ``row``."""
    __tracebackhide__ = True
    if not isinstance(entry, dict) or "prediction" not in entry or "confidence" not in entry:
        raise AssertionError(f"{what} should hold 'prediction' and 'confidence'; got {entry!r:.200}")
    X = np.asarray([row], dtype=float)
    expected = model.predict(X)[0].item()
    confidence = float(model.predict_proba(X).max())
    got = entry["prediction"]
    assert is_number(got), f"{what}: prediction should be a JSON number; got {got!r}"
    assert got == expected, (
        f"{what}: prediction should be the model's predict() = {expected} for {row}; got {got!r}"
    )
    assert is_number(entry["confidence"]) and math.isclose(entry["confidence"], confidence, rel_tol=1e-9), (
        f"{what}: confidence should be the largest predict_proba value {confidence:.9g} for {row}; "
        f"got {entry['confidence']!r}"
    )


def assert_error_shape(response: httpx.Response, what: str) -> None:
    """``{"error": {"status", "message", "request_id"}}`` matching the status and X-Request-ID."""
    __tracebackhide__ = True
    data = body_of(response, what)
    error = data.get("error")
    assert isinstance(error, dict), (
        f"{what} ({response.status_code}) should answer {{\"error\": {{...}}}}; got {data!r:.300}"
    )
    assert error.get("status") == response.status_code and is_number(error.get("status")), (
        f"{what}: error.status should be the HTTP status {response.status_code}; got {error.get('status')!r}"
    )
    assert isinstance(error.get("message"), str) and error["message"].strip(), (
        f"{what}: error.message should be a sentence; got {error.get('message')!r}"
    )
    header = response.headers.get("x-request-id")
    assert header and error.get("request_id") == header, (
        f"{what}: error.request_id should equal the X-Request-ID header {header!r}; "
        f"got {error.get('request_id')!r}"
    )


def log_lines(server: Server) -> list[tuple[str, dict | None]]:
    """Every line of the server's output, with its JSON object when it is one."""
    found = []
    for line in server.logs().splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        found.append((line, data if isinstance(data, dict) else None))
    return found


def wait_for_log(server: Server, request_ids: list[str], timeout: float = 5.0) -> list[tuple[str, dict | None]]:
    """The server's lines, once every id in ``request_ids`` appears in them (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log_lines(server)
        text = "\n".join(line for line, _ in lines)
        if all(rid in text for rid in request_ids) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def predict_or_batch(server: Server, key: str, i: int) -> httpx.Response:
    """Even requests: /predict; odd ones: a 3-row /predict/batch (which counts as one request)."""
    data = rows(3, seed=100 + i)
    if i % 2:
        return call(server, "POST", "/predict/batch", key=key, body={"instances": data})
    return call(server, "POST", "/predict", key=key, body={"features": data[0]})


# -- the fixed set of malformed bodies ------------------------------------------------------


def malformed_bodies() -> dict[str, bytes]:
    """The fixed set of bad /predict bodies: each must get a 4xx, never a 5xx."""
    good = rows(1, seed=11)[0]
    numbers = ", ".join(repr(x) for x in good[1:])
    return {
        "one feature short": json.dumps({"features": good[:-1]}).encode(),
        "one feature too many": json.dumps({"features": [*good, 1.0]}).encode(),
        "no features": b'{"features": []}',
        "NaN": f'{{"features": [NaN, {numbers}]}}'.encode(),
        "Infinity": f'{{"features": [Infinity, {numbers}]}}'.encode(),
        "-Infinity": f'{{"features": [-Infinity, {numbers}]}}'.encode(),
        "1e400 (too large for a float)": f'{{"features": [1e400, {numbers}]}}'.encode(),
        "a huge integer": f'{{"features": [{10 ** 400}, {numbers}]}}'.encode(),
        "a word": f'{{"features": ["abc", {numbers}]}}'.encode(),
        'a number in a string ("1.5")': f'{{"features": ["1.5", {numbers}]}}'.encode(),
        "true": f'{{"features": [true, {numbers}]}}'.encode(),
        "null in the list": f'{{"features": [null, {numbers}]}}'.encode(),
        "a nested list": json.dumps({"features": [good]}).encode(),
        "a list inside the list": f'{{"features": [[1.0], {numbers}]}}'.encode(),
        "an object inside the list": f'{{"features": [{{"x": 1}}, {numbers}]}}'.encode(),
        "features as a string": b'{"features": "1, 2, 3, 4, 5"}',
        "features as a number": b'{"features": 5}',
        "features null": b'{"features": null}',
        "an empty body": b"",
        "an empty object": b"{}",
        "a JSON list": json.dumps(good).encode(),
        "JSON null": b"null",
        "a misspelt field": json.dumps({"feature": good}).encode(),
        "broken JSON": b'{"features": [1.0, 2.0',
        "bytes that are not UTF-8": b'{"features": [\xff\xfe]}',
        "a 10 MB body": b'{"features": [' + b"1.0, " * 2_000_000 + b"1.0]}",
    }


# -- rate-limit bursts -------------------------------------------------------------------------


def limited_burst(take_key, server: Server, limit: int, window: float):
    """A fresh key's requests until its first refusal (at most 3 x limit + 1), and the seconds they took.

    A token bucket refills one request every window/limit seconds, so only a burst shorter
    than that pins the limit exactly: up to three keys are tried for one. On a busy machine
    the last, slower burst is judged with the refill it allows (see ``assert_limited``).
    """
    for _ in range(3):
        key, responses = take_key(), []
        started = time.monotonic()
        for i in range(3 * limit + 1):
            responses.append(predict_or_batch(server, key, i))
            if responses[-1].status_code != 200:
                break
        seconds = time.monotonic() - started
        if seconds < 0.8 * window / limit:
            break
    return key, responses, seconds


def assert_limited(responses: list[httpx.Response], seconds: float, limit: int, window: float, what: str) -> int:
    """``limit`` requests served (plus what a token bucket refills meanwhile), then a 429 with
    a sensible Retry-After; returns Retry-After."""
    __tracebackhide__ = True
    served, last = len(responses) - 1, responses[-1]
    if served < limit:
        expect_status(last, 200, f"{what}: request {served + 1} of {limit} (RATE_LIMIT={limit}, a batch counts once)")
    refill = math.floor(seconds * limit / window)
    assert last.status_code != 200, (
        f"{what}: {len(responses)} requests in {seconds:.2f} s with one key were all served; "
        f"RATE_LIMIT={limit} per {window:g} s should refuse one after {limit}"
    )
    expect_status(last, 429, f"{what}: request {served + 1}, right after {served} within the window")
    assert served <= limit + refill, (
        f"{what}: {served} requests in {seconds:.2f} s with one key were served before the first 429; "
        f"RATE_LIMIT={limit} per {window:g} s allows {limit}" + (f" (+{refill} refilled)" if refill else "")
    )
    assert_error_shape(last, f"{what}: the 429")
    header = last.headers.get("retry-after")
    assert header is not None and header.strip().isdigit(), (
        f"{what}: a 429 should carry Retry-After as whole seconds; got {header!r}"
    )
    wait = int(header)
    assert 1 <= wait <= math.ceil(window), (
        f"{what}: Retry-After should be between 1 and {math.ceil(window)} (RATE_LIMIT_WINDOW={window:g}); got {wait}"
    )
    return wait


# == checks on the main server (fully configured) ==========================================


@pytest.mark.points(2)
@pytest.mark.covers("predict-route", "prediction-value", "confidence", "model-fields",
                    "env-model-path", "env-model-name", "env-model-version", "keys-union")
def test_predictions_match_the_model(fleet):
    """/predict answers the model's own prediction and top probability, with the model's name and version."""
    server = fleet["main"].ready()
    keys = fleet.keys["main"]
    for i, row in enumerate(rows(40, seed=1)):
        response = call(server, "POST", "/predict", key=keys.take(), body={"features": row})
        data = expect_status(response, 200, f"POST /predict {row}")
        assert_prediction(data, fleet.main_model, row, f"POST /predict (row {i})")
        assert data.get("model_name") == MAIN_NAME and data.get("model_version") == MAIN_VERSION, (
            f"POST /predict should say model_name={MAIN_NAME!r} and model_version={MAIN_VERSION!r} "
            f"(MODEL_NAME, MODEL_VERSION); got {data.get('model_name')!r}, {data.get('model_version')!r}"
        )
    seen = {fleet.main_model.predict(np.asarray([r]))[0] for r in rows(40, seed=1)}
    assert len(seen) == 3, "grader self-check: the rows should reach every class"


@pytest.mark.points(2)
@pytest.mark.covers("batch-route", "model-fields")
def test_batch_matches_the_model_row_by_row(fleet):
    """/predict/batch answers one entry per row, in the rows' order, each the model's own answer."""
    server = fleet["main"].ready()
    data_rows = rows(MAIN_MAX_BATCH, seed=2)
    response = call(server, "POST", "/predict/batch", key=fleet.keys["main"].take(),
                    body={"instances": data_rows})
    data = expect_status(response, 200, f"POST /predict/batch with {len(data_rows)} rows")
    predictions = data.get("predictions")
    assert isinstance(predictions, list) and len(predictions) == len(data_rows), (
        f"POST /predict/batch should answer 'predictions', one per row ({len(data_rows)}); got {data!r:.300}"
    )
    for i, (entry, row) in enumerate(zip(predictions, data_rows, strict=True)):
        assert_prediction(entry, fleet.main_model, row, f"POST /predict/batch predictions[{i}]")
    assert data.get("model_name") == MAIN_NAME and data.get("model_version") == MAIN_VERSION, (
        f"POST /predict/batch should say model_name={MAIN_NAME!r} and model_version={MAIN_VERSION!r}; "
        f"got {data.get('model_name')!r}, {data.get('model_version')!r}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("batch-size", "batch-all-or-nothing", "env-max-batch")
def test_batch_size_and_bad_rows_are_refused(fleet):
    """An empty batch, one over MAX_BATCH_SIZE, and a batch with one bad row are refused with 422."""
    server = fleet["main"].ready()
    keys = fleet.keys["main"]
    cases = {
        "an empty batch": [],
        f"{MAIN_MAX_BATCH + 1} rows (MAX_BATCH_SIZE={MAIN_MAX_BATCH})": rows(MAIN_MAX_BATCH + 1, seed=3),
        "a batch whose third row is one feature short": [*rows(2, seed=4), rows(1, seed=5)[0][:-1], *rows(2, seed=6)],
        "a batch whose last row holds a string": [*rows(3, seed=7), ["x"] * N_FEATURES],
    }
    for what, instances in cases.items():
        response = call(server, "POST", "/predict/batch", key=keys.take(), body={"instances": instances})
        expect_status(response, 422, f"POST /predict/batch with {what}")
        assert_error_shape(response, f"POST /predict/batch with {what}")
    nan_row = rows(4, seed=8)
    raw = json.dumps({"instances": nan_row}).replace(str(nan_row[2][1]), "NaN", 1).encode()
    expect_status(call(server, "POST", "/predict/batch", key=keys.take(), raw=raw), 422,
                  "POST /predict/batch whose third row holds NaN")
    full = rows(MAIN_MAX_BATCH, seed=9)
    expect_status(call(server, "POST", "/predict/batch", key=keys.take(), body={"instances": full}), 200,
                  f"POST /predict/batch with exactly MAX_BATCH_SIZE={MAIN_MAX_BATCH} rows")
    expect_status(call(server, "POST", "/predict/batch", key=keys.take(), body={"instances": full[:1]}), 200,
                  "POST /predict/batch with one row")


@pytest.mark.points(2)
@pytest.mark.covers("concurrency", "request-id-new", "error-500")
def test_hundred_concurrent_requests_all_answered_correctly(fleet):
    """100 requests at once, each with its own row and key: every one gets its own row's answer
    and its own request id. Then 100 more, five of them rows the model raises on: those five
    alone get a 500 (a service that batches concurrent requests must not fail the others with
    them, nor answer a request with another's rows)."""
    server = fleet["main"].ready()
    clean = rows(100, seed=10)
    mixed = rows(100, seed=11)
    bad = {17, 37, 57, 77, 97}
    for i in bad:
        mixed[i] = [BOOM, *mixed[i][1:]]
    for wave, data_rows, failing in (("", clean, set()), (" (with 5 rows the model raises on)", mixed, bad)):
        responses = _fire_concurrently(server, data_rows, [fleet.keys["main"].take() for _ in data_rows])
        failures = [r for r in responses if isinstance(r, Exception)]
        assert not failures, f"100 concurrent POST /predict{wave}: {len(failures)} got no answer ({failures[0]!r})"
        for i, (response, row) in enumerate(zip(responses, data_rows, strict=True)):
            if i in failing:
                expect_status(response, 500, f"concurrent POST /predict #{i}, a row the model raises on")
                continue
            context = f"concurrent POST /predict #{i}{wave}"
            assert_prediction(expect_status(response, 200, context), fleet.main_model, row, context)
        ids = [response.headers.get("x-request-id") for response in responses]
        shared = {rid for rid in ids if ids.count(rid) > 1}
        assert not shared, (
            f"100 concurrent requests sent without X-Request-ID should get 100 different ids; "
            f"{len(shared)} ids came back more than once (e.g. {sorted(map(str, shared))[0]!r})"
        )


def _fire_concurrently(server, data_rows: list[list[float]], keys: list[str]) -> list:
    """POST each row to /predict at once (one connection each); an answer or the exception it raised."""
    async def fire():
        limits = httpx.Limits(max_connections=len(data_rows), max_keepalive_connections=len(data_rows))
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*[
                client.post("/predict", json={"features": row}, headers={"X-API-Key": key})
                for row, key in zip(data_rows, keys, strict=True)
            ], return_exceptions=True)

    return asyncio.run(fire())


@pytest.mark.points(1)
@pytest.mark.covers("feature-count")
def test_wrong_feature_count_is_422(fleet):
    """A row with one feature too few, one too many, or none is refused with 422."""
    server = fleet["main"].ready()
    good = rows(1, seed=12)[0]
    for what, features in {"4 features": good[:-1], "6 features": [*good, 0.5], "no features": []}.items():
        response = call(server, "POST", "/predict", key=fleet.keys["main"].take(), body={"features": features})
        expect_status(response, 422, f"POST /predict with {what} (the model takes {N_FEATURES})")
        assert_error_shape(response, f"POST /predict with {what}")


@pytest.mark.points(1)
@pytest.mark.covers("finite-numbers")
def test_non_finite_numbers_are_422(fleet):
    """NaN, Infinity, -Infinity and numbers beyond a float's range are refused with 422."""
    server = fleet["main"].ready()
    bodies = malformed_bodies()
    for what in ("NaN", "Infinity", "-Infinity", "1e400 (too large for a float)", "a huge integer"):
        response = call(server, "POST", "/predict", key=fleet.keys["main"].take(), raw=bodies[what])
        expect_status(response, 422, f"POST /predict with {what} as a feature")
        assert_error_shape(response, f"POST /predict with {what} as a feature")


@pytest.mark.points(1)
@pytest.mark.covers("numbers-only")
def test_values_that_are_not_numbers_are_422(fleet):
    """Strings (numeric ones too), booleans, null, lists and objects as features are refused with 422."""
    server = fleet["main"].ready()
    bodies = malformed_bodies()
    for what in ("a word", 'a number in a string ("1.5")', "true", "null in the list", "a nested list",
                 "a list inside the list", "an object inside the list", "features as a string",
                 "features as a number", "features null"):
        response = call(server, "POST", "/predict", key=fleet.keys["main"].take(), raw=bodies[what])
        expect_status(response, 422, f"POST /predict with {what}")
        assert_error_shape(response, f"POST /predict with {what}")
    good = rows(1, seed=13)[0]
    ints = [int(x * 10) for x in good]
    response = call(server, "POST", "/predict", key=fleet.keys["main"].take(), body={"features": ints})
    data = expect_status(response, 200, f"POST /predict with integer features {ints}")
    assert_prediction(data, fleet.main_model, [float(x) for x in ints], "POST /predict with integers")


@pytest.mark.points(1)
@pytest.mark.covers("unreadable-body")
def test_unreadable_bodies_are_400_or_422(fleet):
    """Empty bodies, broken JSON, other JSON values and a missing field are refused with 400 or 422."""
    server = fleet["main"].ready()
    bodies = malformed_bodies()
    for what in ("an empty body", "an empty object", "a JSON list", "JSON null", "a misspelt field",
                 "broken JSON", "bytes that are not UTF-8"):
        response = call(server, "POST", "/predict", key=fleet.keys["main"].take(), raw=bodies[what])
        expect_status(response, (400, 422), f"POST /predict with {what}")
        assert_error_shape(response, f"POST /predict with {what}")


@pytest.mark.points(2)
@pytest.mark.covers("body-limit", "body-limit-chunked", "env-max-body")
def test_body_size_limit_exact_boundary_and_chunked(fleet):
    """MAX_BODY_BYTES bytes are read; one byte more, 10 MB, or a chunked 10 MB body get 413."""
    server = fleet["main"].ready()
    keys = fleet.keys["main"]
    row = rows(1, seed=14)[0]
    exact = padded({"features": row}, MAIN_MAX_BODY)
    data = expect_status(call(server, "POST", "/predict", key=keys.take(), raw=exact), 200,
                         f"POST /predict with a body of exactly MAX_BODY_BYTES={MAIN_MAX_BODY} bytes")
    assert_prediction(data, fleet.main_model, row, "POST /predict with a padded body")
    over = padded({"features": row}, MAIN_MAX_BODY + 1)
    response = call(server, "POST", "/predict", key=keys.take(), raw=over)
    expect_status(response, 413, f"POST /predict with a body of {MAIN_MAX_BODY + 1} bytes "
                                 f"(MAX_BODY_BYTES={MAIN_MAX_BODY})")
    assert_error_shape(response, "POST /predict with a body over the limit")
    big = malformed_bodies()["a 10 MB body"]
    for what, content in {"a 10 MB body": big, "a 10 MB body sent in chunks, without Content-Length":
                          (big[i:i + 65536] for i in range(0, len(big), 65536)),
                          f"{MAIN_MAX_BODY + 1} bytes sent in chunks": (over[i:i + 1000] for i in range(0, len(over), 1000))
                          }.items():
        try:
            response = server.client.post("/predict", content=content,
                                          headers={**JSON, "X-API-Key": keys.take()})
        except httpx.TransportError as exc:
            raise AssertionError(f"POST /predict with {what} should answer 413; the connection "
                                 f"broke instead ({type(exc).__name__}: {exc})") from None
        expect_status(response, 413, f"POST /predict with {what}")
    batch_over = padded({"instances": rows(2, seed=15)}, MAIN_MAX_BODY + 1)
    expect_status(call(server, "POST", "/predict/batch", key=keys.take(), raw=batch_over), 413,
                  f"POST /predict/batch with a body of {MAIN_MAX_BODY + 1} bytes")


@pytest.mark.points(2)
@pytest.mark.covers("no-5xx")
def test_malformed_bodies_never_5xx_and_service_keeps_answering(fleet):
    """Every body of the fixed malformed set gets a 4xx, and a good request after each is answered right."""
    server = fleet["main"].ready()
    keys = fleet.keys["main"]
    good = rows(len(malformed_bodies()), seed=16)
    for (what, raw), row in zip(malformed_bodies().items(), good, strict=True):
        for path in ("/predict", "/predict/batch"):
            response = call(server, "POST", path, key=keys.take(), raw=raw)
            assert 400 <= response.status_code < 500, (
                f"POST {path} with {what} should get a 4xx answer; got {response.status_code} "
                f"{response.text[:200]!r}"
            )
        response = call(server, "POST", "/predict", key=keys.take(), body={"features": row})
        data = expect_status(response, 200, f"POST /predict with a good row right after {what}")
        assert_prediction(data, fleet.main_model, row, f"POST /predict right after {what}")
    assert server.alive(), "the server process should keep running after malformed bodies; it exited"


@pytest.mark.points(1)
@pytest.mark.covers("no-5xx")
def test_client_leaving_mid_body_does_not_stop_the_service(fleet):
    """A client that sends half a body and hangs up leaves the service answering the next request at once."""
    server = fleet["main"].ready()
    host, port = server.url.removeprefix("http://").split(":")
    for _ in range(2):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: grader\r\nContent-Type: application/json\r\n"
                         + f"X-API-Key: {fleet.keys['main'].take()}\r\n".encode()
                         + b'Content-Length: 1000\r\n\r\n{"features": [1.0, ')
            time.sleep(0.1)
    row = rows(1, seed=47)[0]
    try:
        response = httpx.post(f"{server.url}/predict", json={"features": row}, timeout=5,
                              headers={"X-API-Key": fleet.keys["main"].take()})
    except httpx.TimeoutException:
        raise AssertionError("after a client hung up in the middle of its body, POST /predict should be "
                             "answered; the service did not answer within 5 s (a loop on the disconnect?)") from None
    data = expect_status(response, 200, "POST /predict after a client hung up in the middle of its body")
    assert_prediction(data, fleet.main_model, row, "POST /predict after a client hung up mid-body")


@pytest.mark.points(1)
@pytest.mark.covers("auth-missing", "auth-wrong")
def test_missing_key_is_401_and_wrong_key_is_403(fleet):
    """No or an empty X-API-Key gets 401; a wrong key (a prefix, one char more, another case) gets 403."""
    server = fleet["main"].ready()
    valid = fleet.keys["main"].take()
    row = rows(1, seed=17)[0]
    for path, body in (("/predict", {"features": row}), ("/predict/batch", {"instances": [row]})):
        for what, headers in {"no X-API-Key header": {}, "an empty X-API-Key": {"X-API-Key": ""}}.items():
            response = call(server, "POST", path, body=body, headers=headers)
            expect_status(response, 401, f"POST {path} with {what}")
            assert_error_shape(response, f"POST {path} with {what}")
        wrong = {"an unknown key": "not-a-key-" + secrets.token_hex(4), "a prefix of a valid key": valid[:-1],
                 "a valid key with one more character": valid + "0", "a valid key in upper case": valid.upper(),
                 "the key's name in another header": None}
        for what, key in wrong.items():
            if key is None:
                response = call(server, "POST", path, body=body, headers={"Authorization": f"Bearer {valid}x"})
                expect_status(response, 401, f"POST {path} with the key only in an Authorization header")
                continue
            response = call(server, "POST", path, key=key, body=body)
            expect_status(response, 403, f"POST {path} with {what}")
            assert_error_shape(response, f"POST {path} with {what}")


@pytest.mark.points(1)
@pytest.mark.covers("env-api-keys", "env-api-keys-file", "keys-union")
def test_keys_from_environment_and_file_are_valid_together(fleet):
    """Keys of API_KEYS (spaces trimmed) and of API_KEYS_FILE (trimmed, comments and blanks skipped) all work."""
    server = fleet["main"].ready()
    row = rows(1, seed=18)[0]
    env_a, env_b = fleet.env_keys
    file_keys = fleet.keys["main"]
    indented = next(k for i, k in enumerate(file_keys.keys) if i % 7 == 0 and i >= file_keys._next)
    file_keys._next = file_keys.keys.index(indented) + 1
    cases = {"the first key of API_KEYS": env_a, "the second key of API_KEYS (after a comma and spaces)": env_b,
             "a key of API_KEYS_FILE": file_keys.take(), "an indented key of API_KEYS_FILE": indented}
    for what, key in cases.items():
        response = call(server, "POST", "/predict", key=key, body={"features": row})
        expect_status(response, 200, f"POST /predict with {what}")
    for what, key in {"a comment line of the keys file": "# the end",
                      "a comment line without its '# '": "the end"}.items():
        expect_status(call(server, "POST", "/predict", key=key, body={"features": row}), 403,
                      f"POST /predict with {what} as the key")


@pytest.mark.points(1)
@pytest.mark.covers("error-shape")
def test_every_error_has_the_one_shape(fleet):
    """401, 403, 404, 405, 413, 422 and 429 answers all carry {"error": {status, message, request_id}}."""
    server = fleet["main"].ready()
    keys = fleet.keys["main"]
    row = rows(1, seed=40)[0]
    cases = {
        "401 (no key)": call(server, "POST", "/predict", body={"features": row}),
        "403 (wrong key)": call(server, "POST", "/predict", key="wrong", body={"features": row}),
        "404 (unknown path)": call(server, "GET", "/no-such-page", key=keys.take()),
        "405 (GET /predict)": call(server, "GET", "/predict", key=keys.take()),
        "413 (body too large)": call(server, "POST", "/predict", key=keys.take(),
                                     raw=padded({"features": row}, MAIN_MAX_BODY + 1)),
        "422 (wrong feature count)": call(server, "POST", "/predict", key=keys.take(), body={"features": row[:2]}),
        "422 (NaN)": call(server, "POST", "/predict", key=keys.take(), raw=malformed_bodies()["NaN"]),
    }
    expected = {"401": 401, "403": 403, "404": 404, "405": 405, "413": 413, "422": 422}
    for what, response in cases.items():
        expect_status(response, expected[what[:3]], f"{what}")
        assert_error_shape(response, what)
    key = keys.take()
    responses = [predict_or_batch(server, key, 0) for _ in range(MAIN_RATE_LIMIT + 1)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, f"{MAIN_RATE_LIMIT + 1} quick requests with one key should end in a 429; got none"
    assert_error_shape(limited[0], "429 (rate limited)")


@pytest.mark.points(2)
@pytest.mark.covers("error-500", "error-logged")
def test_model_error_is_500_without_details_and_logged(fleet):
    """A model that raises gives 500 in the error shape, no traceback or message; the log has both and the id."""
    server = fleet["main"].ready()
    request_id = "grader-boom-" + secrets.token_hex(6)
    row = [BOOM, *rows(1, seed=41)[0][1:]]
    response = call(server, "POST", "/predict", key=fleet.keys["main"].take(), body={"features": row},
                    headers={"X-Request-ID": request_id})
    expect_status(response, 500, f"POST /predict with {row} (on which the model raises RuntimeError)")
    assert_error_shape(response, "the 500 of a model error")
    for leak in ("Traceback", "RuntimeError", SECRET, 'File "', ".py"):
        assert leak not in response.text, f"the 500 should not reveal {leak!r} to the client; got {response.text[:300]!r}"
    lines = wait_for_log(server, [request_id, SECRET])
    logged = [data for line, data in lines if data is not None and data.get("request_id") == request_id
              and SECRET in line]
    assert logged, (
        f"the log should have a JSON line with request_id {request_id!r} and the exception's message "
        f"({SECRET!r}...); the lines with that id: "
        f"{[line[:200] for line, _ in lines if request_id in line]}"
    )
    row = rows(1, seed=42)[0]
    data = expect_status(call(server, "POST", "/predict", key=fleet.keys["main"].take(), body={"features": row}),
                         200, "POST /predict right after a model error")
    assert_prediction(data, fleet.main_model, row, "POST /predict right after a model error")


@pytest.mark.points(1)
@pytest.mark.covers("request-id-echo", "request-id-new")
def test_every_response_carries_a_request_id(fleet):
    """X-Request-ID comes back as sent; without one, each response gets a new, different id."""
    server = fleet["main"].ready()
    row = rows(1, seed=43)[0]
    mine = "grader-id-" + secrets.token_hex(6)
    for what, response in {
        "POST /predict (200)": call(server, "POST", "/predict", key=fleet.keys["main"].take(), body={"features": row},
                                    headers={"X-Request-ID": mine}),
        "POST /predict (401)": call(server, "POST", "/predict", body={"features": row}, headers={"X-Request-ID": mine}),
        "GET /health": call(server, "GET", "/health", headers={"X-Request-ID": mine}),
        # Other headers whose names sort around x-request-id are not the request id.
        "GET /health (with X-Requested-With)": call(server, "GET", "/health", headers={
            "X-Request-ID": mine, "X-Requested-With": "XMLHttpRequest", "X-Request-Idempotency": "no"}),
        "GET /health (X-Requested-With first)": call(server, "GET", "/health", headers={
            "X-Requested-With": "XMLHttpRequest", "X-Request-Idempotency": "no", "X-Request-ID": mine}),
    }.items():
        assert response.headers.get("x-request-id") == mine, (
            f"{what} sent with X-Request-ID {mine!r} should answer the same header; got {response.headers.get('x-request-id')!r}"
        )
    seen = []
    for what, response in {
        "POST /predict (200)": call(server, "POST", "/predict", key=fleet.keys["main"].take(), body={"features": row}),
        "POST /predict (200) again": call(server, "POST", "/predict", key=fleet.keys["main"].take(),
                                          body={"features": row}),
        "GET /health with X-Requested-With": call(server, "GET", "/health",
                                                  headers={"X-Requested-With": "XMLHttpRequest"}),
        "GET /health with X-Requested-With again": call(server, "GET", "/health",
                                                        headers={"X-Requested-With": "XMLHttpRequest"}),
        "POST /predict (403)": call(server, "POST", "/predict", key="wrong", body={"features": row}),
        "GET /ready": call(server, "GET", "/ready"),
    }.items():
        rid = response.headers.get("x-request-id")
        assert rid, f"{what} without X-Request-ID should answer a new X-Request-ID header; got none"
        assert rid not in seen, f"{what}: each request should get its own id; {rid!r} came back twice"
        seen.append(rid)


@pytest.mark.points(2)
@pytest.mark.covers("log-line", "log-json")
def test_each_request_logs_one_json_line_with_its_id(fleet):
    """Each request's log line is JSON with request_id, method, path, status and duration_ms."""
    server = fleet["main"].ready()
    row = rows(1, seed=44)[0]
    token = secrets.token_hex(4)
    sent = {
        f"grader-log-{token}-ok": ("POST", "/predict", 200, {"key": fleet.keys["main"].take(), "body": {"features": row}}),
        f"grader-log-{token}-bad": ("POST", "/predict/batch", 422, {"key": fleet.keys["main"].take(),
                                                                    "body": {"instances": []}}),
        f"grader-log-{token}-nokey": ("POST", "/predict", 401, {"body": {"features": row}}),
        f"grader-log-{token}-health": ("GET", "/health", 200, {}),
        f"grader-log-{token}-big": ("POST", "/predict", 413, {"key": fleet.keys["main"].take(),
                                                              "raw": b" " * (MAIN_MAX_BODY + 1)}),
    }
    for rid, (method, path, status, kwargs) in sent.items():
        expect_status(call(server, method, path, headers={"X-Request-ID": rid}, **kwargs), status,
                      f"{method} {path} (request {rid})")
    lines = wait_for_log(server, list(sent))
    for rid, (method, path, status, _) in sent.items():
        mentioning = [(line, data) for line, data in lines if rid in line]
        assert mentioning, f"the server's output should have a log line for request {rid}; found none"
        plain = [line for line, data in mentioning if data is None]
        assert not plain, f"every log line about request {rid} should be a JSON object; got {plain[0][:200]!r}"
        access = [data for _, data in mentioning if data.get("request_id") == rid
                  and data.get("path") == path and data.get("method") == method]
        assert access, (
            f"the log should have a JSON line with request_id={rid!r}, method={method!r}, path={path!r}; "
            f"got {[line[:200] for line, _ in mentioning]}"
        )
        line = access[-1]
        assert line.get("status") == status and is_number(line.get("status")), (
            f"the log line of {method} {path} should have status {status} (a number); got {line.get('status')!r}"
        )
        assert is_number(line.get("duration_ms")) and line["duration_ms"] >= 0, (
            f"the log line of {method} {path} should have duration_ms, a number >= 0; got {line.get('duration_ms')!r}"
        )


@pytest.mark.points(1)
@pytest.mark.covers("log-line")
def test_logged_duration_is_the_request_time_in_ms(fleet):
    """A request whose body arrives 0.3 s after its headers logs a duration_ms of 300 or more."""
    server = fleet["main"].ready()
    rid = "grader-slow-" + secrets.token_hex(4)
    body = json.dumps({"features": rows(1, seed=46)[0]}).encode()

    def slow_upload():
        yield body[:10]
        time.sleep(0.3)
        yield body[10:]

    started = time.monotonic()
    response = server.client.post("/predict", content=slow_upload(), headers={
        **JSON, "X-API-Key": fleet.keys["main"].take(), "X-Request-ID": rid})
    elapsed_ms = (time.monotonic() - started) * 1000
    expect_status(response, 200, "POST /predict whose body arrives in two parts, 0.3 s apart")
    lines = wait_for_log(server, [rid])
    durations = [data.get("duration_ms") for _, data in lines
                 if data is not None and data.get("request_id") == rid and "duration_ms" in data]
    assert durations and is_number(durations[-1]), (
        f"the log should have a JSON line with request_id {rid!r} and duration_ms; got "
        f"{[line[:200] for line, _ in lines if rid in line]}"
    )
    assert 250 <= durations[-1] <= elapsed_ms + 5, (
        f"duration_ms of a request whose body took 0.3 s to arrive should be 300 or a little more, "
        f"in milliseconds, and at most the {elapsed_ms:.0f} ms the client waited; got {durations[-1]!r}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("no-key-in-logs")
def test_api_keys_never_reach_the_logs(fleet):
    """Neither valid nor wrong API keys appear in the server's output, whatever the request's outcome."""
    server = fleet["main"].ready()
    row = rows(1, seed=45)[0]
    token = secrets.token_hex(4)
    valid, limited = fleet.keys["main"].take(), fleet.keys["main"].take()
    wrong = "wrong-" + secrets.token_hex(8)
    ids = []
    requests = [
        (valid, {"features": row}, "/predict"),
        (valid, {"features": row[:1]}, "/predict"),
        (wrong, {"features": row}, "/predict"),
        (valid, {"features": [BOOM, *row[1:]]}, "/predict"),
        *[(limited, {"instances": [row]}, "/predict/batch")] * (MAIN_RATE_LIMIT + 1),
    ]
    for i, (key, body, path) in enumerate(requests):
        rid = f"grader-keys-{token}-{i}"
        ids.append(rid)
        call(server, "POST", path, key=key, body=body, headers={"X-Request-ID": rid})
    text = "\n".join(line for line, _ in wait_for_log(server, ids))
    for what, key in {"a valid key": valid, "a wrong key": wrong, "a rate-limited key": limited,
                      "an API_KEYS key": fleet.env_keys[0]}.items():
        assert key not in text, f"{what} ({key}) should never be written to the logs; found it in the server's output"


@pytest.mark.points(1)
@pytest.mark.covers("health", "ready-true")
def test_health_and_ready_answer_without_a_key(fleet):
    """GET /health is 200 {"status": "ok"} and GET /ready 200 {"ready": true}, no API key needed."""
    server = fleet["main"].ready()
    data = expect_status(call(server, "GET", "/health"), 200, "GET /health without an API key")
    assert isinstance(data, dict) and data.get("status") == "ok", f'GET /health should answer {{"status": "ok"}}; got {data!r}'
    data = expect_status(call(server, "GET", "/ready"), 200, "GET /ready without an API key, model loaded")
    assert isinstance(data, dict) and data.get("ready") is True, f'GET /ready should answer {{"ready": true}}; got {data!r}'


@pytest.mark.points(2)
@pytest.mark.covers("rate-limit", "rate-per-key", "retry-after", "env-rate-limit")
def test_rate_limit_allows_exactly_n_then_429_per_key(fleet):
    """RATE_LIMIT requests (single and batch alike) are served, the next is 429 with Retry-After; other keys go on."""
    server = fleet["main"].ready()
    keys = fleet.keys["main"]
    key, responses, seconds = limited_burst(keys.take, server, MAIN_RATE_LIMIT, MAIN_WINDOW)
    assert_limited(responses, seconds, MAIN_RATE_LIMIT, MAIN_WINDOW, "main server")
    response = call(server, "POST", "/predict/batch", key=key, body={"instances": rows(1, seed=21)})
    expect_status(response, 429, "POST /predict/batch with the same key, still within the window")
    row = rows(1, seed=22)[0]
    response = call(server, "POST", "/predict", key=keys.take(), body={"features": row})
    data = expect_status(response, 200, "POST /predict with another key while the first is limited")
    assert_prediction(data, fleet.main_model, row, "POST /predict with another key")


@pytest.mark.points(2)
@pytest.mark.covers("retry-after-honest")
def test_key_is_served_again_after_retry_after(fleet):
    """After the Retry-After of a 429 the key is served again: after a burst, and after requests spread over the window."""
    server = fleet["main"].ready()
    keys = fleet.keys["main"]
    row = rows(1, seed=23)[0]
    # Spread: one request now, the rest half a window later. A sliding window frees the
    # first one's place a window after it, not a window after the last request.
    spread_key, spread_started = keys.take(), time.monotonic()
    expect_status(call(server, "POST", "/predict", key=spread_key, body={"features": row}), 200,
                  "POST /predict, the first request of a fresh key")
    # Burst: RATE_LIMIT requests at once, then refused.
    burst_key, responses, seconds = limited_burst(keys.take, server, MAIN_RATE_LIMIT, MAIN_WINDOW)
    burst_wait = assert_limited(responses, seconds, MAIN_RATE_LIMIT, MAIN_WINDOW, "main server")
    burst_due = time.monotonic() + burst_wait
    time.sleep(max(0.0, spread_started + MAIN_WINDOW / 2 - time.monotonic()))
    spread = []
    for _ in range(3 * MAIN_RATE_LIMIT):
        spread.append(call(server, "POST", "/predict", key=spread_key, body={"features": row}))
        if spread[-1].status_code != 200:
            break
    expect_status(spread[-1], 429, f"POST /predict with a key that made 1 request {MAIN_WINDOW / 2:g} s ago "
                                   f"and {len(spread) - 1} just now (RATE_LIMIT={MAIN_RATE_LIMIT})")
    header = spread[-1].headers.get("retry-after", "")
    assert header.strip().isdigit() and int(header) >= 1, f"a 429 should carry Retry-After, whole seconds >= 1; got {header!r}"
    spread_due = time.monotonic() + int(header)
    for what, key, due, wait in sorted([
        ("after a burst", burst_key, burst_due, burst_wait),
        (f"after 1 request and {len(spread) - 1} more {MAIN_WINDOW / 2:g} s later", spread_key, spread_due, int(header)),
    ], key=lambda case: case[2]):
        time.sleep(max(0.0, due - time.monotonic()))
        response = call(server, "POST", "/predict", key=key, body={"features": row})
        expect_status(response, 200, f"POST /predict with a key refused {what}, {wait} s (its Retry-After) "
                                     "after the 429")


# == checks on servers of their own, one check each (the main model, a few settings) ==========


@pytest.mark.points(1)
@pytest.mark.covers("retry-after-honest", "rate-limit-shared")
def test_redis_limited_key_is_served_again_after_retry_after(fleet):
    """With REDIS_URL and a 2 s window, a refused key is served again once its Retry-After has passed."""
    server = fleet["redis_window"].ready()
    limit, window = REDIS_WINDOW_LIMIT, REDIS_WINDOW
    key = fleet.role_keys["redis_window"]
    row = rows(1, seed=29)[0]
    what = f"the app with REDIS_URL, RATE_LIMIT={limit}, RATE_LIMIT_WINDOW={window:g}"
    responses = []
    for _ in range(3 * limit + 1):  # until the first refusal; how many are served is checked elsewhere
        responses.append(call(server, "POST", "/predict", key=key, body={"features": row}))
        if responses[-1].status_code != 200:
            break
    expect_status(responses[-1], 429, f"{what}: request {len(responses)} of a quick burst with one key")
    header = responses[-1].headers.get("retry-after", "")
    assert header.strip().isdigit() and 1 <= int(header) <= math.ceil(window), (
        f"{what}: the 429 should carry Retry-After between 1 and {math.ceil(window)}; got {header!r}"
    )
    time.sleep(int(header) + 0.05)
    response = call(server, "POST", "/predict", key=key, body={"features": row})
    expect_status(response, 200, f"{what}: POST /predict {header} s (the 429's Retry-After) after the refusal "
                                 "(is the Redis key's expiry set in the window's unit?)")


@pytest.mark.points(1)
@pytest.mark.covers("constant-time")
def test_keys_are_compared_with_compare_digest(fleet):
    """The presented key reaches hmac.compare_digest (or secrets.compare_digest), valid or not."""
    # The spy server imports the learner's app through a module of the graders' that records
    # both functions' arguments in a file (ce3_1_support.SPY_SOURCE); read here after each request.
    server = fleet["spy"].ready()
    key = fleet.role_keys["spy"]
    row = rows(1, seed=19)[0]
    for presented, status in ((key, 200), ("wrong-" + secrets.token_hex(8), 403)):
        offset = file_size(fleet.spy_log)
        response = call(server, "POST", "/predict", key=presented, body={"features": row})
        expect_status(response, status, f"POST /predict with key {presented!r}")
        calls = spied_calls(fleet.spy_log, offset)
        forms = key_forms(presented)
        assert any(a in forms or b in forms for a, b in calls), (
            f"the key {presented!r} should be compared with hmac.compare_digest or "
            f"secrets.compare_digest; {len(calls)} calls to them saw other values"
            if calls else
            f"the key {presented!r} should be compared with hmac.compare_digest or "
            "secrets.compare_digest (constant time); neither was called"
        )


def key_forms(key: str) -> set:
    """The key, and its digests: comparing SHA-256 digests of the keys in constant time is right too."""
    data = key.encode()
    forms = {key, data}
    for name in ("sha256", "sha512", "sha1", "blake2b"):
        digest = hashlib.new(name, data)
        forms |= {digest.digest(), digest.hexdigest(), digest.hexdigest().encode()}
    return forms


@pytest.mark.points(1)
@pytest.mark.covers("env-empty")
def test_empty_variables_take_their_defaults(fleet):
    """Every setting present but empty (`RATE_LIMIT=`) reads as unset: the service starts and serves."""
    server = fleet["empty"].ready()
    row = rows(1, seed=21)[0]
    response = call(server, "POST", "/predict", key=fleet.role_keys["empty"], body={"features": row})
    expect_status(response, 200, "POST /predict with every other setting set to an empty value")


@pytest.mark.points(1)
@pytest.mark.covers("no-keys-no-access")
def test_without_configured_keys_nothing_is_served(fleet):
    """With neither API_KEYS nor API_KEYS_FILE set, /predict refuses everyone (401 or 403)."""
    server = fleet["no_keys"].ready()
    row = rows(1, seed=20)[0]
    for what, headers in {"no key": {}, "an empty key": {"X-API-Key": ""},
                          "a made-up key": {"X-API-Key": "anything"}}.items():
        response = call(server, "POST", "/predict", body={"features": row}, headers=headers)
        expect_status(response, (401, 403), f"POST /predict with {what} when no key is configured")


@pytest.mark.points(1)
@pytest.mark.covers("env-rate-limit")
def test_default_rate_limit_is_60_per_60_seconds(fleet):
    """RATE_LIMIT and RATE_LIMIT_WINDOW unset: a key gets 60 requests, then 429 with Retry-After of at most 60."""
    server = fleet["defaults"].ready()
    key = fleet.role_keys["defaults"]
    responses, started_at = [], time.monotonic()
    for i in range(3 * DEFAULT_RATE_LIMIT):
        responses.append(call(server, "POST", "/predict", key=key, body={"features": rows(1, seed=200 + i)[0]}))
        if responses[-1].status_code != 200:
            break
    seconds = time.monotonic() - started_at
    assert_limited(responses, seconds, DEFAULT_RATE_LIMIT, DEFAULT_WINDOW,
                   "the app with RATE_LIMIT and RATE_LIMIT_WINDOW unset (defaults 60 per 60 s)")


# == checks on the other servers (defaults, a missing model, Redis shared or unreachable) =====


@pytest.mark.points(2)
@pytest.mark.covers("load-failure", "ready-false", "health")
def test_missing_model_file_is_not_ready_and_never_a_crash(fleet):
    """With MODEL_PATH pointing at no file, the process lives: /health 200, /ready 503, /predict 503."""
    server = fleet["missing"].up()
    data = expect_status(call(server, "GET", "/health"), 200, "GET /health when the model file is missing")
    assert isinstance(data, dict) and data.get("status") == "ok", f'GET /health should answer {{"status": "ok"}}; got {data!r}'
    for _ in range(2):
        response = call(server, "GET", "/ready")
        data = expect_status(response, 503, "GET /ready when the model file is missing")
        assert isinstance(data, dict) and data.get("ready") is False, (
            f'GET /ready should answer {{"ready": false}} when the model file is missing; got {response.text[:200]!r}'
        )
        row = rows(1, seed=30)[0]
        for path, body in (("/predict", {"features": row}), ("/predict/batch", {"instances": [row]})):
            response = call(server, "POST", path, key=fleet.keys["other"].take(), body=body)
            expect_status(response, 503, f"POST {path} when the model file is missing")
            assert_error_shape(response, f"POST {path} when the model file is missing")
        time.sleep(0.2)
    assert server.alive(), "the server process should keep running when the model file is missing; it exited"


@pytest.mark.points(1)
@pytest.mark.covers("env-model-path", "env-model-name", "env-model-version")
def test_defaults_model_pkl_its_stem_and_its_hash(fleet):
    """MODEL_PATH unset: model.pkl of the working directory, named "model", versioned by its SHA-256."""
    server = fleet["plain_1"].ready()
    version = hashlib.sha256(fleet.plain_model_bytes).hexdigest()[:12]
    for i, row in enumerate(rows(10, PLAIN_FEATURES, seed=31)):
        response = call(server, "POST", "/predict", key=fleet.keys["plain"].take(), body={"features": row})
        data = expect_status(response, 200, "POST /predict on a server with every setting at its default")
        assert_prediction(data, fleet.plain_model, row, f"POST /predict with the default model.pkl (row {i})")
        assert data.get("model_name") == "model", (
            f"model_name should default to the model file's name without suffix, 'model'; got {data.get('model_name')!r}"
        )
        assert data.get("model_version") == version, (
            f"model_version should default to the first 12 hex digits of the file's SHA-256, {version!r}; "
            f"got {data.get('model_version')!r}"
        )


@pytest.mark.points(1)
@pytest.mark.covers("env-max-body", "env-max-batch")
def test_default_body_and_batch_limits(fleet):
    """Defaults: bodies up to 1 MiB and batches up to 100 rows are served; one byte or row more is refused."""
    server = fleet["plain_1"].ready()
    keys = fleet.keys["plain"]
    row = rows(1, PLAIN_FEATURES, seed=33)[0]
    expect_status(call(server, "POST", "/predict", key=keys.take(), raw=padded({"features": row}, DEFAULT_MAX_BODY)),
                  200, f"POST /predict with a body of exactly {DEFAULT_MAX_BODY} bytes (the default MAX_BODY_BYTES)")
    expect_status(call(server, "POST", "/predict", key=keys.take(),
                       raw=padded({"features": row}, DEFAULT_MAX_BODY + 1)),
                  413, f"POST /predict with a body of {DEFAULT_MAX_BODY + 1} bytes (default MAX_BODY_BYTES)")
    batch = rows(DEFAULT_MAX_BATCH + 1, PLAIN_FEATURES, seed=34)
    expect_status(call(server, "POST", "/predict/batch", key=keys.take(), body={"instances": batch[:-1]}),
                  200, f"POST /predict/batch with {DEFAULT_MAX_BATCH} rows (the default MAX_BATCH_SIZE)")
    expect_status(call(server, "POST", "/predict/batch", key=keys.take(), body={"instances": batch}),
                  422, f"POST /predict/batch with {DEFAULT_MAX_BATCH + 1} rows (default MAX_BATCH_SIZE)")


@pytest.mark.points(1)
@pytest.mark.covers("load-once")
def test_model_file_is_read_once(fleet):
    """Replacing model.pkl while the service runs changes none of its answers."""
    server = fleet["plain_1"].ready()
    fleet.swap_plain_model()
    version = hashlib.sha256(fleet.plain_model_bytes).hexdigest()[:12]
    for i, row in enumerate(rows(10, PLAIN_FEATURES, seed=32)):
        response = call(server, "POST", "/predict", key=fleet.keys["plain"].take(), body={"features": row})
        data = expect_status(response, 200, "POST /predict after model.pkl was replaced")
        assert_prediction(data, fleet.plain_model, row,
                          f"POST /predict after model.pkl was replaced on disk (row {i}): the model loaded at start")
        assert data.get("model_version") == version, (
            f"model_version should stay {version!r} (the file read at start); got {data.get('model_version')!r}"
        )


@pytest.mark.points(2)
@pytest.mark.covers("rate-limit-shared", "env-redis-url", "env-rate-limit")
def test_rate_limit_is_shared_by_two_processes_through_redis(fleet):
    """With REDIS_URL, two processes share one count: of 21 requests spread over both, RATE_LIMIT=10 are served."""
    servers = [fleet["plain_1"].ready(), fleet["plain_2"].ready()]
    keys = fleet.keys["plain"]

    limit, window = SHARED_RATE_LIMIT, DEFAULT_WINDOW
    total = 2 * limit + 1  # two processes counting alone would serve 2 x limit of them

    async def spread_burst(key: str) -> tuple[list[httpx.Response], float]:
        """``total`` requests with one key, 8 at a time, alternating between the two processes."""
        gate = asyncio.Semaphore(8)
        async with httpx.AsyncClient(timeout=30) as client:
            async def one(i: int) -> httpx.Response:
                async with gate:
                    return await client.post(f"{servers[i % 2].url}/predict", headers={"X-API-Key": key},
                                             json={"features": rows(1, PLAIN_FEATURES, seed=i)[0]})
            started = time.monotonic()
            responses = await asyncio.gather(*[one(i) for i in range(total)])
            return list(responses), time.monotonic() - started

    for _ in range(3):  # a burst under window/limit seconds pins the count exactly (see limited_burst)
        responses, seconds = asyncio.run(spread_burst(keys.take()))
        if seconds < 0.8 * window / limit:
            break
    if any(r.status_code == 500 for r in responses):
        stub_check(servers[0])
        stub_check(servers[1])
    counts = {s: sum(r.status_code == s for r in responses) for s in sorted({r.status_code for r in responses})}
    refill = math.floor(seconds * limit / window)
    assert set(counts) <= {200, 429} and limit <= counts.get(200, 0) <= limit + refill, (
        f"{total} requests with one key in {seconds:.2f} s, spread over two processes sharing a Redis, "
        f"should get {limit} answers 200" + (f" (+{refill} a token bucket refills)" if refill else "")
        + f" and the rest 429 (RATE_LIMIT={limit} per the default {window:g} s, shared); got {counts}"
    )
    limited = next(r for r in responses if r.status_code == 429)
    assert_error_shape(limited, "the 429 of two processes sharing a Redis")
    header = limited.headers.get("retry-after", "")
    assert header.strip().isdigit() and 1 <= int(header) <= window, (
        f"the 429 should carry Retry-After between 1 and {window:g} (the default window); got {header!r}"
    )
    response = call(servers[1], "POST", "/predict", key=keys.take(),
                    body={"features": rows(1, PLAIN_FEATURES, seed=0)[0]})
    expect_status(response, 200, "POST /predict with another key on the other process")


@pytest.mark.points(1)
@pytest.mark.covers("redis-down")
def test_unreachable_redis_is_never_a_500(fleet):
    """When REDIS_URL points where nobody answers, requests get 200 or 503, promptly, and the process lives on."""
    server = fleet["no_redis"].up()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and httpx.get(f"{server.url}/ready", timeout=5).status_code != 200:
        time.sleep(0.05)
    for i in range(3):
        row = rows(1, PLAIN_FEATURES, seed=24 + i)[0]
        started = time.monotonic()
        try:
            response = call(server, "POST", "/predict", key=fleet.keys["other"].take(), body={"features": row})
        except httpx.TimeoutException:
            raise AssertionError("POST /predict with Redis unreachable should answer within 15 s; it hung") from None
        seconds = time.monotonic() - started
        expect_status(response, (200, 503), "POST /predict while the Redis of REDIS_URL cannot be reached")
        if response.status_code == 503:
            assert_error_shape(response, "POST /predict while Redis cannot be reached")
        else:
            assert_prediction(response.json(), fleet.plain_model, row, "POST /predict without Redis")
        assert seconds < 10, f"POST /predict with Redis unreachable took {seconds:.1f} s; it should not hang"
    expect_status(call(server, "GET", "/health"), 200, "GET /health while Redis cannot be reached")
    assert server.alive(), "the server should keep running when Redis cannot be reached; it exited"

"""CE3.1 — REST API for model serving (FastAPI).

Serve a trained scikit-learn classifier over HTTP, ready for production: the
chapter's ``/predict`` and ``/health``, plus validation, API keys, rate limits,
one error shape, structured logs, readiness, and a batch endpoint.

The graders run ``uvicorn app:app`` (the module attribute ``app``) as a real
server and talk to it over HTTP, so any layout of routers, middleware and
helpers is fine as long as the HTTP behaviour below holds. So is any way of
calling the model: a row at a time, or, as the reference does for speed, the rows
of concurrent requests gathered into one call (and a random forest compiled into
numpy arrays by the ``compiled`` helper below), as long as each answer is the model's own.

Settings (environment variables, read when the app is created):

* ``MODEL_PATH``: the model file, saved with ``joblib.dump``: a fitted classifier with
  scikit-learn's interface (``predict``, ``predict_proba``, ``n_features_in_``);
  default ``model.pkl`` in the working directory [env-model-path].
* ``MODEL_NAME``: the model's name in responses; default the model file's name without its suffix,
  so ``model`` for ``model.pkl`` [env-model-name].
* ``MODEL_VERSION``: the model's version in responses; default the first 12 hex digits of the
  SHA-256 of the model file's bytes [env-model-version].
* ``API_KEYS``: valid API keys, separated by commas; spaces around a key are ignored [env-api-keys].
* ``API_KEYS_FILE``: a file of valid API keys, one per line; blank lines and lines starting
  with ``#`` are ignored, spaces around a key too [env-api-keys-file].
  Keys from both sources are valid together [keys-union].
* ``RATE_LIMIT`` requests per ``RATE_LIMIT_WINDOW`` seconds per API key; defaults 60 and 60 [env-rate-limit].
* ``REDIS_URL``: when set, rate-limit counts live in that Redis, so every process using it
  shares one count per key; unset, each process counts in its own memory [env-redis-url].
* ``MAX_BODY_BYTES``: largest accepted request body in bytes; default 1048576 (1 MiB) [env-max-body].
* ``MAX_BATCH_SIZE``: most rows in one batch request; default 100 [env-max-batch].

Endpoints:

* ``GET /health`` (liveness) answers 200 ``{"status": "ok"}`` whenever the process runs,
  model loaded or not, with no API key [health].
* ``GET /ready`` (readiness) answers 200 ``{"ready": true}`` once the model is loaded, with no API key [ready-true].
  While it is not loaded (still loading, or loading failed), it answers 503 with
  ``"ready": false`` in its JSON body [ready-false].
* ``POST /predict`` takes ``{"features": [x1, ..., xn]}`` and answers 200
  ``{"prediction": p, "confidence": c, "model_name": ..., "model_version": ...}`` [predict-route].
  ``p`` is the model's ``predict`` for that row, as a JSON number [prediction-value].
  ``c`` is the largest of the row's ``predict_proba`` values (the probability of the predicted class) [confidence].
  ``model_name`` and ``model_version`` are strings, also in batch responses [model-fields].
  Concurrent requests (a hundred at once) are all answered, each with its own row's answer [concurrency].
* ``POST /predict/batch`` takes ``{"instances": [[...], [...], ...]}`` and answers 200
  ``{"predictions": [{"prediction": p, "confidence": c}, ...], "model_name": ..., "model_version": ...}``,
  one entry per row, in the rows' order [batch-route].
  A batch holds 1 to ``MAX_BATCH_SIZE`` rows: an empty batch or a longer one is refused with 422 [batch-size].
  One invalid row refuses the whole batch with 422 [batch-all-or-nothing].

Validation of ``/predict`` and ``/predict/batch`` bodies:

* A row has exactly as many features as the model was trained on (its ``n_features_in_``);
  another count is refused with 422 [feature-count].
* Each feature is a finite JSON number (an integer or a decimal): NaN, Infinity, -Infinity and
  numbers too large for a float are refused with 422 [finite-numbers].
  Strings (even ``"1.5"``), booleans, null, lists and objects are refused with 422 [numbers-only].
* A body that is empty, is not JSON, or lacks the field is refused with 400 or 422 [unreadable-body].
* A body of more than ``MAX_BODY_BYTES`` bytes is refused with 413; one of exactly
  ``MAX_BODY_BYTES`` is read [body-limit]. This holds for bodies sent without a
  ``Content-Length`` (chunked) too [body-limit-chunked].
* No body, however malformed, gets a 5xx answer, and the service keeps answering
  correctly after any of them [no-5xx].

Authentication (``/predict`` and ``/predict/batch``; ``/health`` and ``/ready`` are open):

* The client sends its key in the ``X-API-Key`` header. No header, or an empty one, is
  refused with 401 [auth-missing]. A key that is not valid is refused with 403 [auth-wrong].
* The presented key is compared with each valid key with ``hmac.compare_digest`` (or
  ``secrets.compare_digest``), never with ``==`` or ``in``, so the time taken does not reveal how
  much of a key was right [constant-time].
* When no key is configured at all, every request to these endpoints is refused (401 or 403) [no-keys-no-access].

Rate limiting (per API key, on ``/predict`` and ``/predict/batch`` alike):

* A key may make ``RATE_LIMIT`` requests in a burst; a single or a batch request counts as one [rate-limit].
  The next request right after that burst is refused with 429, while other keys are still served [rate-per-key].
* A 429 carries a ``Retry-After`` header: whole seconds, at least 1 and at most
  ``RATE_LIMIT_WINDOW`` rounded up [retry-after].
  Once that many seconds have passed, the key is served again [retry-after-honest].
  Fixed windows, sliding windows and token buckets all behave this way; refused requests need
  not count.
* With ``REDIS_URL`` set, the limit holds across processes: N requests spread over two
  processes exhaust a limit of N [rate-limit-shared].
  When that Redis cannot be reached, requests are still answered (allowed, or refused with 503),
  never with a 5xx other than 503, and the process keeps running [redis-down].

Errors:

* Every answer with status 400 or above (except ``/ready``'s 503) has the JSON body
  ``{"error": {"status": <the HTTP status>, "message": <a sentence>, "request_id": <the id>}}``,
  unknown paths (404) and wrong methods (405) included [error-shape].
* An unexpected error (the model raising, a bug) is answered 500 with that shape; the body
  reveals no traceback, exception type or exception message [error-500].
* When the model file cannot be loaded (missing, unreadable), the process keeps running,
  is not ready, and ``/predict`` answers 503 [load-failure].
* The model file is read once, at start-up: replacing the file later changes nothing
  until the service restarts [load-once].

Request ids and logs:

* Every response carries an ``X-Request-ID`` header: the request's own ``X-Request-ID``
  when it sent one [request-id-echo], else a new id, unique per request [request-id-new].
* Each request writes one log line to stdout or stderr, a JSON object with at least
  ``request_id``, ``method``, ``path``, ``status`` (the HTTP status, a number) and ``duration_ms``:
  the milliseconds from the request's arrival (its headers) to its response, body upload included [log-line].
  Every line the app writes about a request is a JSON object [log-json].
* An unexpected error is logged with the request's id and the exception's message (a traceback
  is welcome), as JSON [error-logged].
* API keys never appear in the logs, valid or not [no-key-in-logs].
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import io
import json
import logging
import math
import os
import sys
import time
import traceback
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request  # noqa: F401  (Depends: for your routes' dependencies)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_json
from starlette.exceptions import HTTPException
from starlette.responses import Response

# -- request and response bodies ------------------------------------------------------------

# One feature value. As it stands, pydantic accepts "1.5", true and NaN as floats:
# make it accept finite JSON numbers only, as the module docstring asks.
Feature = float
### BEGIN SOLUTION
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False)]
### END SOLUTION


class PredictionRequest(BaseModel):
    features: list[Feature]


class BatchRequest(BaseModel):
    instances: list[list[Feature]]


class Prediction(BaseModel):
    prediction: float | int
    confidence: float


class PredictionResponse(Prediction):
    model_name: str
    model_version: str


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    model_name: str
    model_version: str


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with; ``Settings.from_env()`` reads the environment."""

    model_path: Path = Path("model.pkl")
    model_name: str | None = None
    model_version: str | None = None
    api_keys: tuple[str, ...] = ()
    api_keys_file: Path | None = None
    rate_limit: int = 60
    rate_limit_window: float = 60.0
    redis_url: str | None = None
    max_body_bytes: int = 1_048_576
    max_batch_size: int = 100

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Settings from the environment variables listed in the module docstring.

        A variable that is unset or empty takes its default [env-empty].
        """
        ### BEGIN SOLUTION
        env = os.environ if environ is None else environ

        def setting(name: str, convert, default):
            value = env.get(name, "").strip()
            return convert(value) if value else default

        return cls(
            model_path=setting("MODEL_PATH", Path, cls.model_path),
            model_name=setting("MODEL_NAME", str, None),
            model_version=setting("MODEL_VERSION", str, None),
            api_keys=tuple(k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip()),
            api_keys_file=setting("API_KEYS_FILE", Path, None),
            rate_limit=setting("RATE_LIMIT", int, cls.rate_limit),
            rate_limit_window=setting("RATE_LIMIT_WINDOW", float, cls.rate_limit_window),
            redis_url=setting("REDIS_URL", str, None),
            max_body_bytes=setting("MAX_BODY_BYTES", int, cls.max_body_bytes),
            max_batch_size=setting("MAX_BATCH_SIZE", int, cls.max_batch_size),
        )
        ### END SOLUTION


# -- API keys -----------------------------------------------------------------------------------


def load_api_keys(settings: Settings) -> list[str]:
    """The valid API keys: those of ``API_KEYS`` and those of ``API_KEYS_FILE``, together."""
    ### BEGIN SOLUTION
    keys = list(settings.api_keys)
    if settings.api_keys_file is not None:  # a file that cannot be read stops the start: a clear error
        lines = settings.api_keys_file.read_text(encoding="utf-8").splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return keys
    ### END SOLUTION


def key_is_valid(presented: str, valid_keys: list[str]) -> bool:
    """True when ``presented`` is one of ``valid_keys``, compared in constant time."""
    ### BEGIN SOLUTION
    found = False
    for key in valid_keys:  # no early exit: the time taken does not depend on which key matched
        found |= hmac.compare_digest(presented.encode("utf-8"), key.encode("utf-8"))
    return found
    ### END SOLUTION


# -- logging ------------------------------------------------------------------------------------

log = logging.getLogger("ce3_1.app")
log.propagate = False  # its records go to its own handler only, not twice through the root logger
MS_PER_SECOND = 1000


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, message, and the record's ``fields`` dict."""

    def format(self, record: logging.LogRecord) -> str:
        ### BEGIN SOLUTION
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, default=str)
        ### END SOLUTION


def configure_logging() -> None:
    """Send this app's log records to stdout as JSON lines (one handler, however often it is called)."""
    ### BEGIN SOLUTION
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    ### END SOLUTION


### BEGIN SOLUTION
# The access log is the one line every request writes, so it skips logging's machinery (a
# LogRecord, handler locks, json.dumps: ~30 us a line) for pydantic's JSON encoder, and the
# lines of one event-loop turn leave in one write.
_access_lines: list[bytes] = []


def write_access_line(fields: dict[str, Any]) -> None:
    """Queue one request's JSON log line; the loop's next turn writes the queued lines to stdout."""
    if not _access_lines:
        asyncio.get_running_loop().call_soon(flush_access_lines)
    _access_lines.append(to_json({
        "timestamp": datetime.now(UTC).isoformat(), "level": "info", "message": "request", **fields}))


def flush_access_lines() -> None:
    lines = b"\n".join(_access_lines) + b"\n"
    _access_lines.clear()
    sys.stdout.write(lines.decode())
    sys.stdout.flush()
### END SOLUTION


# -- rate limiting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """A rate limiter's answer: served or not, and if not, whole seconds to wait."""

    allowed: bool
    retry_after: int = 0


class RateLimitUnavailable(RuntimeError):
    """The shared rate-limit store (Redis) cannot be reached."""


class InProcessRateLimiter:
    """A sliding-window log per key, in this process's memory: right for one worker."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str) -> Decision:
        """Count one request of ``key`` if its window has room; else say how long to wait."""
        ### BEGIN SOLUTION
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) < self.limit:
            hits.append(now)
            return Decision(True)
        # The oldest request leaves the window in `wait` seconds (> 0): then one more fits.
        wait = hits[0] + self.window - now
        return Decision(False, retry_after=math.ceil(wait))
        ### END SOLUTION

    async def close(self) -> None:
        pass


class RedisRateLimiter:
    """A window per key that starts with the key's first request, counted in Redis.

    ``INCR`` is atomic, so all processes sharing the Redis share one count per key.
    The Redis key holds a hash of the API key, never the API key itself.
    """

    def __init__(self, url: str, limit: int, window: float):
        import redis.asyncio as redis_asyncio

        self.limit = limit
        self.window_ms = max(1, int(window * 1000))
        # Short timeouts: an unreachable Redis must not hold requests for long.
        self.redis = redis_asyncio.from_url(url, socket_connect_timeout=1, socket_timeout=1)

    async def hit(self, key: str) -> Decision:
        """Count one request of ``key``; raise RateLimitUnavailable when Redis does not answer."""
        ### BEGIN SOLUTION
        name = "ce3_1:ratelimit:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
        try:
            async with self.redis.pipeline() as pipe:  # MULTI ... EXEC: one atomic step
                pipe.set(name, 0, px=self.window_ms, nx=True)  # a new window: count 0, expires with it
                pipe.incr(name)  # INCR keeps the key's time to live
                pipe.pttl(name)
                _, count, ttl_ms = await pipe.execute()
        except Exception as exc:  # connection refused, timeout, a Redis error
            raise RateLimitUnavailable(f"rate-limit store unreachable: {type(exc).__name__}") from exc
        if count <= self.limit:
            return Decision(True)
        # SET ... PX NX in the same transaction: the window always has a time to live (> 0).
        return Decision(False, retry_after=math.ceil(ttl_ms / MS_PER_SECOND))
        ### END SOLUTION

    async def close(self) -> None:
        await self.redis.aclose()


# -- the model ----------------------------------------------------------------------------------


def compiled(model: Any) -> Any:
    """``model``'s fast form when it is a scikit-learn random forest (or extra trees, or one decision
    tree) that compiles exactly; else ``model`` itself. Optional: the reference calls it in ``load``.

    scikit-learn calls a forest's trees one by one (~30 us each, whatever the number of rows), so a
    100-tree forest costs ~3 ms a call. ``CompiledForest`` walks every tree for every row at once,
    on numpy arrays, and gives the same ``predict`` and ``predict_proba``: that is checked here, on
    rows built from the trees' own thresholds, before it is used.
    """
    if not type(model).__module__.startswith("sklearn."):  # not scikit-learn's: no need to import it
        return model
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    trees = (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier)
    if not isinstance(model, trees) or model.n_outputs_ != 1:
        return model
    fast = CompiledForest(model)
    probe = fast.probe_rows()
    if not (np.array_equal(fast.predict(probe), model.predict(probe))
            and np.allclose(fast.predict_proba(probe), model.predict_proba(probe), rtol=0, atol=1e-9)):
        log.warning("the forest did not compile exactly; it is served as it is")
        return model
    return fast


class CompiledForest:
    """A fitted tree classifier as flat numpy arrays, with the same ``predict`` and ``predict_proba``.

    Every node of every tree gets one row in ``feature``, ``threshold`` and ``value``, and two in
    ``children`` (left, then right); a leaf's children are itself, so a path that reaches its leaf
    stays there while the others go on. A row goes right when ``float32(x) > threshold``, as in
    scikit-learn (which compares the row cast to float32 with ``<=``), and the trees' leaf
    probabilities are summed in the trees' order, then divided by their number, as scikit-learn does.
    """

    def __init__(self, model: Any):
        trees = [tree.tree_ for tree in getattr(model, "estimators_", [model])]
        starts = np.cumsum([0] + [tree.node_count for tree in trees[:-1]])
        feature, threshold, children, value = [], [], [], []
        for tree, start in zip(trees, starts, strict=True):
            leaf = tree.children_left < 0
            itself = start + np.arange(tree.node_count)
            feature.append(np.where(leaf, 0, tree.feature))
            threshold.append(np.where(leaf, np.inf, tree.threshold))
            left = np.where(leaf, itself, start + tree.children_left)
            right = np.where(leaf, itself, start + tree.children_right)
            children.append(np.stack([left, right], axis=1).ravel())
            value.append(tree.value[:, 0, :])
        self.model = model
        self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_
        self.feature = np.concatenate(feature).astype(np.intp)
        self.threshold = np.concatenate(threshold)
        self.children = np.concatenate(children).astype(np.intp)
        self.value = np.concatenate(value)
        self.roots = starts.astype(np.intp)
        self.depth = max(tree.max_depth for tree in trees)
        self._last: tuple[Any, Any] = (None, None)

    def predict_proba(self, X) -> np.ndarray:
        last_X, last_proba = self._last
        if last_X is X:  # predict(X) just walked the trees for this very array
            return last_proba.copy()
        X32 = np.asarray(X, dtype=np.float32)
        if X32.ndim != 2 or X32.shape[1] != self.n_features_in_ or not np.isfinite(X32).all():
            return self.model.predict_proba(X)  # scikit-learn's own checks, errors and missing values
        n, n_trees = len(X32), len(self.roots)
        x = X32.astype(np.float64).ravel()
        node = np.tile(self.roots, n)  # row i's path in tree t: node[i * n_trees + t]
        row_start = np.repeat(np.arange(n, dtype=np.intp) * self.n_features_in_, n_trees)
        for _ in range(self.depth):
            node = self.children[2 * node + (x[row_start + self.feature[node]] > self.threshold[node])]
        proba = np.zeros((n, self.value.shape[1]))
        for leaf_values in self.value[node].reshape(n, n_trees, -1).transpose(1, 0, 2):
            proba += leaf_values
        if n_trees > 1:
            proba /= n_trees
        return proba

    def predict(self, X) -> np.ndarray:
        self._last = (None, None)
        proba = self.predict_proba(X)
        self._last = (X, proba)  # kept for a predict_proba of the same array (not changed meanwhile)
        return self.classes_.take(np.argmax(proba, axis=1), axis=0)

    def probe_rows(self, n: int = 512) -> np.ndarray:
        """Rows whose values are the trees' thresholds (as float32: ties included) or just beside them."""
        rng = np.random.default_rng(0)
        inner = self.threshold < np.inf
        rows = rng.normal(size=(n, self.n_features_in_))
        for f in range(self.n_features_in_):
            cuts = self.threshold[inner & (self.feature == f)].astype(np.float32)
            if len(cuts):
                picked = rng.choice(cuts, size=n)
                nudge = rng.choice(np.array([-1, 0, 0, 1], dtype=np.float32), size=n)
                rows[:, f] = np.nextafter(picked, picked + nudge)
        return rows


class ModelService:
    """The model and what responses say about it. ``model`` stays None until ``load`` succeeds."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.model: Any = None
        self.name = ""
        self.version = ""
        self.n_features = 0

    def load(self) -> None:
        """Read the model file once; ``model`` is set last, and only when everything worked.

        A failure (missing file, not a model) may raise: ``create_app`` logs it, and the
        service stays up and not ready.
        """
        ### BEGIN SOLUTION
        import joblib  # imports scikit-learn: slow, so not at module import

        path = self.settings.model_path
        data = path.read_bytes()  # a missing file raises: create_app logs it, and stays not ready
        model = joblib.load(io.BytesIO(data))
        n_features = int(model.n_features_in_)
        self.name = self.settings.model_name or path.stem
        self.version = self.settings.model_version or hashlib.sha256(data).hexdigest()[:12]
        self.n_features = n_features
        self.model = compiled(model)  # last: the service is ready from here on
        # The model and the libraries are here for good: leave them out of the garbage
        # collector's full passes, which would otherwise walk them all (~100 ms) every few seconds.
        gc.freeze()
        log.info("model loaded", extra={"fields": {
            "model_name": self.name, "model_version": self.version, "n_features": n_features}})
        ### END SOLUTION

    def predict(self, rows: list[list[float]]) -> list[dict[str, Any]]:
        """``{"prediction": ..., "confidence": ...}`` for each row, in order."""
        ### BEGIN SOLUTION
        X = np.asarray(rows, dtype=float)
        labels = self.model.predict(X).tolist()  # Python numbers (or strings), as JSON wants them
        confidence = self.model.predict_proba(X).max(axis=1).tolist()
        return [{"prediction": p, "confidence": c} for p, c in zip(labels, confidence, strict=True)]
        ### END SOLUTION


### BEGIN SOLUTION
class MicroBatcher:
    """One model call for the rows of all the requests that wait at once (adaptive micro-batching).

    A request's rows join the queue, and the first to arrive schedules a flush for the event
    loop's next turn: a lone request waits for nothing, while the requests that arrive
    together, or while the model was busy with the last batch (the call holds the loop), share
    one call. A model call costs much the same for 1 row as for 30 (scikit-learn's checks,
    a forest's hundred trees), so under load each row costs a fraction of a call. If the
    batch's call raises, each request is answered on its own: a row the model chokes on fails
    its own request only.
    """

    def __init__(self, predict):
        self.predict = predict
        self.queue: list[tuple[list[list[float]], asyncio.Future]] = []

    async def __call__(self, rows: list[list[float]]) -> list[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        if not self.queue:
            asyncio.get_running_loop().call_soon(self.flush)
        self.queue.append((rows, future))
        return await future

    def flush(self) -> None:
        queue, self.queue = self.queue, []
        try:
            answers = self.predict([row for rows, _ in queue for row in rows])
        except Exception:
            for rows, future in queue:
                try:
                    answer = self.predict(rows)
                except Exception as exc:
                    answer = exc
                _settle(future, answer)
            return
        start = 0
        for rows, future in queue:
            _settle(future, answers[start:start + len(rows)])
            start += len(rows)


def _settle(future: asyncio.Future, answer: Any) -> None:
    """Give a waiting request its answer (or exception), unless it was cancelled meanwhile."""
    if future.cancelled():
        return
    if isinstance(answer, Exception):
        future.set_exception(answer)
    else:
        future.set_result(answer)
### END SOLUTION


# -- errors ---------------------------------------------------------------------------------------


def error_response(status: int, message: str, request_id: str, headers: dict | None = None) -> JSONResponse:
    """The one error shape: ``{"error": {"status", "message", "request_id"}}``, with the X-Request-ID header."""
    ### BEGIN SOLUTION
    return JSONResponse(
        {"error": {"status": status, "message": message, "request_id": request_id}},
        status_code=status, headers={**(headers or {}), "X-Request-ID": request_id},
    )
    ### END SOLUTION


# -- the middleware: request ids, body limit, access log, last-resort errors ----------------------


class RequestContextMiddleware:
    """Pure ASGI middleware around every HTTP request.

    It gives the request an id (``scope["state"]["request_id"]``), refuses a body over
    the limit before the app reads it, turns an unexpected exception into a 500 with the
    error shape, and writes the request's log line. (Pure ASGI rather than
    ``@app.middleware("http")``: it costs less per request.)
    """

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ### BEGIN SOLUTION
        started = time.perf_counter()
        request_id = declared = ""
        for name, value in scope["headers"]:  # ASGI header names are lower-case bytes
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value.decode("latin-1")
        request_id = request_id or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        status: int | None = None  # until the response starts

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"], id_header]
            await send(message)

        try:
            body, too_large = await self._read_body(declared, receive)
            if too_large:
                response = error_response(
                    413, f"the request body is larger than {self.max_body_bytes} bytes", request_id)
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, _replay(body), send_with_id)
        except Exception as exc:
            log.error("unexpected error", exc_info=exc, extra={"fields": {"request_id": request_id}})
            if status is None:
                response = error_response(500, "internal error: the request could not be served", request_id)
                await response(scope, receive, send_with_id)
        finally:
            write_access_line({
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": (time.perf_counter() - started) * MS_PER_SECOND,
            })
        ### END SOLUTION

    async def _read_body(self, declared: str, receive) -> tuple[bytes, bool]:
        """The whole request body, or (b"", True) as soon as it is known to exceed the limit.

        ``declared`` is the request's Content-Length header ("" when it has none).
        """
        ### BEGIN SOLUTION
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return b"", True
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks), False
        ### END SOLUTION


def _replay(body: bytes):
    """An ASGI ``receive`` that hands the app the body already read, then waits for a disconnect."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()

    return receive


# -- the app ------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app, configured by ``settings`` (default: ``Settings.from_env()``).

    The model loads in a thread when the app starts, so ``/health`` and ``/ready``
    answer at once, and ``/ready`` turns true when the load has finished.
    """
    settings = settings or Settings.from_env()
    configure_logging()
    service = ModelService(settings)
    valid_keys = load_api_keys(settings)
    if settings.redis_url:
        limiter = RedisRateLimiter(settings.redis_url, settings.rate_limit, settings.rate_limit_window)
    else:
        limiter = InProcessRateLimiter(settings.rate_limit, settings.rate_limit_window)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.create_task(asyncio.to_thread(service.load))
        loading.add_done_callback(_log_failure)
        yield
        await asyncio.gather(loading, return_exceptions=True)
        await limiter.close()

    app = FastAPI(title="CE3.1 model server", lifespan=lifespan)
    app.state.settings = settings
    app.state.model_service = service
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Errors raised on purpose (401, 403, 404, 405, 429, 503...) in the error shape."""
        ### BEGIN SOLUTION
        return error_response(exc.status_code, str(exc.detail), _request_id(request), exc.headers)
        ### END SOLUTION

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A body pydantic refused, in the error shape (and without echoing the input)."""
        ### BEGIN SOLUTION
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(422, f"invalid request: {problems}", _request_id(request))
        ### END SOLUTION

    async def authorised(request: Request) -> str:
        """The request's API key, once it is valid and within its rate limit."""
        ### BEGIN SOLUTION
        presented = request.headers.get("x-api-key", "")
        if not presented:
            raise HTTPException(401, "missing API key: send it in the X-API-Key header")
        if not key_is_valid(presented, valid_keys):
            raise HTTPException(403, "invalid API key")
        try:
            decision = await limiter.hit(presented)
        except RateLimitUnavailable:
            log.error("rate-limit store unreachable", extra={"fields": {"request_id": _request_id(request)}})
            raise HTTPException(503, "rate limiting is unavailable; try again shortly") from None
        if not decision.allowed:
            raise HTTPException(
                429, f"rate limit of {settings.rate_limit} requests per {settings.rate_limit_window:g} s exceeded",
                headers={"Retry-After": str(decision.retry_after)})
        return presented
        ### END SOLUTION

    def loaded_model() -> ModelService:
        """The model service, or 503 while the model is not loaded."""
        ### BEGIN SOLUTION
        if service.model is None:
            raise HTTPException(503, "the model is not loaded")
        return service
        ### END SOLUTION

    @app.get("/health")
    async def health() -> dict:
        ### BEGIN SOLUTION
        return {"status": "ok"}
        ### END SOLUTION

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ### BEGIN SOLUTION
        if service.model is None:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})
        ### END SOLUTION

    # POST /predict and POST /predict/batch, as the module docstring says: for instance FastAPI
    # routes, @app.post(..., response_model=PredictionResponse) with a PredictionRequest body and
    # dependencies=[Depends(authorised)]; any other layout answers as well.
    ### BEGIN SOLUTION
    # Plain Starlette routes rather than FastAPI's: FastAPI's dependency solving and response
    # validation cost more than the rest of a request together. The body is validated by
    # pydantic straight from its bytes, and the model is called through a MicroBatcher.
    batcher = MicroBatcher(service.predict)

    async def parsed(request: Request, schema: type[BaseModel]) -> Any:
        try:
            return schema.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None

    async def predict(request: Request) -> Response:
        await authorised(request)
        body = await parsed(request, PredictionRequest)
        model = loaded_model()
        _check_width([body.features], model.n_features, "features")
        answer = (await batcher([body.features]))[0]
        return json_response({**answer, "model_name": model.name, "model_version": model.version})

    async def predict_batch(request: Request) -> Response:
        await authorised(request)
        body = await parsed(request, BatchRequest)
        model = loaded_model()
        rows = body.instances
        if not 1 <= len(rows) <= settings.max_batch_size:
            raise HTTPException(422, f"a batch holds 1 to {settings.max_batch_size} rows; got {len(rows)}")
        _check_width(rows, model.n_features, "instances")
        return json_response({"predictions": await batcher(rows), "model_name": model.name,
                              "model_version": model.version})

    app.add_route("/predict", predict, methods=["POST"])
    app.add_route("/predict/batch", predict_batch, methods=["POST"])
    ### END SOLUTION

    return app


### BEGIN SOLUTION
def _check_width(rows: list[list[float]], n_features: int, where: str) -> None:
    for i, row in enumerate(rows):
        if len(row) != n_features:
            raise HTTPException(422, f"{where}: row {i} should have {n_features} features; got {len(row)}")


def json_response(content: Any) -> Response:
    """A JSON response encoded by pydantic's serializer (several times faster than json.dumps)."""
    return Response(to_json(content), media_type="application/json")
### END SOLUTION


def _request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def _log_failure(task: asyncio.Task) -> None:
    """Log why the model did not load; the service stays up, and not ready."""
    if not task.cancelled() and task.exception() is not None:
        log.error("model not loaded", exc_info=task.exception())


app = create_app()

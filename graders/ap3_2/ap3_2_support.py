"""Support for the AP3.2 graders: the model, real API Gateway v2 events, and the graders' own
reference servers (a counting REST app, a counting serverless handler) for grading the harness."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

N_FEATURES = 6
LABELS = np.array([10, 20, 30])  # class labels that are not 0..k-1: a label is not an index
COLD_DELAY_S = 0.3  # how long the slow model takes to unpickle: the graders' cold start


def train_model() -> LogisticRegression:
    """A 3-class LogisticRegression on 6 features, fixed seed."""
    X, y = make_classification(n_samples=400, n_features=N_FEATURES, n_informative=4, n_redundant=0,
                               n_classes=3, n_clusters_per_class=1, random_state=0)
    return LogisticRegression(max_iter=2000).fit(X, LABELS[y])


def other_model() -> LogisticRegression:
    """A different model (other seed, labels in another order), to tell which one answers."""
    X, y = make_classification(n_samples=400, n_features=N_FEATURES, n_informative=4, n_redundant=0,
                               n_classes=3, n_clusters_per_class=1, random_state=7)
    return LogisticRegression(max_iter=2000).fit(X, LABELS[::-1][y])


def rows(n: int, seed: int) -> list[list[float]]:
    """``n`` fixed rows of feature values (plain floats)."""
    return np.random.default_rng(seed).normal(0, 1.5, size=(n, N_FEATURES)).round(6).tolist()


class _SleepOnLoad:
    """Unpickles as ``time.sleep(COLD_DELAY_S)`` (then None): only the standard library is needed to load it."""

    def __reduce__(self):
        return (time.sleep, (COLD_DELAY_S,))


def slow_model() -> LogisticRegression:
    """The main model, carrying an attribute that takes COLD_DELAY_S to unpickle: a measurable cold start."""
    model = train_model()
    model.cold_start_padding_ = _SleepOnLoad()
    return model


def event(method: str, path: str, body: str | bytes | None = None, *, b64: bool = False) -> dict:
    """A real API Gateway HTTP API event (payload format version 2.0), as AWS sends it."""
    if body is not None and b64:
        body = base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode()
    elif isinstance(body, bytes):
        body = body.decode()
    evt = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "verbose=1",
        "cookies": ["session=abc"],
        "headers": {
            "accept": "*/*", "content-length": str(len(body or "")),
            "content-type": "application/json", "host": "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
            "user-agent": "curl/7.88.1", "x-amzn-trace-id": "Root=1-5e6722a7-cc56xmpl46db7ae02d4da47e",
            "x-forwarded-for": "205.255.255.176", "x-forwarded-port": "443", "x-forwarded-proto": "https",
        },
        "queryStringParameters": {"verbose": "1"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "r3pmxmplak",
            "domainName": "r3pmxmplak.execute-api.us-east-2.amazonaws.com", "domainPrefix": "r3pmxmplak",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "205.255.255.176", "userAgent": "curl/7.88.1"},
            "requestId": "JKJaXmPLvHcESHA=", "routeKey": "$default", "stage": "$default",
            "time": "10/Mar/2020:05:16:23 +0000", "timeEpoch": 1583817383220,
        },
        "isBase64Encoded": b64,
    }
    if body is not None:
        evt["body"] = body
    return evt


def predict_event(features, *, b64: bool = False) -> dict:
    return event("POST", "/predict", json.dumps({"features": features}), b64=b64)


class Context:
    """A Lambda context object."""

    function_name = "grader"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# The graders' own REST app: it counts the requests it answers, so the harness's count can be
# checked against what the server saw.
REST_APP = '''
import os, threading
import joblib
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

MODEL = joblib.load(os.environ["MODEL_PATH"])
SEEN = {"predict": 0, "broken": 0}
LOCK = threading.Lock()

async def predict(request):
    body = await request.json()
    with LOCK:
        SEEN["predict"] += 1
    label = MODEL.predict([body["features"]])[0].item()
    return JSONResponse({"prediction": label})

async def stats(request):
    return JSONResponse(SEEN)

async def health(request):
    return JSONResponse({"status": "ok"})

async def fail(request):
    with LOCK:
        SEEN["broken"] += 1
    return JSONResponse({"error": "down for maintenance"}, status_code=503)

app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/stats", stats),
                        Route("/health", health), Route("/broken/predict", fail, methods=["POST"])])
'''

# The graders' own serverless handler: it takes COLD_DELAY_S to load (a slow model), checks that
# each event is a v2.0 POST /predict event with a JSON body, and appends one line per invocation
# to LOG_FILE (set when the file is written) with the time spent inside the call, so the harness's
# counts and latencies can be checked.
HANDLER = '''
import json, os, time
import joblib

LOG_FILE = {log_file!r}
IMPORTED_AT = time.time()
_model = None

def handler(event, context):
    global _model
    entered = time.perf_counter()
    problems = []
    if event.get("version") != "2.0":
        problems.append("version")
    if event.get("requestContext", {{}}).get("http", {{}}).get("method") != "POST":
        problems.append("method")
    if event.get("rawPath") != "/predict":
        problems.append("rawPath")
    body = event.get("body")
    if event.get("isBase64Encoded"):
        import base64
        body = base64.b64decode(body).decode()
    features = json.loads(body)["features"]
    cold = _model is None
    if cold:
        _model = joblib.load(os.environ["MODEL_PATH"])
    label = _model.predict([features])[0].item()
    with open(LOG_FILE, "a") as log:
        log.write(json.dumps({{"module": __name__, "cold": cold, "problems": problems,
                              "model_path": os.environ.get("MODEL_PATH"),
                              "has_context": hasattr(context, "get_remaining_time_in_millis"),
                              "inside_ms": (time.perf_counter() - entered) * 1000}}) + "\\n")
    return {{"statusCode": 200, "headers": {{"content-type": "application/json"}},
            "body": json.dumps({{"prediction": label}})}}
'''

# A handler that fails: the harness should raise, not record a result.
FAILING_HANDLER = '''
import json

def handler(event, context):
    return {"statusCode": 500, "headers": {"content-type": "application/json"},
            "body": json.dumps({"error": "boom"})}
'''

"""Cold start and warm latency of the AP3.2 reference serverless handler.

The handler (solutions/ap3_2/handler.py, or --handler PATH) is invoked with API Gateway
HTTP API v2.0 events for ``POST /predict``, as Lambda would, for two models:
a LogisticRegression and a 100-tree RandomForest, both on 20 features.

* process cold start: a fresh Python process imports the handler and answers its first
  event (interpreter start, imports, model load, first prediction), timed from outside;
  the median of --repeats runs;
* in-process cold start: the handler file imported afresh in this process, then its first
  invocation (model load + first prediction): what AP3.2's harness calls ``cold_start_ms``;
* warm latency: p50/p95/p99 of --warm invocations after the first.

Every answer is checked against the model's own ``predict`` before timing counts.

    .venv/bin/python benchmarks/serving/bench_serverless.py
    .venv/bin/python benchmarks/serving/bench_serverless.py --warm 5000 --json /tmp/serverless.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[2]
N_FEATURES = 20

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import importlib.util
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t1 = time.perf_counter()
event = json.loads(sys.argv[2])
response = module.handler(event, None)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1, "status": response["statusCode"],
                  "body": response["body"]}))
"""


def event(features: list[float]) -> dict:
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/predict", "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/predict", "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "bench"},
                           "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default"},
        "body": json.dumps({"features": features}), "isBase64Encoded": False,
    }


def models() -> dict:
    X, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=10, random_state=0)
    return {
        "logistic_regression": LogisticRegression(max_iter=2000).fit(X, y),
        "random_forest_100": RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y),
    }


def fresh_handler(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_handler_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(name: str, model, handler_path: Path, folder: Path, repeats: int, warm: int) -> dict:
    model_path = folder / f"{name}.joblib"
    joblib.dump(model, model_path)
    rows = np.random.default_rng(1).normal(size=(warm + 1, N_FEATURES)).round(6).tolist()
    expected = model.predict(rows).tolist()
    env = {**os.environ, "MODEL_PATH": str(model_path), "OMP_NUM_THREADS": "1"}

    process_cold, child_import, child_first = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(handler_path), json.dumps(event(rows[0]))],
                             env=env, capture_output=True, text=True, timeout=120, check=True)
        process_cold.append(time.perf_counter() - started)
        child = json.loads(out.stdout.strip().splitlines()[-1])
        assert child["status"] == 200 and json.loads(child["body"])["prediction"] == expected[0], child
        child_import.append(child["import_s"])
        child_first.append(child["first_call_s"])

    os.environ["MODEL_PATH"] = str(model_path)
    in_process_cold = []
    for _ in range(repeats):
        started = time.perf_counter()
        module = fresh_handler(handler_path)
        response = module.handler(event(rows[0]), None)
        in_process_cold.append(time.perf_counter() - started)
        assert response["statusCode"] == 200

    latencies = []
    for row, want in zip(rows[1:], expected[1:], strict=True):
        evt = event(row)
        started = time.perf_counter()
        response = module.handler(evt, None)
        latencies.append(time.perf_counter() - started)
        assert json.loads(response["body"])["prediction"] == want
    direct = []
    for row in rows[1:201]:
        started = time.perf_counter()
        model.predict([row])
        model.predict_proba([row])
        direct.append(time.perf_counter() - started)
    ms = np.asarray(latencies) * 1000
    return {
        "model": name,
        "model_file_mb": round(model_path.stat().st_size / 1e6, 2),
        "process_cold_start_ms_median": round(statistics.median(process_cold) * 1000, 1),
        "process_import_ms_median": round(statistics.median(child_import) * 1000, 1),
        "process_first_call_ms_median": round(statistics.median(child_first) * 1000, 1),
        "in_process_cold_start_ms_median": round(statistics.median(in_process_cold) * 1000, 2),
        "warm_invocations": len(latencies),
        "warm_p50_ms": round(float(np.percentile(ms, 50)), 3),
        "warm_p95_ms": round(float(np.percentile(ms, 95)), 3),
        "warm_p99_ms": round(float(np.percentile(ms, 99)), 3),
        "warm_per_s": round(len(latencies) / sum(latencies), 1),
        "direct_predict_p50_ms": round(float(np.percentile(np.asarray(direct) * 1000, 50)), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handler", type=Path, default=ROOT / "solutions" / "ap3_2" / "handler.py")
    parser.add_argument("--repeats", type=int, default=5, help="cold starts measured per model")
    parser.add_argument("--warm", type=int, default=2000, help="warm invocations per model")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-serverless-") as tmp:
        for name, model in models().items():
            results.append(bench(name, model, args.handler, Path(tmp), args.repeats, args.warm))
    load = os.getloadavg()[0]
    print(f"handler: {args.handler} | load average {load:.1f} | {os.cpu_count()} CPUs")
    columns = list(results[0])
    print(" | ".join(columns))
    for r in results:
        print(" | ".join(str(r[c]) for c in columns))
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What CE4.1's instrumentation costs: the CE4.1 model service with and without its Prometheus
metrics, in the same run, driven by wrk (issue #10: at most 10% of the throughput).

Contenders, each ``solutions/ce4_1/serving.py`` under one uvicorn worker serving the same
LogisticRegression (20 features):

* ``bare``: serving.py with a ``metrics.py`` that does nothing (no middleware, no /metrics);
* ``instrumented``: serving.py with the reference ``solutions/ce4_1/metrics.py``;
* ``instrumented-multiprocess``: the same with ``PROMETHEUS_MULTIPROC_DIR`` set (values in
  memory-mapped files, what ``--workers N`` needs), still one worker.

The contenders take turns (bare, instrumented, multiprocess, bare, ...) ``--repeats`` times,
so a change in the machine's load hits them alike; the medians are compared. Before timing,
one answer of each is checked against the model's own ``predict``/``predict_proba``, and the
instrumented ones must count the timed requests exactly. Uses bench_serving.py's wrk driver.

    .venv/bin/python benchmarks/serving/bench_instrumentation.py --json benchmarks/results/instrumentation.json

On a shared 2-core machine wrk competes with the server for the CPUs: compare contenders of
one run, and read the load average recorded next to the figures. Beside wrk's req/s, the
script measures the CPU time one request costs each contender, driving its ASGI app in
process (``time.process_time``, all threads): on a busy machine that figure is far steadier,
and ``1 - bare / instrumented`` is the throughput a CPU-bound server loses to the metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_serving import ROOT, run_wrk, start, stop  # noqa: E402  (the same servers and wrk load)

SOLUTION = ROOT / "solutions" / "ce4_1"
N_FEATURES = 20
TARGET_COST = 0.10  # issue #10: instrumentation costs at most 10% of the throughput

NULL_METRICS = textwrap.dedent('''
    """No metrics at all: the baseline of the instrumentation benchmark."""


    class ServingMetrics:
        def __init__(self, registry=None, *, model_name, model_version, classes=()):
            pass

        def record_prediction(self, predicted_class, confidence):
            pass


    def instrument(app, metrics):
        pass
''')


def prepare(work: Path) -> tuple[dict[str, tuple[Path, dict[str, str]]], str, LogisticRegression]:
    X, y = make_classification(n_samples=2000, n_features=N_FEATURES, n_informative=10, random_state=0)
    model = LogisticRegression(max_iter=2000).fit(X, y)
    joblib.dump(model, work / "model.joblib")
    env = {"MODEL_PATH": str(work / "model.joblib"), "MODEL_NAME": "bench", "MODEL_VERSION": "1"}
    contenders = {}
    for name, metrics_source in {"bare": NULL_METRICS,
                                 "instrumented": (SOLUTION / "metrics.py").read_text()}.items():
        folder = work / name
        folder.mkdir()
        shutil.copy(SOLUTION / "serving.py", folder / "serving.py")
        (folder / "metrics.py").write_text(metrics_source)
        contenders[name] = (folder, env)
    multiproc = work / "multiproc"
    multiproc.mkdir()
    contenders["instrumented-multiprocess"] = (work / "instrumented",
                                               {**env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    body = json.dumps({"features": [round(float(v), 6) for v in X[7]]})
    return contenders, body, model


CPU_PROBE = textwrap.dedent('''
    """CPU time per request of serving.py's ASGI app, driven in process (no sockets, no wrk)."""
    import asyncio, json, sys, time

    sys.path.insert(0, sys.argv[1])
    from serving import app

    BODY = sys.argv[2].encode()
    SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "path": "/predict", "raw_path": b"/predict", "root_path": "", "scheme": "http",
             "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]}


    async def one():
        messages = [{"type": "http.request", "body": BODY, "more_body": False}]
        status = []

        async def receive():
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(dict(SCOPE), receive, send)
        assert status == [200], status


    async def main(n):
        for _ in range(200):  # warm-up
            await one()
        cpu = time.process_time()
        for _ in range(n):
            await one()
        print(json.dumps({"cpu_us_per_request": (time.process_time() - cpu) / n * 1e6}))


    asyncio.run(main(int(sys.argv[3])))
''')


def cpu_per_request(folder: Path, env: dict[str, str], body: str, n: int, work: Path) -> float:
    """CPU microseconds one request costs serving.py in ``folder`` (process time, all threads)."""
    probe = work / "cpu_probe.py"
    probe.write_text(CPU_PROBE)
    out = subprocess.run([sys.executable, str(probe), str(folder), body, str(n)], env={**os.environ, **env},
                         cwd=folder, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["cpu_us_per_request"]


def check_answer(url: str, body: str, model: LogisticRegression) -> None:
    features = np.array([json.loads(body)["features"]])
    answer = httpx.post(f"{url}/predict", content=body, headers={"Content-Type": "application/json"},
                        timeout=10).json()
    assert answer["prediction"] == model.predict(features)[0], answer
    assert abs(answer["confidence"] - model.predict_proba(features).max()) < 1e-9, answer


def counted(url: str) -> float | None:
    """/predict 2xx requests the instrumented service counted (None without /metrics)."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    if response.status_code != 200:
        return None
    for line in response.text.splitlines():
        if line.startswith('http_requests_total{endpoint="/predict",status="2xx"}'):
            return float(line.split()[-1])
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measured run")
    parser.add_argument("--repeats", type=int, default=3, help="turns of every contender")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-requests", type=int, default=3000,
                        help="requests of each in-process CPU-time measurement (0: skip it)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-instrumentation-"))
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {}
    try:
        contenders, body, model = prepare(work)
        for repeat in range(args.repeats):
            for name, (folder, env) in contenders.items():
                if "PROMETHEUS_MULTIPROC_DIR" in env:  # a fresh folder for each server, as the docs ask
                    shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"])
                    os.mkdir(env["PROMETHEUS_MULTIPROC_DIR"])
                proc, url = start("serving:app", folder, env, 1, work / f"{name}-{repeat}.log", nodelay_fix=False)
                try:
                    check_answer(url, body, model)
                    run_wrk(url, body, connections=args.connections, threads=args.threads,
                            duration=args.warmup, key=False)
                    before = counted(url)
                    result = run_wrk(url, body, connections=args.connections, threads=args.threads,
                                     duration=args.duration, key=False)
                    after = counted(url)
                finally:
                    stop(proc)
                if before is not None:
                    # wrk's count leaves out requests in flight when it stops, and the warm-up's last
                    # ones may still finish after `before` was read: allow one connection's worth of each.
                    seen = after - before
                    assert result["requests"] <= seen <= result["requests"] + 2 * args.connections, (
                        f"{name}: wrk completed {result['requests']} requests, the metrics counted {seen:g}")
                    result["counted"] = seen
                result["load_average_1m"] = round(os.getloadavg()[0], 2)
                runs.setdefault(name, []).append(result)
                print(f"{name:<26} run {repeat + 1}: {result['requests_per_s']:8.1f} req/s  "
                      f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  "
                      f"errors {result['errors']}  load {result['load_average_1m']}", flush=True)
        # CPU time per request, in process: far less sensitive to the machine's load than req/s.
        cpu: dict[str, list[float]] = {}
        for _ in range(args.repeats if args.cpu_requests else 0):
            for name, (folder, env) in contenders.items():
                if "PROMETHEUS_MULTIPROC_DIR" in env:
                    shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"])
                    os.mkdir(env["PROMETHEUS_MULTIPROC_DIR"])
                cpu.setdefault(name, []).append(round(cpu_per_request(folder, env, body, args.cpu_requests, work), 1))
                print(f"{name:<26} CPU {cpu[name][-1]:8.1f} µs a request (in process)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {name: {key: statistics.median(r[key] for r in rs) for key in ("requests_per_s", "p50_ms", "p99_ms")}
               for name, rs in runs.items()}
    bare = medians["bare"]["requests_per_s"]
    cost = {name: round(1 - m["requests_per_s"] / bare, 4) for name, m in medians.items() if name != "bare"}
    cpu_medians = {name: statistics.median(v) for name, v in cpu.items()}
    cpu_cost = ({name: round(1 - cpu_medians["bare"] / v, 4) for name, v in cpu_medians.items() if name != "bare"}
                if cpu_medians else {})
    report = {
        "benchmark": "CE4.1 instrumentation overhead (issue #10): serving.py with and without metrics",
        "command": " ".join(["benchmarks/serving/bench_instrumentation.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "repeats": args.repeats,
                     "connections": args.connections, "threads": args.threads, "workers": 1,
                     "model": f"LogisticRegression ({N_FEATURES} features)"},
        "medians": medians,
        "throughput_cost": cost,
        "cpu_us_per_request": {"medians": cpu_medians, "runs": cpu, "requests_per_run": args.cpu_requests},
        "cpu_bound_throughput_cost": cpu_cost,
        "target_cost": TARGET_COST,
        "meets_target": {name: c <= TARGET_COST for name, c in cost.items()},
        "meets_target_cpu_bound": {name: c <= TARGET_COST for name, c in cpu_cost.items()},
        "runs": runs,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(json.dumps({"medians": medians, "throughput_cost": cost, "cpu_us_per_request": cpu_medians,
                      "cpu_bound_throughput_cost": cpu_cost, "machine": report["machine"]}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

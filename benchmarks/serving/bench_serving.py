"""Serving throughput and latency: the CE3.1 reference service beside the bare framework and the
chapter's naive template, all measured in the same run with wrk (issue #9, "Performance bar").

Each contender is a uvicorn process (1 or 2 workers) on a loopback port; wrk drives it with one
fixed POST body over ``--connections`` keep-alive connections for ``--duration`` seconds (after a
short warm-up), and reports requests per second and latency percentiles. Before timing, each
model-serving contender answers ``--check-rows`` rows, compared with the model's own ``predict``
(equal) and ``predict_proba`` (top value within 1e-6), so a fast wrong answer cannot win.

Contenders (a row each, in this order):

* bare Starlette: a JSON endpoint that parses the body and answers a constant (the ceiling);
* naive template: the chapter's CE3.1 template completed the obvious way;
* reference: solutions/ce3_1/app.py with API keys, the rate limit (set out of the way),
  validation and its JSON access log, wrapped in a Prometheus metrics middleware (a counter
  and a latency histogram per request, as an instrumented deployment has);
* reference, forest as a plain object: the same forest behind a wrapper class the reference
  does not compile, to show what micro-batching alone gives.

Two-worker rows run uvicorn through a launcher that gives the shared listening socket
IPPROTO_TCP: uvicorn's ``--workers`` binds it with proto 0, so asyncio never sets TCP_NODELAY
on its connections and each keep-alive response waits ~40 ms for the client's delayed ACK
(Kludex/uvicorn#3149). ``--no-nodelay-fix`` measures uvicorn as it is.

    .venv/bin/python benchmarks/serving/bench_serving.py --json benchmarks/results/serving.json
    .venv/bin/python benchmarks/serving/bench_serving.py --only reference --duration 20
    .venv/bin/python benchmarks/serving/bench_serving.py --markdown benchmarks/results/serving.json

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). wrk shares the machine with the servers, and
other processes may too: every row records the load average, and only rows of one run compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = ROOT / "solutions" / "ce3_1"
N_FEATURES = 20
API_KEY = "bench-key"

BARE_APP = textwrap.dedent('''
    """The bare framework: a Starlette JSON endpoint that parses the body and answers a constant."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route


    async def predict(request):
        await request.json()
        return JSONResponse({"prediction": 0.0, "confidence": 1.0})


    async def health(request):
        return JSONResponse({"status": "ok"})


    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])
''')

# The chapter's template, completed the obvious way (section 7.3, CE3.1).
NAIVE_APP = textwrap.dedent('''
    """The chapter's naive template: load at import, pydantic body, predict inline."""
    import os

    import joblib
    from fastapi import FastAPI
    from pydantic import BaseModel

    app = FastAPI()
    model = joblib.load(os.environ["MODEL_PATH"])


    class PredictionRequest(BaseModel):
        features: list[float]


    class PredictionResponse(BaseModel):
        prediction: float
        confidence: float


    @app.post("/predict", response_model=PredictionResponse)
    async def predict(request: PredictionRequest):
        X = [request.features]
        return {"prediction": float(model.predict(X)[0]), "confidence": float(model.predict_proba(X).max())}


    @app.get("/health")
    async def health():
        return {"status": "ok"}
''')

# The reference with the metrics a deployment adds (CE4.1's instrumentation does the same).
METRICS_APP = textwrap.dedent('''
    """solutions/ce3_1/app.py wrapped in a pure ASGI Prometheus middleware: a request counter by
    method, path and status and a latency histogram by path; GET /metrics exposes them."""
    import os
    import sys
    import time

    from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

    sys.path.insert(0, os.environ["REFERENCE_DIR"])
    import app as reference  # noqa: E402

    REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "path", "status"])
    LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency", ["path"])
    inner = reference.app


    async def app(scope, receive, send):
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        if scope["path"] == "/metrics":
            body = generate_latest()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        started, status = time.perf_counter(), 500

        async def observed(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await inner(scope, receive, observed)
        finally:
            REQUESTS.labels(scope["method"], scope["path"], str(status)).inc()
            LATENCY.labels(scope["path"]).observe(time.perf_counter() - started)
''')

# A forest behind a class that is not scikit-learn's: the reference serves it uncompiled.
PLAIN_MODEL = textwrap.dedent('''
    """A model object that only forwards to the scikit-learn model it holds."""


    class Forwarding:
        def __init__(self, model):
            self.model = model
            self.classes_ = model.classes_
            self.n_features_in_ = model.n_features_in_

        def predict(self, X):
            return self.model.predict(X)

        def predict_proba(self, X):
            return self.model.predict_proba(X)
''')

# uvicorn --workers N with a listening socket that has IPPROTO_TCP, so connections get TCP_NODELAY.
NODELAY_LAUNCHER = textwrap.dedent('''
    import socket
    import sys

    import uvicorn.config
    import uvicorn.main

    _bind_socket = uvicorn.config.Config.bind_socket


    def bind_socket(self):
        sock = _bind_socket(self)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        return sock


    uvicorn.config.Config.bind_socket = bind_socket
    sys.argv[0] = "uvicorn"
    sys.exit(uvicorn.main.main())
''')


@dataclass
class Contender:
    name: str
    app: str  # bare | naive | reference | reference-plain
    model: str  # - | logreg | forest100
    workers: int


CONTENDERS = [
    Contender("bare Starlette", "bare", "-", 1),
    Contender("bare Starlette", "bare", "-", 2),
    Contender("naive template", "naive", "logreg", 1),
    Contender("reference", "reference", "logreg", 1),
    Contender("reference", "reference", "logreg", 2),
    Contender("naive template", "naive", "forest100", 1),
    Contender("reference", "reference", "forest100", 1),
    Contender("reference", "reference", "forest100", 2),
    Contender("reference, forest as a plain object (batching only)", "reference-plain", "forest100", 1),
]


@dataclass
class Result:
    contender: str
    model: str
    workers: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    requests: int
    server_cpu_us_per_request: float
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children (the uvicorn workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def start(target: str, app_dir: Path, env: dict[str, str], workers: int, log: Path,
          nodelay_fix: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [target, "--app-dir", str(app_dir), "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--workers", str(workers)]
    argv = ([sys.executable, "-c", NODELAY_LAUNCHER, *args] if workers > 1 and nodelay_fix
            else [sys.executable, "-m", "uvicorn", *args])
    proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=app_dir, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, process_group=0)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{target} exited: {log.read_text()[-2000:]}")
        try:
            ok = [httpx.get(f"{url}/{'ready' if env.get('READY') else 'health'}", timeout=2).status_code == 200
                  for _ in range(workers * 4)]  # each worker, most likely, has loaded its model
            if all(ok):
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{target} did not become ready within 120 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(url: str, body: str, *, connections: int, threads: int, duration: float, key: bool) -> dict:
    handle, name = tempfile.mkstemp(suffix=".lua")
    os.close(handle)
    script = Path(name)
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["X-API-Key"] = "{API_KEY}"\n'
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n{headers}')
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
                              "--timeout", "30s", "-s", str(script), f"{url}/predict"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        script.unlink()
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(percentiles["50"]), "p90_ms": _ms(percentiles["90"]), "p99_ms": _ms(percentiles["99"]),
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0), "requests": requests,
    }


def check_answers(url: str, model, rows, *, key: bool) -> None:
    """Each row's answer: the model's own predict (equal) and top predict_proba (within 1e-6)."""
    import httpx

    headers = {"X-API-Key": API_KEY} if key else {}
    labels, top = model.predict(rows), model.predict_proba(rows).max(axis=1)
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for row, label, confidence in zip(rows.tolist(), labels, top, strict=True):
            answer = client.post("/predict", json={"features": row}).json()
            if answer["prediction"] != label or abs(answer["confidence"] - confidence) > 1e-6:
                raise RuntimeError(f"{url} answered {answer} for {row}; the model says {label}, {confidence}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per contender")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check-rows", type=int, default=200, help="rows checked against the model first")
    parser.add_argument("--only", default="", help="comma-separated parts of contender names to run")
    parser.add_argument("--no-nodelay-fix", action="store_true", help="run --workers 2 as uvicorn does")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the README table of a results file")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2

    import joblib
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    X, y = make_classification(n_samples=2000, n_features=N_FEATURES, n_informative=10, random_state=0)
    models = {
        "logreg": LogisticRegression(max_iter=2000).fit(X, y),
        "forest100": RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(X, y),
    }
    for name, model in models.items():
        joblib.dump(model, work / f"{name}.pkl")
    for name, source in {"bare": BARE_APP, "naive": NAIVE_APP, "reference": METRICS_APP}.items():
        (work / name).mkdir()
        (work / name / ("bench_app.py" if name == "reference" else "app.py")).write_text(source)
    (work / "plain_model.py").write_text(PLAIN_MODEL)
    sys.path.insert(0, str(work))
    from plain_model import Forwarding

    joblib.dump(Forwarding(models["forest100"]), work / "forest100-plain.pkl")
    rng = np.random.default_rng(0)
    check_rows = np.round(np.vstack([X[: args.check_rows // 2], rng.normal(size=(args.check_rows // 2, N_FEATURES))]), 6)
    body = json.dumps({"features": np.round(X[0], 6).tolist()})

    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    results: list[Result] = []
    try:
        for c in CONTENDERS:
            if wanted and not any(w in c.name for w in wanted):
                continue
            reference = c.app.startswith("reference")
            env = {"API_KEYS": API_KEY, "RATE_LIMIT": str(10**12), "REFERENCE_DIR": str(REFERENCE_DIR),
                   "PYTHONPATH": str(work)}
            if c.model != "-":
                env["MODEL_PATH"] = str(work / f"{c.model}{'-plain' if c.app == 'reference-plain' else ''}.pkl")
            if reference:
                env["READY"] = "1"
            app_dir = work / ("reference" if reference else c.app)
            log = work / f"{c.app}-{c.model}-{c.workers}.log"
            target = "bench_app:app" if reference else "app:app"
            proc, url = start(target, app_dir, env, c.workers, log, not args.no_nodelay_fix)
            try:
                if c.model != "-":
                    check_answers(url, models[c.model], check_rows, key=reference)
                if args.warmup:
                    run_wrk(url, body, connections=args.connections, threads=args.threads,
                            duration=args.warmup, key=reference)
                before, cpu_before = loadavg(), cpu_seconds(proc.pid)
                figures = run_wrk(url, body, connections=args.connections, threads=args.threads,
                                  duration=args.duration, key=reference)
                cpu = cpu_seconds(proc.pid) - cpu_before
            finally:
                stop(proc)
            result = Result(c.name, c.model, c.workers, **figures,
                            server_cpu_us_per_request=round(cpu / max(figures["requests"], 1) * 1e6, 1),
                            load_before=before, load_after=loadavg())
            results.append(result)
            print(f"{c.name:<34.34} {c.model:<9} {c.workers}w {result.requests_per_s:>8,.0f} req/s  "
                  f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:8.2f} ms  errors {result.errors}  "
                  f"server CPU {result.server_cpu_us_per_request:6.0f} us/req  load {before[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
        "settings": {"connections": args.connections, "threads": args.threads, "duration_s": args.duration,
                     "warmup_s": args.warmup, "n_features": N_FEATURES, "nodelay_fix": not args.no_nodelay_fix,
                     "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
        "results": [asdict(r) for r in results],
    }
    print()
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def markdown(report: dict) -> str:
    """The README's table, with each reference row's share of the bare framework with as many workers."""
    rows = report["results"]
    bare = {r["workers"]: r for r in rows if r["contender"] == "bare Starlette"}
    lines = ["| contender | model | workers | req/s | p50 ms | p99 ms | server CPU µs/req | vs bare | load avg |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = ""
        if r["model"] != "-" and r["workers"] in bare:
            b = bare[r["workers"]]
            share = f"{r['requests_per_s'] / b['requests_per_s']:.0%} ({b['server_cpu_us_per_request'] / r['server_cpu_us_per_request']:.0%} by CPU)"
        lines.append(f"| {r['contender']} | {r['model']} | {r['workers']} | {r['requests_per_s']:,.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['server_cpu_us_per_request']:.0f} | {share} | "
                     f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

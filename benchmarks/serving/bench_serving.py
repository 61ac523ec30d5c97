"""Serving throughput and latency: the CE3.1 reference service beside the bare framework and the
chapter's naive template, all measured in the same run with wrk (issue #9, "Performance bar").

Each contender is a uvicorn process on a loopback port; wrk drives it with one fixed POST
body over ``--connections`` keep-alive connections for ``--duration`` seconds (after a short
warm-up), and reports requests per second and latency percentiles. Before timing, one
request is checked against the model's own ``predict`` so a fast wrong answer cannot win.

    .venv/bin/python benchmarks/serving/bench_serving.py --json benchmarks/results/serving.json

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). On a 2-core machine wrk competes with the
server for the CPUs, as it did for the figures in the issue; compare contenders of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(app_dir: Path, env: dict[str, str], workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(app_dir), "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning", "--workers", str(workers)]
    proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=app_dir, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{app_dir} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/ready" if env.get("READY") else f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{app_dir} did not become ready within 60 s")


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
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per contender")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated contender names to run")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    X, y = make_classification(n_samples=2000, n_features=N_FEATURES, n_informative=10, random_state=0)
    models = {
        "logreg": LogisticRegression(max_iter=2000).fit(X, y),
        "forest100": RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(X, y),
    }
    for name, model in models.items():
        joblib.dump(model, work / f"{name}.pkl")
    for name, source in {"bare": BARE_APP, "naive": NAIVE_APP}.items():
        (work / name).mkdir()
        (work / name / "app.py").write_text(source)
    row = np.round(X[0], 6).tolist()
    body = json.dumps({"features": row})

    contenders = [  # name, app folder, model, workers, env, needs a key
        ("bare Starlette", work / "bare", "-", 2, {}, False),
        ("bare Starlette", work / "bare", "-", 1, {}, False),
        ("naive template", work / "naive", "logreg", 1, {}, False),
        ("reference (solutions/ce3_1)", REFERENCE_DIR, "logreg", 1, {"READY": "1"}, True),
        ("reference (solutions/ce3_1)", REFERENCE_DIR, "logreg", 2, {"READY": "1"}, True),
        ("naive template", work / "naive", "forest100", 1, {}, False),
        ("reference (solutions/ce3_1)", REFERENCE_DIR, "forest100", 1, {"READY": "1"}, True),
    ]
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    results: list[Result] = []
    for name, app_dir, model_name, workers, extra, key in contenders:
        if wanted and not any(w in name for w in wanted):
            continue
        env = {**extra, "API_KEYS": API_KEY, "RATE_LIMIT": str(10**12)}
        if model_name != "-":
            env["MODEL_PATH"] = str(work / f"{model_name}.pkl")
        log = work / f"{app_dir.name}-{model_name}-{workers}.log"
        proc, url = start(app_dir, env, workers, log)
        try:
            answer = httpx.post(f"{url}/predict", content=body, timeout=30,
                                headers={"Content-Type": "application/json", "X-API-Key": API_KEY}).json()
            if model_name != "-":
                model = models[model_name]
                expected = float(model.predict([row])[0]), float(model.predict_proba([row]).max())
                got = float(answer["prediction"]), float(answer["confidence"])
                if not np.allclose(got, expected, rtol=1e-9):
                    raise RuntimeError(f"{name} answered {got}, the model says {expected}")
            if args.warmup:
                run_wrk(url, body, connections=args.connections, threads=args.threads,
                        duration=args.warmup, key=key)
            figures = run_wrk(url, body, connections=args.connections, threads=args.threads,
                              duration=args.duration, key=key)
        finally:
            stop(proc)
        result = Result(name, model_name, workers, **figures)
        results.append(result)
        print(f"{name:<30} {model_name:<10} {workers} worker(s)  {result.requests_per_s:>9,.0f} req/s  "
              f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:8.2f} ms  errors {result.errors}", flush=True)

    bare = next((r for r in results if r.contender == "bare Starlette" and r.workers == 2), None)
    if bare:
        for r in results:
            if r.contender.startswith("reference") and r.model == "logreg":
                print(f"reference/logreg ({r.workers} worker(s)): {r.requests_per_s / bare.requests_per_s:.0%} of "
                      f"the bare framework's req/s (2 workers)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "settings": {"connections": args.connections, "threads": args.threads, "duration_s": args.duration,
                         "warmup_s": args.warmup, "n_features": N_FEATURES},
            "results": [asdict(r) for r in results],
        }, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

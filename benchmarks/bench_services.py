"""Service start-up benchmark: start -> first real round trip, per service and backend.

    python benchmarks/bench_services.py [--repeat 5] [--backends local docker]

For each service and backend: the median of ``--repeat`` starts (one warm-up start
first, which builds the per-machine templates the local backend copies). Then the
wall time of the smoke suite per backend, and what a pytest session that uses every
service adds to a grader run (a session requesting all five fixtures minus an empty one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbook import services  # noqa: E402
from workbook.services import settings  # noqa: E402
from workbook.services.webhook import WebhookReceiver  # noqa: E402

TARGETS_S = {"local": {"mlflow": 6.0, "*": 2.0}, "docker": {"*": 6.0}}
ALL_FIXTURES = '''
def test_all(postgres, redis, prometheus, alertmanager, mlflow_server):
    pass
'''
NO_FIXTURES = "def test_none():\n    pass\n"


def time_starts(service: str, backend: str, repeat: int) -> list[float]:
    times = []
    with WebhookReceiver() as receiver:
        kwargs = {"receiver": receiver} if service == "alertmanager" else {}
        for i in range(repeat + 1):
            running = services.start(service, backend, **kwargs)
            if i:  # the first start is a warm-up
                times.append(running.started_s)
            running.stop()
    return times


def pytest_wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                   cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start


def session_overhead(backend: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "test_all.py").write_text(ALL_FIXTURES)
        (Path(tmp) / "test_none.py").write_text(NO_FIXTURES)
        common = [f"--services={backend}", "--rootdir", tmp]
        return pytest_wall([str(Path(tmp) / "test_all.py"), *common]) - pytest_wall(
            [str(Path(tmp) / "test_none.py"), *common])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["local", "docker"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict = {"starts": {}, "smoke_suite_s": {}, "session_overhead_s": {}}
    print(f"{'service':<13} {'backend':<7} {'median':>8} {'min':>6} {'max':>6} {'target':>7}")
    for backend in args.backends:
        for service in settings.SERVICES:
            times = time_starts(service, backend, args.repeat)
            target = TARGETS_S[backend].get(service, TARGETS_S[backend]["*"])
            median = statistics.median(times)
            results["starts"][f"{service}/{backend}"] = {"median": median, "all": times, "target": target}
            flag = "ok" if median <= target else "OVER"
            print(f"{service:<13} {backend:<7} {median:>7.2f}s {min(times):>5.2f}s {max(times):>5.2f}s "
                  f"{target:>5.1f}s {flag}", flush=True)
    for backend in args.backends:
        results["smoke_suite_s"][backend] = pytest_wall(["tests/services", f"--services={backend}"])
        results["session_overhead_s"][backend] = session_overhead(backend)
        print(f"smoke suite ({backend}): {results['smoke_suite_s'][backend]:.1f} s wall; a session using "
              f"all five services adds {results['session_overhead_s'][backend]:.1f} s (target <= 15 s)",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sealed grading overhead: one exercise's graders on its solution, sealed vs not.

    python benchmarks/bench_sealed.py [--exercise ce4_2] [--repeat 7] [--json benchmarks/results/sealed.json]

Each repeat runs every variant once, as its own ``pytest graders/<id> --target=solutions``
process, in an order that rotates from repeat to repeat (so a change of load hits every
variant alike):

* ``unsealed``: the learner's module is imported in the grader's process (the learner's loop);
* ``sealed``: ``--sealed`` as ``workbook grade`` runs it (the first learner process is a fork
  of the grader, made before the graders load; see workbook.sealed.prefork);
* ``sealed-spawn``: ``--sealed`` with ``WORKBOOK_SEALED_FORK=0``: the learner process is a
  fresh interpreter that imports numpy/pandas/scipy itself (how sealed grading started).

For each: the median wall time and CPU time (user + system, the grader and everything it
started) over the repeats, the overhead against ``unsealed`` (ratio of the medians, and the
median of the per-repeat ratios), the requests that crossed to the learner's process, and
the load average while it ran. The target (issue #11): sealed costs at most 25 % more wall
time than unsealed. The machine is shared: compare figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_OVERHEAD = 0.25
VARIANTS = {
    "unsealed": ([], {}),
    "sealed": (["--sealed"], {}),
    "sealed-spawn": (["--sealed"], {"WORKBOOK_SEALED_FORK": "0"}),
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(exercise: str, variant: str, stats_file: Path) -> dict:
    options, extra_env = VARIANTS[variant]
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORKBOOK_TARGET", "PYTEST_ADDOPTS", "WORKBOOK_SEALED", "WORKBOOK_SEALED_FORK")}
    env.update(extra_env)
    stats_file.unlink(missing_ok=True)
    if "--sealed" in options:
        env["WORKBOOK_SEALED_STATS"] = str(stats_file)
    command = [sys.executable, "-m", "pytest", f"graders/{exercise}", "--target=solutions", "-q",
               "-n", "0", "-p", "no:cacheprovider", *options]
    load_before = os.getloadavg()[0]
    cpu_before = children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu_before
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    passed = re.search(r"(\d+) passed", tail)
    if proc.returncode != 0 or not passed or re.search(r"failed|error", tail):
        raise SystemExit(f"{variant}: the graders did not pass on the solution (exit {proc.returncode}): "
                         f"{tail or proc.stderr[-2000:]}")
    result = {"variant": variant, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
              "checks_passed": int(passed.group(1)), "load_before": round(load_before, 2),
              "load_after": round(os.getloadavg()[0], 2)}
    if stats_file.is_file():
        result["sealed"] = json.loads(stats_file.read_text())
    return result


def summarise(runs: list[dict], variants: list[str]) -> dict:
    by_variant = {v: [r for r in runs if r["variant"] == v] for v in variants}
    summary = {}
    for variant, found in by_variant.items():
        summary[variant] = {
            "median_wall_s": round(statistics.median(r["wall_s"] for r in found), 3),
            "median_cpu_s": round(statistics.median(r["cpu_s"] for r in found), 3),
            "walls_s": [r["wall_s"] for r in found],
            "requests": found[-1].get("sealed", {}).get("requests"),
            "learner_processes": found[-1].get("sealed", {}).get("children"),
        }
    base = by_variant.get("unsealed")
    if base:
        for variant in variants:
            if variant == "unsealed":
                continue
            mine = by_variant[variant]
            paired = [m["wall_s"] / b["wall_s"] - 1 for m, b in zip(mine, base, strict=True)]
            cpu_paired = [m["cpu_s"] / b["cpu_s"] - 1 for m, b in zip(mine, base, strict=True)]
            entry = summary[variant]
            entry["overhead_wall"] = round(entry["median_wall_s"] / summary["unsealed"]["median_wall_s"] - 1, 4)
            entry["overhead_wall_paired_median"] = round(statistics.median(paired), 4)
            entry["overhead_cpu"] = round(entry["median_cpu_s"] / summary["unsealed"]["median_cpu_s"] - 1, 4)
            entry["overhead_cpu_paired_median"] = round(statistics.median(cpu_paired), 4)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercise", default="ce4_2")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="write the runs and the summary here")
    args = parser.parse_args()
    variants = args.variants if "unsealed" in args.variants else ["unsealed", *args.variants]
    runs: list[dict] = []
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "sealed-stats.json"
        for variant in variants:  # warm-up: file caches, bytecode; not counted
            run_once(args.exercise, variant, stats_file)
        for repeat in range(args.repeat):
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                result = run_once(args.exercise, variant, stats_file)
                result["repeat"] = repeat
                runs.append(result)
                print(f"  repeat {repeat + 1}/{args.repeat} {variant:13s} {result['wall_s']:7.2f} s wall "
                      f"{result['cpu_s']:6.2f} s CPU  load {result['load_before']:.1f}", flush=True)
            loads.append(os.getloadavg())
    summary = summarise(runs, variants)
    load1 = [r["load_before"] for r in runs]
    print(f"\n{args.exercise} on its solution, {args.repeat} repeats, load average (1 min) "
          f"{min(load1):.1f}-{max(load1):.1f}, median {statistics.median(load1):.1f}, {os.cpu_count()} CPUs")
    print(f"{'variant':14s} {'wall (median)':>14s} {'CPU (median)':>13s} {'wall overhead':>14s} "
          f"{'paired':>8s} {'CPU overhead':>13s}  requests")
    for variant, entry in summary.items():
        over = entry.get("overhead_wall")
        paired = entry.get("overhead_wall_paired_median")
        cpu_over = entry.get("overhead_cpu")
        print(f"{variant:14s} {entry['median_wall_s']:12.2f} s {entry['median_cpu_s']:11.2f} s "
              f"{'' if over is None else f'{over:+.1%}':>14s} {'' if paired is None else f'{paired:+.1%}':>8s} "
              f"{'' if cpu_over is None else f'{cpu_over:+.1%}':>13s}  {entry['requests'] or ''}")
    sealed = summary.get("sealed", {})
    verdict = None
    if "overhead_wall" in sealed:
        verdict = sealed["overhead_wall"] <= TARGET_OVERHEAD
        print(f"\nsealed vs unsealed: {sealed['overhead_wall']:+.1%} wall (target <= +{TARGET_OVERHEAD:.0%}): "
              f"{'met' if verdict else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        args.json.write_text(json.dumps({
            "exercise": args.exercise, "repeat": args.repeat, "target_overhead": TARGET_OVERHEAD,
            "met": verdict, "summary": summary, "runs": runs,
            "load_average_samples": [list(map(lambda x: round(x, 2), s)) for s in loads],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "user": "root" if os.getuid() == 0 else "non-root"},
            "commit": commit, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

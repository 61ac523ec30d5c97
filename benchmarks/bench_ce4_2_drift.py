"""CE4.2 benchmark: the reference DriftDetector against a plain scipy baseline and Evidently.

Reference: 1,000,000 rows x (20 numeric + 5 categorical) columns; window: 100,000 rows.
Each contender runs in its own process (so its peak memory is its own) on the same
Parquet files:

* ours      — solutions/ce4_2: `DriftDetector(reference)` once (compute_stats), then
              `detect_drift(window)`;
* baseline  — per column, scipy's `ks_2samp` / `chi2_contingency` against the full
              reference every time (nothing precomputed);
* evidently — Evidently 0.7's `DataDriftPreset` (its own environment: evidently 0.7.23
              does not import with pandas 3, see DESIGN.md). Skipped with a note when
              that environment is missing; `--setup-evidently` creates it.

    python benchmarks/bench_ce4_2_drift.py [--rows 1000000] [--window 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
N_NUMERIC, N_CATEGORICAL = 20, 5


def make_data(rows: int, window: int, folder: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)

    def frame(n: int, shift: float) -> pd.DataFrame:
        data = {f"num_{i}": rng.normal(shift * (i % 2), 1 + i / 10, n) for i in range(N_NUMERIC)}
        for i in range(N_CATEGORICAL):
            cats = np.array([f"c{j}" for j in range(4 + i)], dtype=object)
            probs = np.linspace(1, 2 + shift * i, cats.size)
            data[f"cat_{i}"] = rng.choice(cats, n, p=probs / probs.sum())
        return pd.DataFrame(data)

    frame(rows, 0.0).to_parquet(folder / "reference.parquet")
    frame(window, 0.05).to_parquet(folder / "window.parquet")  # half the columns drift slightly


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_contender(name: str, folder: Path, repeat: int) -> dict:
    import pandas as pd

    reference = pd.read_parquet(folder / "reference.parquet")
    window = pd.read_parquet(folder / "window.parquet")
    loaded_mb = peak_rss_mb()
    result: dict = {"contender": name, "data_loaded_rss_mb": round(loaded_mb)}
    if name == "ours":
        sys.path.insert(0, str(ROOT))
        from workbook import load_exercise

        drift = load_exercise("ce4_2", "drift", ROOT / "solutions")
        start = time.perf_counter()
        detector = drift.DriftDetector(reference)
        result["compute_stats_s"] = time.perf_counter() - start
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            report = detector.detect_drift(window)
            times.append(time.perf_counter() - start)
        result["drifted_features"] = len(report.drifted_features)
    elif name == "baseline":
        from scipy import stats

        def baseline() -> int:
            drifted = 0
            for column in reference.columns:
                if column.startswith("num_"):
                    p = stats.ks_2samp(reference[column], window[column]).pvalue
                else:
                    ref_counts = reference[column].value_counts()
                    new_counts = window[column].value_counts()
                    cats = ref_counts.index.union(new_counts.index)
                    table = [ref_counts.reindex(cats, fill_value=0), new_counts.reindex(cats, fill_value=0)]
                    p = stats.chi2_contingency(table).pvalue
                drifted += int(p < 0.05)
            return drifted

        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            result["drifted_features"] = baseline()
            times.append(time.perf_counter() - start)
    elif name == "evidently":
        import evidently
        from evidently import Report
        from evidently.presets import DataDriftPreset

        result["version"] = evidently.__version__
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            snapshot = Report([DataDriftPreset()]).run(window, reference)
            snapshot.dict()  # make sure every metric is computed
            times.append(time.perf_counter() - start)
    else:
        raise SystemExit(f"unknown contender {name!r}")
    result["window_s_median"] = statistics.median(times)
    result["window_s_all"] = [round(t, 3) for t in times]
    result["peak_rss_mb"] = round(peak_rss_mb())
    return result


def spawn(python: Path | str, name: str, folder: Path, repeat: int) -> dict:
    proc = subprocess.run(
        [str(python), __file__, "--contender", name, "--data", str(folder), "--repeat", str(repeat)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return {"contender": name, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def setup_evidently() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(EVIDENTLY_VENV / "bin" / "pip"), "install", "--quiet",
                    "evidently==0.7.23", "pandas<3", "pyarrow"], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--setup-evidently", action="store_true", help="create the Evidently environment first")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(run_contender(args.contender, Path(args.data), args.repeat)))
        return 0
    if args.setup_evidently:
        setup_evidently()
    with tempfile.TemporaryDirectory(prefix="bench-ce4_2-") as tmp:
        folder = Path(tmp)
        print(f"data: reference {args.rows:,} rows, window {args.window:,} rows, "
              f"{N_NUMERIC} numeric + {N_CATEGORICAL} categorical columns", flush=True)
        make_data(args.rows, args.window, folder)
        results = [spawn(sys.executable, "ours", folder, args.repeat),
                   spawn(sys.executable, "baseline", folder, args.repeat)]
        evidently_python = EVIDENTLY_VENV / "bin" / "python"
        if evidently_python.exists():
            results.append(spawn(evidently_python, "evidently", folder, args.repeat))
        else:
            results.append({"contender": "evidently", "error": ["not installed: run with --setup-evidently"]})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'contender':<10} {'compute_stats':>14} {'window (median)':>16} {'peak RSS':>10} {'data only':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['contender']:<10} failed: {' '.join(r['error'])}")
            continue
        stats_s = f"{r['compute_stats_s']:.2f} s" if "compute_stats_s" in r else "-"
        print(f"{r['contender']:<10} {stats_s:>14} {r['window_s_median']:>14.3f} s "
              f"{r['peak_rss_mb']:>7} MB {r['data_loaded_rss_mb']:>7} MB")
    ours, base = results[0], results[1]
    if "error" not in ours and "error" not in base:
        ours["speedup_vs_baseline"] = round(base["window_s_median"] / ours["window_s_median"], 1)
        print(f"window check: {ours['speedup_vs_baseline']:.1f}x faster than the baseline")
    if "error" not in ours and "error" not in results[2]:
        print(f"window check: {results[2]['window_s_median'] / ours['window_s_median']:.1f}x faster than Evidently")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

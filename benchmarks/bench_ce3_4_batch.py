"""CE3.4 benchmark: streaming Parquet -> Parquet batch prediction against a read-all pandas baseline.

Input: ``--rows`` rows (10,000,000 by default) of an int64 key and five float
features, in row groups of 100,000; the model is a scikit-learn LinearRegression
saved with joblib. Each contender runs in its own process (so its peak memory is
its own) on the same file:

* ours      — solutions/ce3_4: ``BatchPredictor(model, batch_size).predict_from_files(in, out)``,
              which streams record batches in and writes row groups out;
* baseline  — the naive job: ``pd.read_parquet`` of the whole file, one ``predict``,
              ``DataFrame.to_parquet`` of the whole output.

Both outputs are compared row by row (same keys and nulls, predictions within 1e-12:
BLAS sums a batch in another order than the whole table): the figures only count when they agree.

    python benchmarks/bench_ce3_4_batch.py [--rows 10000000] [--batch-size 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FEATURES = [f"f{i}" for i in range(1, 6)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(rows: int, folder: Path) -> None:
    """The input in slices, so that making it does not itself need the whole table in memory."""
    import joblib
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, len(FEATURES)))
    model = LinearRegression().fit(X, X @ np.arange(1, len(FEATURES) + 1) + rng.normal(size=1000))
    joblib.dump(model, folder / "model.joblib")
    schema = pa.schema([("id", pa.int64()), *[(f, pa.float64()) for f in FEATURES]])
    with pq.ParquetWriter(folder / "input.parquet", schema) as writer:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            values = rng.normal(size=(n, len(FEATURES)))
            values[rng.random(n) < 0.001, 0] = np.nan  # one row in a thousand lacks a feature
            columns = {"id": np.arange(start, start + n, dtype=np.int64)}
            columns.update({f: values[:, k] for k, f in enumerate(FEATURES)})
            writer.write_table(pa.table(columns, schema=schema), row_group_size=100_000)


def run_contender(name: str, folder: Path, batch_size: int) -> dict:
    import numpy as np
    import pandas as pd

    output = folder / f"output-{name}.parquet"
    if name == "ours":
        sys.path.insert(0, str(ROOT))
        from workbook import load_exercise

        batch = load_exercise("ce3_4", "batch", ROOT / "solutions")
        predictor = batch.BatchPredictor(folder / "model.joblib", batch_size=batch_size)
        ready_mb = peak_rss_mb()
        start = time.perf_counter()
        stats = predictor.predict_from_files(folder / "input.parquet", output)
        seconds = time.perf_counter() - start
    elif name == "baseline":
        import joblib

        model = joblib.load(folder / "model.joblib")
        ready_mb = peak_rss_mb()
        start = time.perf_counter()
        frame = pd.read_parquet(folder / "input.parquet")
        complete = frame[FEATURES].notna().all(axis=1).to_numpy()
        predictions = np.full(len(frame), np.nan)
        predictions[complete] = model.predict(frame.loc[complete, FEATURES])
        pd.DataFrame({"id": frame["id"], "prediction": predictions}).to_parquet(output, index=False)
        seconds = time.perf_counter() - start
        stats = {"predicted": int(complete.sum()), "missing": int((~complete).sum())}
    else:
        raise SystemExit(f"unknown contender {name!r}")
    rows = stats["predicted"] + stats["missing"]
    return {"contender": name, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "ready_rss_mb": round(ready_mb), "peak_rss_mb": round(peak_rss_mb()), "stats": stats}


def spawn(name: str, folder: Path, batch_size: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--contender", name, "--data", str(folder),
         "--batch-size", str(batch_size)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return {"contender": name, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def outputs_agree(folder: Path) -> bool:
    import numpy as np
    import pyarrow.parquet as pq

    columns = ["id", "prediction"]
    ours = pq.read_table(folder / "output-ours.parquet", columns=columns)
    base = pq.read_table(folder / "output-baseline.parquet", columns=columns)
    if not ours["id"].equals(base["id"]) or ours["prediction"].null_count != base["prediction"].null_count:
        return False
    # Same values up to the last bit or so: BLAS sums a batch in another order than the whole.
    a = ours["prediction"].to_numpy(zero_copy_only=False)
    b = base["prediction"].to_numpy(zero_copy_only=False)
    return bool(np.allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(run_contender(args.contender, Path(args.data), args.batch_size)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-ce3_4-") as tmp:
        folder = Path(tmp)
        print(f"data: {args.rows:,} rows x (int64 key + {len(FEATURES)} float features), "
              f"batch_size {args.batch_size:,}", flush=True)
        make_data(args.rows, folder)
        size_mb = (folder / "input.parquet").stat().st_size / 2**20
        results = [spawn("ours", folder, args.batch_size), spawn("baseline", folder, args.batch_size)]
        agree = all("error" not in r for r in results) and outputs_agree(folder)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"input file {size_mb:.0f} MB")
    print(f"{'contender':<10} {'seconds':>8} {'rows/s':>12} {'peak RSS':>10} {'ready RSS':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['contender']:<10} failed: {' '.join(r['error'])}")
            continue
        print(f"{r['contender']:<10} {r['seconds']:>8.2f} {r['rows_per_s']:>12,.0f} "
              f"{r['peak_rss_mb']:>7} MB {r['ready_rss_mb']:>7} MB")
    print(f"outputs agree (same keys, nulls, predictions within 1e-12): {agree}")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "batch_size": args.batch_size,
                                         "input_mb": round(size_mb, 1), "outputs_agree": agree,
                                         "results": results}, indent=2) + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

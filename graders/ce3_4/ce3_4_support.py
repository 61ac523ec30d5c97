"""Helpers of the CE3.4 graders: a model that reports how it is called, and a child process.

``LoggedModel`` is what the graders save with ``joblib.dump`` for the learner's
``BatchPredictor`` to load. It wraps a fitted scikit-learn estimator and, on every
``predict`` call, appends one JSON line to a log file: how many rows it got, the
column names it got (when given a DataFrame) and, when told where the output table
is, how many rows that table held at that moment (committed rows, seen from another
connection). It can also raise on a chosen call, to play a crash.

The class lives in this module, not in the test file, so that ``joblib.load``
finds it by the same name in the graders' process and in the child process
started by ``run_child`` (``python ce3_4_support.py SPEC``), which measures the
peak memory of the learner's code on its own.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np


class LoggedModel:
    """A fitted estimator whose ``predict`` calls are logged (and may fail on purpose)."""

    def __init__(self, estimator, features, *, log=None, dsn=None, table=None, fail_at=None):
        self.estimator = estimator
        self.features = list(features)  # the order the estimator was trained in
        self.log = str(log) if log else None
        self.dsn = dsn
        self.table = table
        self.fail_at = fail_at

    def predict(self, X):
        columns = [str(c) for c in X.columns] if hasattr(X, "columns") else None
        if columns is not None and columns != self.features:
            raise ValueError(f"the model expects the features {self.features} in this order; "
                             f"it got the columns {columns}")
        values = np.asarray(X, dtype=float)
        if values.ndim != 2 or values.shape[1] != len(self.features):
            raise ValueError(f"the model expects a 2-D table with {len(self.features)} feature columns; "
                             f"it got shape {values.shape}")
        if np.isnan(values).any():
            raise ValueError("the model got a row with a missing feature (NaN)")
        if len(values) == 0:  # what scikit-learn does too, with a clearer message
            raise ValueError("predict was called with 0 rows; a batch whose rows all lack a feature "
                             "should get missing predictions without a predict call")
        if self.log:
            self._record(len(values), columns)
        return self.estimator.predict(values)

    def _record(self, rows, columns):
        path = Path(self.log)
        calls = len(path.read_text().splitlines()) if path.exists() else 0
        entry = {"rows": rows, "columns": columns, "committed": None}
        if self.dsn:
            import psycopg
            from psycopg import sql

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                try:
                    entry["committed"] = conn.execute(
                        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.table))
                    ).fetchone()[0]
                except psycopg.errors.UndefinedTable:
                    entry["committed"] = 0
        with path.open("a") as log:
            log.write(json.dumps(entry) + "\n")
        if self.fail_at is not None and calls >= self.fail_at:
            raise RuntimeError(f"the model failed on purpose on predict call {calls + 1} (a crash)")


def read_log(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def memory_mb() -> tuple[float, float]:
    """(resident memory now, peak resident memory) of this process, in MiB.

    Without /proc (macOS), both are the peak so far: the growth of the peak is then
    all a run can show.
    """
    status_file = Path("/proc/self/status")
    if not status_file.exists():
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS
        return peak, peak
    status = status_file.read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak() -> None:
    """Start the peak (VmHWM) afresh from the current resident memory (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not allowed here: the peak then spans the whole process
        pass


def child(spec_path: str) -> None:
    """Run the learner's BatchPredictor on each job of the spec; write peak memory after each."""
    spec = json.loads(Path(spec_path).read_text())
    result: dict = {"runs": []}
    try:
        from workbook.loader import load_exercise

        batch = load_exercise("ce3_4", "batch", spec["target"])
        predictor = batch.BatchPredictor(spec["model"], batch_size=spec["batch_size"])
    except NotImplementedError as exc:
        result["not_started"] = str(exc) or "NotImplementedError"
        spec["jobs"] = []
    except BaseException as exc:  # reported to the grader, which turns it into a failure
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
        spec["jobs"] = []
    for job in spec["jobs"]:
        reset_peak()
        before, _ = memory_mb()
        started = time.perf_counter()
        try:
            if job["kind"] == "db":
                stats = predictor.predict_from_db(job["dsn"], job["input_table"], job["output_table"])
            else:
                stats = predictor.predict_from_files(job["input"], job["output"])
        except NotImplementedError as exc:
            result["runs"].append({"not_started": str(exc) or "NotImplementedError"})
        except BaseException as exc:
            result["runs"].append({"error": f"{type(exc).__name__}: {exc}",
                                   "traceback": traceback.format_exc()[-3000:]})
        else:
            result["runs"].append({"stats": stats, "seconds": time.perf_counter() - started,
                                   "before_mb": before, "peak_mb": memory_mb()[1]})
    Path(spec["result"]).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    child(sys.argv[1])

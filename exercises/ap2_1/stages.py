"""AP2.1 — a reproducible ML pipeline: the stage scripts DVC runs.

``python stages.py <stage>`` runs one stage; ``dvc.yaml`` wires them together and
``params.yaml`` holds every number they use. Paths are relative to this file's folder.
The contract the graders check:

* prepare reads data/raw.csv (columns f0..fN and label) and writes data/prepared/train.csv
  and data/prepared/test.csv, with the same columns [prepare-outputs].
  The split is ``train_test_split(raw, test_size=prepare.test_size,
  random_state=prepare.seed, stratify=raw["label"])`` [split].
* featurize writes data/features/train.csv and data/features/test.csv: one row per row
  of the split, the feature columns and the label column [features-outputs].
  The features are ``PolynomialFeatures(degree=featurize.poly_degree,
  include_bias=False)`` of f0..fN [poly-features].
  They are then standardised with a StandardScaler fitted on the training split only [scaler-train].
* train fits ``LogisticRegression(C=train.C, max_iter=train.max_iter)`` on the training
  features and saves it to model.joblib [train-model].
* evaluate writes metrics.json, ``{"accuracy": ..., "f1": ...}``, computed on the test
  split [metrics-test-split].
  f1 is the macro average of the per-class F1 scores [f1-macro].
  It also writes plots/confusion.csv: one row per test row, columns actual and
  predicted [confusion-rows].
* evaluate then logs ONE MLflow run per pipeline run, to the server and experiment named
  by $MLFLOW_TRACKING_URI and $MLFLOW_EXPERIMENT_NAME [one-run].
  The run's params are every key of params.yaml, flattened with dots ("train.C") [logged-params].
  Its metrics are accuracy and f1, the values in metrics.json [logged-metrics].
  Its tag ``git_commit`` is the commit checked out (``git rev-parse HEAD``) [tag-commit].
  Its tag ``data_hash`` is the md5 that DVC records for data/raw.csv in data/raw.csv.dvc [tag-data-hash].
* ``reproduce(run_id)`` re-creates a logged run from what its tags record; see its docstring.

Same params, same data, same code: same metrics, every time [deterministic].
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import joblib
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

HERE = Path(__file__).resolve().parent


def load_params(folder: Path = HERE) -> dict:
    return yaml.safe_load((folder / "params.yaml").read_text())


def flatten(params: dict, prefix: str = "") -> dict[str, object]:
    """{"train": {"C": 1.0}} -> {"train.C": 1.0}"""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def prepare() -> None:
    """Split data/raw.csv into data/prepared/train.csv and test.csv."""
    raise NotImplementedError("YOUR CODE HERE")


def featurize() -> None:
    """Polynomial features, standardised with the training split's statistics."""
    raise NotImplementedError("YOUR CODE HERE")


def train() -> None:
    """Fit the model on the training features; save model.joblib."""
    raise NotImplementedError("YOUR CODE HERE")


def evaluate() -> None:
    """Write metrics.json and plots/confusion.csv, then log the run to MLflow."""
    raise NotImplementedError("YOUR CODE HERE")


def log_run(metrics: dict[str, float]) -> str:
    """Log this pipeline run to MLflow with its params, metrics, commit and data hash."""
    raise NotImplementedError("YOUR CODE HERE")


def git_commit(folder: Path = HERE) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def data_hash(folder: Path = HERE) -> str:
    """The md5 DVC records for data/raw.csv."""
    record = yaml.safe_load((folder / "data" / "raw.csv.dvc").read_text())
    return record["outs"][0]["md5"]


def reproduce(run_id: str, repo: str | Path = HERE) -> dict[str, float]:
    """Re-create a logged run and return the metrics the pipeline gets there.

    ``repo`` is the project's git repository (default: this folder); the graders pass
    their own [reproduce-repo].
    The run's ``git_commit`` and ``data_hash`` tags say what to re-create: work in a new
    clone of ``repo`` at that commit, so ``repo``'s own files, branch and commits stay as
    they are [reproduce-clone].
    Restore the data version the run used there: it is in ``repo``'s DVC cache and in the
    DVC remote [reproduce-data].
    Then run the whole pipeline with ``dvc repro`` and return the metrics.json it writes
    there as a dict, ``{"accuracy": ..., "f1": ...}``, not the values recorded on the run:
    comparing the two is how a caller checks that the run is reproducible [reproduce-metrics].
    Raise an exception when no run has this id [reproduce-unknown-run].
    When the data at that commit is not the version the run's ``data_hash`` names, either
    restore the named version from the cache or raise an exception; never return metrics
    computed on other data [reproduce-hash-mismatch].
    """
    raise NotImplementedError("YOUR CODE HERE")


def _run(command: list[str], cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[:3])} …` failed in {cwd}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


STAGES = {"prepare": prepare, "featurize": featurize, "train": train, "evaluate": evaluate}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: python stages.py {{{'|'.join(STAGES)}}}")
    STAGES[sys.argv[1]]()

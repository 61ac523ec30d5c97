"""AP2.1 — a reproducible ML pipeline: the stage scripts DVC runs.

``python stages.py <stage>`` runs one stage; ``dvc.yaml`` wires them together and
``params.yaml`` holds every number they use. The contract the graders check:

* prepare:   data/raw.csv (columns f0..fN and label) -> data/prepared/{train,test}.csv,
             split with prepare.test_size and prepare.seed (stratified);
* featurize: -> data/features/{train,test}.csv (polynomial features of degree
             featurize.poly_degree, standardised with the training set's stats);
* train:     -> model.joblib, a LogisticRegression with train.C and train.max_iter;
* evaluate:  -> metrics.json ({"accuracy": ..., "f1": ...} on the test split) and
             plots/confusion.csv (actual,predicted rows); then logs ONE MLflow run to
             $MLFLOW_TRACKING_URI (experiment $MLFLOW_EXPERIMENT_NAME, default "ap2_1")
             with every param (flattened: "train.C"), the metrics, and the tags
             ``git_commit`` (HEAD) and ``data_hash`` (the md5 DVC records for raw.csv).
* ``reproduce(run_id)``: re-creates the run from what it recorded — the commit and
             the data version — in a fresh clone, runs the pipeline there, and
             returns the metrics it gets (the recorded ones, if all is reproducible).

Same params, same data, same code: same metrics, every time.
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
    """Re-create a logged run: clone its commit, restore its data, run the pipeline; return the metrics."""
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

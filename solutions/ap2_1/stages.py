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
    ### BEGIN SOLUTION
    params = load_params()["prepare"]
    raw = pd.read_csv(HERE / "data" / "raw.csv")
    train, test = train_test_split(raw, test_size=params["test_size"], random_state=params["seed"],
                                   stratify=raw["label"])
    out = HERE / "data" / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    ### END SOLUTION


def featurize() -> None:
    """Polynomial features, standardised with the training split's statistics."""
    ### BEGIN SOLUTION
    degree = load_params()["featurize"]["poly_degree"]
    source, out = HERE / "data" / "prepared", HERE / "data" / "features"
    out.mkdir(parents=True, exist_ok=True)
    train, test = pd.read_csv(source / "train.csv"), pd.read_csv(source / "test.csv")
    poly = PolynomialFeatures(degree=degree, include_bias=False)
    scaler = StandardScaler()
    features = [c for c in train.columns if c != "label"]
    X_train = scaler.fit_transform(poly.fit_transform(train[features]))
    X_test = scaler.transform(poly.transform(test[features]))
    for name, X, labels in (("train", X_train, train["label"]), ("test", X_test, test["label"])):
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        frame["label"] = labels.to_numpy()
        frame.to_csv(out / f"{name}.csv", index=False)
    ### END SOLUTION


def train() -> None:
    """Fit the model on the training features; save model.joblib."""
    ### BEGIN SOLUTION
    params = load_params()["train"]
    data = pd.read_csv(HERE / "data" / "features" / "train.csv")
    model = LogisticRegression(C=params["C"], max_iter=params["max_iter"])
    model.fit(data.drop(columns="label"), data["label"])
    joblib.dump(model, HERE / "model.joblib")
    ### END SOLUTION


def evaluate() -> None:
    """Write metrics.json and plots/confusion.csv, then log the run to MLflow."""
    ### BEGIN SOLUTION
    model = joblib.load(HERE / "model.joblib")
    data = pd.read_csv(HERE / "data" / "features" / "test.csv")
    predicted = model.predict(data.drop(columns="label"))
    metrics = {"accuracy": float(accuracy_score(data["label"], predicted)),
               "f1": float(f1_score(data["label"], predicted, average="macro"))}
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (HERE / "plots").mkdir(exist_ok=True)
    pd.DataFrame({"actual": data["label"], "predicted": predicted}).to_csv(
        HERE / "plots" / "confusion.csv", index=False)
    log_run(metrics)
    ### END SOLUTION


def log_run(metrics: dict[str, float]) -> str:
    """Log this pipeline run to MLflow with its params, metrics, commit and data hash."""
    ### BEGIN SOLUTION
    import mlflow

    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "ap2_1"))
    with mlflow.start_run() as run:
        mlflow.log_params(flatten(load_params()))
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"git_commit": git_commit(), "data_hash": data_hash()})
        mlflow.log_artifact(str(HERE / "metrics.json"))
        return run.info.run_id
    ### END SOLUTION


def git_commit(folder: Path = HERE) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def data_hash(folder: Path = HERE) -> str:
    """The md5 DVC records for data/raw.csv."""
    record = yaml.safe_load((folder / "data" / "raw.csv.dvc").read_text())
    return record["outs"][0]["md5"]


def reproduce(run_id: str, repo: str | Path = HERE) -> dict[str, float]:
    """Re-create a logged run: clone its commit, restore its data, run the pipeline; return the metrics."""
    ### BEGIN SOLUTION
    from mlflow import MlflowClient

    run = MlflowClient().get_run(run_id)
    commit, recorded_hash = run.data.tags["git_commit"], run.data.tags["data_hash"]
    repo = Path(repo).resolve()
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        clone = Path(tmp) / "clone"
        _run(["git", "clone", "-q", str(repo), str(clone)], Path(tmp))
        _run(["git", "checkout", "-q", commit], clone)
        dvc = [shutil.which("dvc") or sys.executable, *([] if shutil.which("dvc") else ["-m", "dvc"])]
        # Share the original cache: the recorded data version is there, no download needed.
        _run([*dvc, "cache", "dir", "--local", str(repo / ".dvc" / "cache")], clone)
        _run([*dvc, "checkout", "-q", "data/raw.csv.dvc"], clone)
        if data_hash(clone) != recorded_hash:
            raise RuntimeError(f"commit {commit} does not hold the data version {recorded_hash} run {run_id} used")
        env = {**os.environ, "MLFLOW_EXPERIMENT_NAME": f"reproduce-{run_id}"}
        _run([*dvc, "repro", "-q", "--force"], clone, env)
        return json.loads((clone / "metrics.json").read_text())
    ### END SOLUTION


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

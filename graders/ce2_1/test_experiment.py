"""Graders for CE2.1 — MLflow integration, against a real MLflow tracking server.

Everything is read back with ``MlflowClient`` and compared with an independent
computation (sklearn metrics, ``git rev-parse``, the original model's predictions).
"""

from __future__ import annotations

import json
import math
import subprocess
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from workbook.checks import assert_close, field, learner_error
from workbook.services.base import free_port


@pytest.fixture
def ce(load_module):
    return load_module("experiment")


@pytest.fixture(autouse=True)
def no_run_left_active():
    """A learner's run left open must not leak into the next check."""
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run("KILLED")


def classification(seed: int = 0):
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3,
                               random_state=seed)
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.3, random_state=seed)
    return (X_tr, y_tr), (X_va, y_va)


def regression(seed: int = 0):
    X, y = make_regression(n_samples=200, n_features=5, noise=10.0, random_state=seed)
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.3, random_state=seed)
    return (X_tr, y_tr), (X_va, y_va)


@pytest.fixture(scope="module")
def shared_run(load_module, mlflow_server):
    """One classification run, logged once by the learner's code, read by several checks."""
    ce = load_module("experiment")
    exp, _ = new_experiment(ce, mlflow_server)
    train, val = classification(seed=1)
    model = LogisticRegression()
    run_id = exp.run_experiment(model, {"C": 0.3, "max_iter": 500}, train, val)
    return run_id, model, val


def new_experiment(ce, server, **kwargs):
    name = f"grader-{uuid.uuid4().hex[:10]}"
    return ce.MLExperiment(name, tracking_uri=server.tracking_uri, **kwargs), name


@pytest.fixture
def git_repo(tmp_path, monkeypatch) -> str:
    """Run the check inside a fresh git repository with one commit; returns its HEAD."""
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=grader", "-c", "user.email=grader@example.com",
                               *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    (tmp_path / "train.py").write_text("# training code\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "training code")
    monkeypatch.chdir(tmp_path)
    return git("rev-parse", "HEAD").strip()


@pytest.mark.points(2)
def test_run_logs_params_and_returns_run_id(shared_run, mlflow_server):
    """run_experiment returns the id of a FINISHED run holding the params it was given."""
    run = mlflow_server.client().get_run(shared_run[0])
    assert run.data.params == {"C": "0.3", "max_iter": "500"}, (
        f"the run should hold params {{'C': '0.3', 'max_iter': '500'}}; got {run.data.params}"
    )
    assert run.info.status == "FINISHED", f"the run should be FINISHED; got {run.info.status}"


@pytest.mark.points(2)
def test_params_are_the_ones_the_model_was_trained_with(ce, mlflow_server):
    """The logged model was fitted with the logged params (they are set on the model)."""
    exp, _ = new_experiment(ce, mlflow_server)
    train, val = classification()
    run_id = exp.run_experiment(DecisionTreeClassifier(random_state=0), {"max_depth": 2}, train, val)
    logged = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    depth = logged.get_params()["max_depth"]
    assert depth == 2, f"the logged model should have max_depth=2, as logged; got {depth}"


@pytest.mark.points(3)
def test_classification_metrics_equal_sklearn(shared_run, mlflow_server):
    """accuracy and f1 (macro) on the validation set, as sklearn computes them."""
    run_id, model, (X_va, y_va) = shared_run
    metrics = mlflow_server.client().get_run(run_id).data.metrics
    predicted = model.predict(X_va)
    for name, expected in (("accuracy", accuracy_score(y_va, predicted)),
                           ("f1", f1_score(y_va, predicted, average="macro"))):
        assert name in metrics, f"the run should log a metric {name!r}; got {sorted(metrics)}"
        assert_close(metrics[name], expected, what=f"metric {name!r} on the validation data")


@pytest.mark.points(2)
def test_regression_metrics_equal_sklearn(ce, mlflow_server):
    """rmse, mae and r2 on the validation set, as sklearn computes them."""
    exp, _ = new_experiment(ce, mlflow_server)
    train, (X_va, y_va) = regression()
    model = Ridge()
    run_id = exp.run_experiment(model, {"alpha": 0.1}, train, (X_va, y_va))
    metrics = mlflow_server.client().get_run(run_id).data.metrics
    predicted = model.predict(X_va)
    expected = {"rmse": math.sqrt(mean_squared_error(y_va, predicted)),
                "mae": mean_absolute_error(y_va, predicted), "r2": r2_score(y_va, predicted)}
    for name, value in expected.items():
        assert name in metrics, f"a regression run should log {name!r}; got {sorted(metrics)}"
        assert_close(metrics[name], value, what=f"metric {name!r} on the validation data")


@pytest.mark.points(3)
def test_logged_model_predicts_exactly_like_the_original(shared_run):
    """mlflow.pyfunc.load_model('runs:/<id>/model') predicts what the trained model predicts."""
    run_id, model, (X_va, _) = shared_run
    try:
        loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    except Exception as exc:
        raise AssertionError(f"runs:/{run_id}/model should load with mlflow.pyfunc; got {exc}") from None
    got = np.asarray(loaded.predict(X_va))
    assert np.array_equal(got, model.predict(X_va)), "the logged model should predict exactly like the original"


@pytest.mark.points(2)
def test_model_has_signature_and_input_example(shared_run):
    """The logged model carries an input signature and an input example."""
    info = mlflow.models.get_model_info(f"runs:/{shared_run[0]}/model")
    assert info.signature is not None, "log the model with a signature (mlflow.models.infer_signature)"
    assert info.saved_input_example_info, "log the model with an input_example"


@pytest.mark.points(2)
def test_artifacts_hold_a_valid_plot_and_a_report(shared_run, mlflow_server, tmp_path):
    """The run's artifacts include a PNG that opens as an image and a non-empty report."""
    local = Path(mlflow.artifacts.download_artifacts(run_id=shared_run[0], dst_path=str(tmp_path),
                                                     tracking_uri=mlflow_server.tracking_uri))
    files = [p for p in local.rglob("*") if p.is_file()]
    images = [p for p in files if p.suffix.lower() == ".png"]
    assert images, f"the run should log a PNG plot; artifacts are {[p.name for p in files]}"
    for image in images:
        with Image.open(image) as img:
            img.verify()
    reports = [p for p in files if p.suffix.lower() in (".json", ".md", ".txt", ".html") and p.stat().st_size]
    assert reports, f"the run should log an evaluation report; artifacts are {[p.name for p in files]}"
    for report in reports:
        if report.suffix == ".json":
            json.loads(report.read_text())


@pytest.mark.points(2)
def test_tags_name_git_commit_and_data_version(ce, mlflow_server, git_repo):
    """Tags git_commit (HEAD of the working folder) and data_version (stable per dataset)."""
    exp, _ = new_experiment(ce, mlflow_server)
    train, val = classification()
    other_train, other_val = classification(seed=5)
    client = mlflow_server.client()
    tags = [client.get_run(exp.run_experiment(LogisticRegression(max_iter=500), {"C": 1.0}, t, v)).data.tags
            for t, v in ((train, val), (train, val), (other_train, other_val))]
    got = field(tags[0], "git_commit", what="the run's tags")
    assert got == git_repo, f"tag git_commit should be the HEAD commit {git_repo}; got {got!r}"
    versions = [field(t, "data_version", what="the run's tags") for t in tags]
    assert versions[0] and versions[0] == versions[1], (
        f"the same training data should give the same data_version; got {versions[0]!r} and {versions[1]!r}"
    )
    assert versions[2] != versions[0], "different training data should give a different data_version"
    pinned, _ = new_experiment(ce, mlflow_server, data_version="dvc:abc123")
    run_id = pinned.run_experiment(LogisticRegression(max_iter=500), {"C": 1.0}, train, val)
    got = client.get_run(run_id).data.tags.get("data_version")
    assert got == "dvc:abc123", f"a data_version given to MLExperiment should be the tag; got {got!r}"


@pytest.mark.points(3)
def test_compare_ranks_runs_by_the_chosen_metric(ce, mlflow_server):
    """compare_experiments orders runs best first: highest accuracy, or lowest rmse with ascending."""
    exp, name = new_experiment(ce, mlflow_server)
    train, val = classification(seed=2)
    for C in (0.001, 0.05, 10.0):
        exp.run_experiment(LogisticRegression(max_iter=500), {"C": C}, train, val)
    client = mlflow_server.client()
    experiment_id = client.get_experiment_by_name(name).experiment_id
    truth = {r.info.run_id: r.data.metrics["accuracy"] for r in client.search_runs([experiment_id])}
    ranked = [field(r, "run_id", what="a compared run") for r in exp.compare_experiments("accuracy")]
    assert sorted(ranked) == sorted(truth), f"all {len(truth)} runs should be compared; got {len(ranked)}"
    values = [truth[r] for r in ranked]
    assert values == sorted(values, reverse=True), f"runs should be ordered by accuracy, best first; got {values}"

    reg, reg_name = new_experiment(ce, mlflow_server)
    rtrain, rval = regression(seed=3)
    for alpha in (0.01, 100.0, 5000.0):
        reg.run_experiment(Ridge(), {"alpha": alpha}, rtrain, rval)
    ranked = [field(r, "run_id", what="a compared run") for r in reg.compare_experiments("rmse", ascending=True)]
    rmse = {r.info.run_id: r.data.metrics["rmse"] for r in client.search_runs(
        [client.get_experiment_by_name(reg_name).experiment_id])}
    values = [rmse[r] for r in ranked]
    assert values == sorted(values), f"with ascending=True the lowest rmse should come first; got {values}"


class ExplodingModel(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        raise RuntimeError("training diverged")


@pytest.mark.points(2)
def test_failed_training_is_recorded_as_failed(ce, mlflow_server):
    """When fit raises, the error propagates and the run is FAILED, not left RUNNING."""
    exp, name = new_experiment(ce, mlflow_server)
    train, val = classification()
    with pytest.raises(RuntimeError, match="training diverged"):
        exp.run_experiment(ExplodingModel(), {"C": 1.0}, train, val)
    client = mlflow_server.client()
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    statuses = [r.info.status for r in runs]
    assert statuses == ["FAILED"], f"the failed training should leave one FAILED run; got {statuses}"


@pytest.mark.points(1)
@pytest.mark.timeout(30)
def test_unreachable_server_is_one_clear_error(ce):
    """An MLflow URI where nothing answers fails fast with an error that names the URI."""
    uri = f"http://127.0.0.1:{free_port()}"
    with learner_error(what=f"MLExperiment(tracking_uri={uri!r}) with nothing listening") as caught:
        ce.MLExperiment(f"grader-{uuid.uuid4().hex[:6]}", tracking_uri=uri)
    assert uri in str(caught.value), f"the error should name the unreachable URI {uri}; got {caught.value!r}"

"""Graders for CE2.1 — MLflow integration, against a real MLflow tracking server.

The learner's class logs a handful of runs once per session (module-scoped
fixtures); the checks read them back with ``MlflowClient`` and compare them with
independent computations: a clone of the estimator with the given params, fitted
on the training split alone; sklearn's metrics; ``git rev-parse HEAD``; the
client's own view of each experiment.

The data are built so that each plausible mistake gives a clearly different
answer (asserted in ``_data_separate``): a model fitted on train + validation
data, evaluated on the training data, trained without its params or without its
other settings, f1 averaged the weighted or micro way, MSE instead of RMSE.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from workbook.checks import assert_close, learner_error, number
from workbook.checks import field as field_of
from workbook.sealed import in_learner_process
from workbook.services.base import free_port

# Setting up the runs (a server start included) can take a while on a busy machine.
pytestmark = pytest.mark.timeout(180)


# -- data -------------------------------------------------------------------------------------


@cache
def class_data():
    """Imbalanced three-class data: few training rows, many validation rows."""
    X, y = make_classification(n_samples=240, n_features=6, n_informative=4, n_redundant=0, n_classes=3,
                               weights=[0.75, 0.17, 0.08], class_sep=0.8, flip_y=0.02, random_state=3)
    return (X[:70], y[:70]), (X[70:], y[70:])


@cache
def reg_data():
    """Regression data on a large scale (so MSE and RMSE differ), few training rows."""
    X, y = make_regression(n_samples=120, n_features=8, n_informative=5, noise=20.0, random_state=0)
    y = 3 * y + 500
    return (X[:30], y[:30]), (X[30:], y[30:])


@cache
def small_data():
    """A binary problem for the runs that test tags: 300 x 4 training values, more than numpy
    prints (its repr elides the middle rows), and macro F1 far from the positive class's F1."""
    X, y = make_classification(n_samples=400, n_features=4, n_informative=3, n_redundant=0,
                               weights=[0.8, 0.2], flip_y=0.05, random_state=7)
    return (X[:300], y[:300]), (X[300:], y[300:])


# The classification run: constructor settings (class_weight, max_iter) plus params that matter.
CLASS_MODEL = LogisticRegression(class_weight="balanced", max_iter=2000)
CLASS_PARAMS = {"C": 0.05}
REG_MODEL = Ridge()
REG_PARAMS = {"alpha": 25.0}
# Two more classification runs for the ranking, logged after the first one. Accuracy ranks them
# [third, first, second] (0.700, 0.476, 0.418) and f1 [first, third, second] (0.395, 0.369, 0.366):
# neither is the logging order or its reverse, and the best two are neither the first two logged
# nor the last two.
MORE_RUNS = [
    (LogisticRegression(class_weight={0: 1, 1: 6, 2: 12}, max_iter=2000), {"C": 1.0}),
    (LogisticRegression(max_iter=2000), {"C": 1.0}),
]


def fitted(model, params, X, y):
    """The reference: a clone of ``model`` with ``params`` set, fitted on (X, y)."""
    return clone(model).set_params(**params).fit(X, y)


def class_metrics(y, predicted) -> dict[str, float]:
    return {"accuracy": accuracy_score(y, predicted), "f1": f1_score(y, predicted, average="macro")}


def reg_metrics(y, predicted) -> dict[str, float]:
    return {"rmse": math.sqrt(mean_squared_error(y, predicted)), "mae": mean_absolute_error(y, predicted),
            "r2": r2_score(y, predicted)}


@cache
def class_expectations():
    """Predictions and metrics of the right answer, and of its plausible wrong neighbours."""
    (X_tr, y_tr), (X_va, y_va) = class_data()
    right = fitted(CLASS_MODEL, CLASS_PARAMS, X_tr, y_tr)
    both = fitted(CLASS_MODEL, CLASS_PARAMS, np.vstack([X_tr, X_va]), np.concatenate([y_tr, y_va]))
    predicted = right.predict(X_va)
    return {
        "predicted": predicted,
        "metrics": class_metrics(y_va, predicted),
        "wrong": {
            "fitted on train + validation data": both.predict(X_va),
            "fitted without the params (set after fitting, or never)": clone(CLASS_MODEL).fit(X_tr, y_tr).predict(X_va),
            "a new model built from the params alone, losing the model's own settings":
                LogisticRegression(**CLASS_PARAMS).fit(X_tr, y_tr).predict(X_va),
        },
        "wrong_metrics": {
            "the model was fitted on train + validation data": class_metrics(y_va, both.predict(X_va)),
            "the params were not set before fitting":
                class_metrics(y_va, clone(CLASS_MODEL).fit(X_tr, y_tr).predict(X_va)),
            "a new model was built from the params alone":
                class_metrics(y_va, LogisticRegression(**CLASS_PARAMS).fit(X_tr, y_tr).predict(X_va)),
            "they were computed on the training data": class_metrics(y_tr, right.predict(X_tr)),
            "f1 is the weighted average, not macro": {"f1": f1_score(y_va, predicted, average="weighted")},
            "f1 is the micro average, not macro": {"f1": f1_score(y_va, predicted, average="micro")},
        },
    }


@cache
def reg_expectations():
    (X_tr, y_tr), (X_va, y_va) = reg_data()
    right = fitted(REG_MODEL, REG_PARAMS, X_tr, y_tr)
    both = fitted(REG_MODEL, REG_PARAMS, np.vstack([X_tr, X_va]), np.concatenate([y_tr, y_va]))
    predicted = right.predict(X_va)
    return {
        "predicted": predicted,
        "metrics": reg_metrics(y_va, predicted),
        "wrong": {
            "fitted on train + validation data": both.predict(X_va),
            "fitted without the params (set after fitting, or never)": clone(REG_MODEL).fit(X_tr, y_tr).predict(X_va),
        },
        "wrong_metrics": {
            "the model was fitted on train + validation data": reg_metrics(y_va, both.predict(X_va)),
            "the params were not set before fitting":
                reg_metrics(y_va, clone(REG_MODEL).fit(X_tr, y_tr).predict(X_va)),
            "they were computed on the training data": reg_metrics(y_tr, right.predict(X_tr)),
            "rmse is the mean squared error, without the square root": {"rmse": mean_squared_error(y_va, predicted)},
        },
    }


def _data_separate():
    """The graders' own guard: every wrong neighbour is far from the right answer."""
    for expectations in (class_expectations(), reg_expectations()):
        for name, predicted in expectations["wrong"].items():
            assert not np.allclose(predicted, expectations["predicted"]), f"grader data: {name} is not separated"
        for name, metrics in expectations["wrong_metrics"].items():
            assert any(abs(v - expectations["metrics"][k]) > 0.01 for k, v in metrics.items()), (
                f"grader data: {name} is not separated"
            )
    (X_tr, y_tr), (X_va, y_va) = class_data()
    scores = [class_metrics(y_va, fitted(m, p, X_tr, y_tr).predict(X_va))
              for m, p in [(CLASS_MODEL, CLASS_PARAMS), *MORE_RUNS]]
    by = {k: sorted(range(3), key=lambda i: -scores[i][k]) for k in ("accuracy", "f1")}
    assert by["accuracy"] == [2, 0, 1] and by["f1"] == [0, 2, 1], f"grader data: ranking is {by}"


# -- the learner's runs, logged once per session ----------------------------------------------


@dataclass
class World:
    """The learner's experiments and the runs they logged."""

    server: object
    names: dict[str, str] = field(default_factory=dict)
    experiments: dict[str, object] = field(default_factory=dict)
    status_on_return: dict[str, str] = field(default_factory=dict)  # run id -> status when the call returned

    @property
    def client(self):
        return self.server.client()

    def experiment_id(self, key: str) -> str:
        return self.experiment_id_of(self.names[key])

    def experiment_id_of(self, name: str) -> str:
        __tracebackhide__ = True
        found = self.client.get_experiment_by_name(name)
        assert found is not None, (
            f"MLExperiment({name!r}) should create the MLflow experiment {name!r}; "
            "the tracking server has no experiment of that name"
        )
        return found.experiment_id

    def runs(self, key: str):
        return self.client.search_runs([self.experiment_id(key)])


def new_name() -> str:
    return f"grader-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def ce(load_module):
    return load_module("experiment")


@pytest.fixture(scope="module")
def world(ce, mlflow_server):
    """Two experiments alive at once: A (the main one) and B (with a data_version), both created first."""
    w = World(mlflow_server)
    _data_separate()
    for key, kwargs in (("A", {}), ("B", {"data_version": "dvc:abc123"})):
        w.names[key] = new_name()
        w.experiments[key] = ce.MLExperiment(w.names[key], tracking_uri=mlflow_server.tracking_uri, **kwargs)
    return w


def returned_id(run_id) -> str:
    __tracebackhide__ = True
    assert isinstance(run_id, str) and run_id, f"run_experiment should return the run id (a string); got {run_id!r}"
    return run_id


@pytest.fixture(scope="module")
def class_run(world) -> str:
    train, val = class_data()
    run_id = returned_id(world.experiments["A"].run_experiment(
        clone(CLASS_MODEL), dict(CLASS_PARAMS), train, val, run_name="grader-classifier"))
    with contextlib.suppress(Exception):  # no such run: judged by the checks
        world.status_on_return[run_id] = world.client.get_run(run_id).info.status
    return run_id


@pytest.fixture(scope="module")
def reg_run(world) -> str:
    train, val = reg_data()
    return returned_id(world.experiments["A"].run_experiment(clone(REG_MODEL), dict(REG_PARAMS), train, val))


@pytest.fixture(scope="module")
def ranked_runs(world, class_run) -> list[str]:
    """The classification run and two more, all in experiment A."""
    train, val = class_data()
    more = [world.experiments["A"].run_experiment(clone(model), dict(params), train, val)
            for model, params in MORE_RUNS]
    return [class_run, *(returned_id(r) for r in more)]


@pytest.fixture(scope="module")
def pinned_run(world, tmp_path_factory) -> dict:
    """A run of experiment B (constructed with a data_version), started outside any git repository."""
    folder = tmp_path_factory.mktemp("not-a-repo")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    train, val = small_data()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        run_id = world.experiments["B"].run_experiment(LogisticRegression(), {"C": 1.0}, train, val)
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    return {"run_id": returned_id(run_id), "git_commit": expected}


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=grader", "-c", "user.email=grader@example.com", *args],
                          cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


class ExplodingModel(LogisticRegression):
    def fit(self, X, y, sample_weight=None):
        raise FloatingPointError("training diverged")


@pytest.fixture(scope="module")
def version_runs(ce, mlflow_server, tmp_path_factory) -> dict:
    """In a fresh experiment C, inside a git repository: a training that fails, then runs at
    two commits on the same data, on a copy of it, and on data with a few labels changed."""
    repo = tmp_path_factory.mktemp("repo")
    git(repo, "init", "-q")
    (repo / "train.py").write_text("# training code\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "training code")
    first = git(repo, "rev-parse", "HEAD")
    (X_tr, y_tr), (X_va, y_va) = small_data()
    relabelled = y_tr.copy()
    relabelled[:3] = 1 - relabelled[:3]
    other_val = (X_va[::-1].copy() * 2, y_va[::-1].copy())
    runs = {}
    name = new_name()
    failure = {"raised": None, "left_active": None}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(repo)
        exp = ce.MLExperiment(name, tracking_uri=mlflow_server.tracking_uri)
        try:
            exp.run_experiment(ExplodingModel(), {"C": 1.0}, (X_tr, y_tr), (X_va, y_va))
        except NotImplementedError:
            raise
        except Exception as exc:  # the learner's error, judged by the checks
            failure["raised"] = exc
        active = mlflow.active_run()
        if active is not None:  # judged by the checks; the later runs must not nest in it
            failure["left_active"] = active.info.run_id
            while mlflow.active_run() is not None:
                mlflow.end_run("KILLED")
        runs["first"] = exp.run_experiment(LogisticRegression(), {"C": 1.0}, (X_tr, y_tr), (X_va, y_va))
        (repo / "train.py").write_text("# training code, version 2\n")
        git(repo, "commit", "-q", "-am", "training code, version 2")
        second = git(repo, "rev-parse", "HEAD")
        # The same training data as new arrays (equal values, other objects), other validation data.
        runs["copied"] = exp.run_experiment(LogisticRegression(), {"C": 1.0}, (X_tr.copy(), y_tr.copy()), other_val)
        runs["relabelled"] = exp.run_experiment(LogisticRegression(), {"C": 1.0}, (X_tr, relabelled), (X_va, y_va))
        nudged = X_tr.copy()
        nudged[len(nudged) // 2, 2] += 0.5  # one value, in the rows numpy's repr leaves out
        runs["nudged"] = exp.run_experiment(LogisticRegression(), {"C": 1.0}, (nudged, y_tr), (X_va, y_va))
    return {"runs": {k: returned_id(v) for k, v in runs.items()}, "commits": (first, second),
            "name": name, "exp": exp, "failure": failure}


# Two regressors in experiment D: a constant one far off the targets (r2 below 0) and a Ridge.
BAD_REGRESSOR, BAD_PARAMS = DummyRegressor(strategy="constant"), {"constant": 0.0}
CALLERS_PARAMS = {"alpha": 7.5}


@pytest.fixture(scope="module")
def regression_runs(ce, mlflow_server) -> dict:
    """Experiment D, created beforehand by the grader, used by an MLExperiment built with
    tracking_uri=None while MLFLOW_TRACKING_URI names the server; a run whose r2 is below 0,
    and a run of a Ridge the grader keeps a handle on (the very object the learner's code gets)."""
    name = new_name()
    experiment_id = mlflow_server.client().create_experiment(name)
    train, val = reg_data()
    ridge = in_learner_process(Ridge())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
        exp = ce.MLExperiment(name)
        bad = exp.run_experiment(clone(BAD_REGRESSOR), dict(BAD_PARAMS), train, val)
        good = exp.run_experiment(ridge, dict(CALLERS_PARAMS), train, val)
    return {"name": name, "experiment_id": experiment_id, "exp": exp, "model": ridge,
            "runs": {"bad": returned_id(bad), "good": returned_id(good)}}


@pytest.fixture(autouse=True)
def no_run_left_active():
    """A learner's run left open must not leak into the next check."""
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run("KILLED")


# -- reading runs back ------------------------------------------------------------------------


def get_run(world: World, run_id: str):
    __tracebackhide__ = True
    try:
        return world.client.get_run(run_id)
    except Exception as exc:
        raise AssertionError(f"run_experiment should return the id of the run it logged; "
                             f"{run_id!r} is no run on the tracking server ({exc})") from None


_models: dict[str, object] = {}


def load_logged_model(world: World, run_id: str):
    """``mlflow.pyfunc.load_model(f"runs:/{run_id}/model")``, once per run."""
    __tracebackhide__ = True
    if run_id not in _models:
        mlflow.set_tracking_uri(world.server.tracking_uri)
        try:
            _models[run_id] = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        except Exception as exc:
            raise AssertionError(
                f"mlflow.pyfunc.load_model('runs:/{run_id}/model') should load the logged model; got "
                f"{type(exc).__name__}: {exc}"
            ) from None
    return _models[run_id]


def predict(loaded, X) -> np.ndarray:
    """The loaded model's predictions, given X as an array or, if its signature names columns, a frame."""
    __tracebackhide__ = True
    try:
        return np.asarray(loaded.predict(X)).ravel()
    except Exception as first:
        try:
            return np.asarray(loaded.predict(pd.DataFrame(X, columns=_input_names(loaded, X)))).ravel()
        except Exception:
            raise AssertionError(
                f"the logged model should predict on validation rows; got {type(first).__name__}: {first}"
            ) from None


def _input_names(loaded, X):
    schema = loaded.metadata.get_input_schema()
    names = schema.input_names() if schema is not None and not schema.is_tensor_spec() else None
    return names if names and len(names) == np.shape(X)[1] else None


_artifacts: dict[str, list[Path]] = {}


def run_files(world: World, run_id: str, tmp_path_factory) -> list[Path]:
    """The run's artifact files, downloaded once per run (a logged model's own folder left out)."""
    if run_id not in _artifacts:
        local = Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, dst_path=str(tmp_path_factory.mktemp("artifacts")),
            tracking_uri=world.server.tracking_uri))
        models = [p.parent for p in local.rglob("MLmodel")]
        _artifacts[run_id] = [p for p in local.rglob("*") if p.is_file()
                              and not any(m in p.parents for m in models)]
    return _artifacts[run_id]


def params_hold(logged: dict, given: dict) -> list[str]:
    """What is missing or different: each given param must be logged with its value."""
    return [f"{k}={v!r} (logged: {logged.get(k)!r})" for k, v in given.items() if logged.get(k) != str(v)]


def diagnosis(got: dict, wrong: dict) -> str:
    """Which known mistake the logged metrics match, if any."""
    for name, metrics in wrong.items():
        if all(k in got and math.isclose(float(got[k]), v, rel_tol=1e-6) for k, v in metrics.items()):
            return f" (they match what you get when {name})"
    return ""


# -- the run itself ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("one-run", "returns-run-id", "experiment-created", "own-experiment", "run-name")
def test_one_finished_run_per_call_in_its_own_experiment(world, ranked_runs, reg_run, pinned_run):
    """Each call logs exactly one FINISHED run in its object's experiment and returns its id."""
    mine = {*ranked_runs, reg_run}
    runs = {r.info.run_id: r for r in world.runs("A")}
    assert set(runs) == mine, (
        f"{len(mine)} calls of run_experiment on one MLExperiment should log exactly {len(mine)} runs in its "
        f"experiment, with the ids it returned; the experiment holds {len(runs)} runs, "
        f"{len(set(runs) & mine)} of them returned"
        + (" (a second MLExperiment was created after it: log to the object's own experiment, not to "
           "MLflow's current one)" if pinned_run["run_id"] in runs or not set(runs) & mine else "")
    )
    statuses = {runs[r].info.status for r in mine}
    assert statuses == {"FINISHED"}, f"every run should end FINISHED; got {sorted(statuses)}"
    on_return = world.status_on_return.get(ranked_runs[0])
    assert on_return == "FINISHED", (
        f"a run should be FINISHED when run_experiment returns; the first run was {on_return} then "
        "(end it before returning, not at the start of the next call)"
    )
    in_b = [r.info.run_id for r in world.runs("B")]
    assert in_b == [pinned_run["run_id"]], (
        f"the other MLExperiment's one call should log one run in its own experiment; it holds {len(in_b)} runs"
    )
    name = runs[ranked_runs[0]].info.run_name
    assert name == "grader-classifier", f"run_name='grader-classifier' should name the run; got {name!r}"


@pytest.mark.points(2)
@pytest.mark.covers("params-logged")
def test_run_holds_the_given_params(world, class_run, reg_run, pinned_run):
    """The run holds at least the given params with their values (more, as autologging logs, is fine),
    a param given with its default value (C=1.0 of LogisticRegression) too."""
    for run_id, given in ((class_run, CLASS_PARAMS), (reg_run, REG_PARAMS), (pinned_run["run_id"], {"C": 1.0})):
        logged = get_run(world, run_id).data.params
        wrong = params_hold(logged, given)
        assert not wrong, f"the run should hold the params it was given; missing or different: {wrong}"


@pytest.mark.points(3)
@pytest.mark.covers("params-set", "fit-train-only")
def test_model_is_fitted_with_its_params_on_the_training_data(world, class_run, reg_run):
    """The logged model predicts like a clone with the params set, fitted on the training split alone."""
    for run_id, data, expectations, exact in ((class_run, class_data(), class_expectations(), True),
                                              (reg_run, reg_data(), reg_expectations(), False)):
        got = predict(load_logged_model(world, run_id), data[1][0])
        assert len(got) == len(data[1][0]), (
            f"the logged model should predict one value per validation row; got {len(got)} for {len(data[1][0])}"
        )
        same = np.array_equal if exact else (lambda a, b: np.allclose(a, b, rtol=1e-6, atol=1e-6))
        if same(got, expectations["predicted"]):
            continue
        known = [name for name, wrong in expectations["wrong"].items() if same(got, wrong)]
        raise AssertionError(
            "the logged model should predict like the given model with the params set before fitting, "
            "fitted on train_data only; "
            + (f"it predicts like a model {known[0]}" if known else
               f"{int(np.sum(~np.isclose(got, expectations['predicted'])))} of {len(got)} predictions differ")
        )


@pytest.mark.points(1)
@pytest.mark.covers("experiment-created", "current-uri")
def test_existing_experiment_is_used_and_none_keeps_the_current_uri(world, regression_runs):
    """An experiment that already exists is used, not another one; tracking_uri=None logs where MLflow
    already logs (MLFLOW_TRACKING_URI here)."""
    client = world.client
    mine = set(regression_runs["runs"].values())
    found = {r.info.run_id: r.info.status for r in client.search_runs([regression_runs["experiment_id"]])}
    others = [e.name for e in client.search_experiments(filter_string=f"name LIKE '{regression_runs['name']}%'")
              if e.name != regression_runs["name"]]
    assert set(found) == mine, (
        f"MLExperiment({regression_runs['name']!r}) with tracking_uri=None, while MLFLOW_TRACKING_URI names "
        f"the server, should log its 2 runs in that existing experiment on the server; it holds "
        f"{len(set(found) & mine)} of them"
        + (f" (they went to a new experiment {others[0]!r}: use the existing one)" if others else
           " (with tracking_uri=None keep MLflow's current URI, do not choose a store of your own)")
    )
    assert set(found.values()) == {"FINISHED"}, f"every run should end FINISHED; got {sorted(set(found.values()))}"


@pytest.mark.points(1)
@pytest.mark.covers("params-set")
def test_params_are_set_on_the_callers_model(regression_runs):
    """The model object the caller passed gets the params and is the one fitted (no copy)."""
    model = regression_runs["model"]
    got = model.alpha  # an attribute, read where the model lives (sealed grading: the learner's process)
    assert got == CALLERS_PARAMS["alpha"], (
        f"run_experiment(model, {CALLERS_PARAMS}, ...) should set the params on the caller's model; its "
        f"alpha is {got!r} (set them on model itself, not on a copy)"
    )
    (X_tr, y_tr), _ = reg_data()
    expected = fitted(Ridge(), CALLERS_PARAMS, X_tr, y_tr).coef_
    coef = getattr(model, "coef_", None)
    assert coef is not None, "the caller's model should be fitted after run_experiment; it has no coef_"
    assert np.allclose(np.asarray(coef), expected, rtol=1e-6, atol=1e-9), (
        "the caller's model should be fitted on train_data with the params; its coefficients differ"
    )


@pytest.mark.points(3)
@pytest.mark.covers("metrics-logged", "classifier-metrics", "fit-train-only")
def test_classification_metrics_match_an_independent_fit(world, class_run):
    """accuracy and f1 (macro) on the validation data, of a model fitted on the training data."""
    got = get_run(world, class_run).data.metrics
    expectations = class_expectations()
    for name, expected in expectations["metrics"].items():
        assert name in got, f"a classifier's run should log a metric {name!r}; got {sorted(got)}"
        assert math.isclose(got[name], expected, rel_tol=1e-6), (
            f"metric {name!r} should be {expected:.6g} on the validation data; got {got[name]:.6g}"
            + diagnosis(got, expectations["wrong_metrics"])
        )


@pytest.mark.points(2)
@pytest.mark.covers("metrics-logged", "regressor-metrics", "fit-train-only")
def test_regression_metrics_match_an_independent_fit(world, reg_run):
    """rmse, mae and r2 on the validation data, of a model fitted on the training data."""
    got = get_run(world, reg_run).data.metrics
    expectations = reg_expectations()
    for name, expected in expectations["metrics"].items():
        assert name in got, f"a regressor's run should log a metric {name!r}; got {sorted(got)}"
        assert math.isclose(got[name], expected, rel_tol=1e-6), (
            f"metric {name!r} should be {expected:.6g} on the validation data; got {got[name]:.6g}"
            + diagnosis(got, expectations["wrong_metrics"])
        )


@pytest.mark.points(2)
@pytest.mark.covers("classifier-metrics", "regressor-metrics", "model-kind")
def test_evaluate_picks_metrics_by_the_kind_of_model(world):
    """evaluate: a classifier without predict_proba on float labels, a regressor on integer targets."""
    exp = world.experiments["A"]
    (X_tr, y_tr), (X_va, y_va) = class_data()
    # Float labels and no predict_proba: still a classifier.
    classifier = RidgeClassifier(alpha=1.0).fit(X_tr, y_tr.astype(float))
    predicted = classifier.predict(X_va)
    labels = y_va.astype(float)
    got = exp.evaluate(classifier, (X_va, labels))
    for name, expected in class_metrics(labels, predicted).items():
        value = field_of(got, name, what="evaluate(classifier, val_data)")
        wrong = f1_score(labels, predicted, average="weighted")
        hint = " (that is the weighted average; use macro)" if math.isclose(number(value, what=name), wrong) else ""
        assert_close(value, expected, what=f"evaluate(...)[{name!r}] for a RidgeClassifier{hint}")
    # Two classes: f1 is still the macro average, not the positive class's F1.
    (B_tr, b_tr), (B_va, b_va) = small_data()
    binary = LogisticRegression().fit(B_tr, b_tr)
    predicted = binary.predict(B_va)
    expected = f1_score(b_va, predicted, average="macro")
    positive = f1_score(b_va, predicted)
    assert abs(expected - positive) > 0.05  # the case tells the two apart
    value = field_of(exp.evaluate(binary, (B_va, b_va)), "f1", what="evaluate(binary classifier, val_data)")
    hint = " (that is the positive class's F1: average='binary')" if math.isclose(number(value, what="f1"), positive) else ""
    assert_close(value, expected, what=f"evaluate(...)['f1'] for a two-class LogisticRegression{hint}")
    # Whole-number targets: still a regressor.
    (R_tr, t_tr), (R_va, t_va) = reg_data()
    regressor = Ridge(alpha=1.0).fit(R_tr, np.round(t_tr).astype(int))
    targets = np.round(t_va).astype(int)
    got = exp.evaluate(regressor, (R_va, targets))
    for name, expected in reg_metrics(targets, regressor.predict(R_va)).items():
        value = field_of(got, name, what="evaluate(regressor, val_data) on whole-number targets")
        assert_close(value, expected, what=f"evaluate(...)[{name!r}] for a Ridge regressor")


# -- the logged model -------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("model-logged")
def test_logged_model_loads_with_pyfunc_and_reproduces_the_metrics(world, class_run, reg_run):
    """mlflow.pyfunc.load_model('runs:/<id>/model') loads, and its predictions give the run's own metrics."""
    for run_id, (_, (X_va, y_va)), score in ((class_run, class_data(), class_metrics),
                                            (reg_run, reg_data(), reg_metrics)):
        got = predict(load_logged_model(world, run_id), X_va)
        assert len(got) == len(y_va), f"the logged model should predict one value per row; got {len(got)}"
        logged = get_run(world, run_id).data.metrics
        for name, value in score(y_va, got).items():
            if name in logged:
                assert math.isclose(logged[name], value, rel_tol=1e-6, abs_tol=1e-9), (
                    f"the logged model's predictions give {name}={value:.6g} on the validation data, but the "
                    f"run logged {logged[name]:.6g}: log the fitted model, the one you evaluated"
                )


@pytest.mark.points(2)
@pytest.mark.covers("signature-example")
def test_model_has_signature_and_input_example(world, class_run, tmp_path_factory):
    """The logged model carries a signature with X's 6 columns and an input example of rows of X."""
    n_features = class_data()[0][0].shape[1]
    uri = f"runs:/{class_run}/model"
    mlflow.set_tracking_uri(world.server.tracking_uri)
    info = mlflow.models.get_model_info(uri)
    assert info.signature is not None and info.signature.inputs is not None, (
        "log the model with a signature (mlflow.models.infer_signature(X, predictions))"
    )
    inputs = info.signature.inputs
    width = inputs.inputs[0].shape[-1] if inputs.is_tensor_spec() else len(inputs.inputs)
    assert width == n_features, f"the signature should describe X's {n_features} columns; it has {width}"
    assert info.saved_input_example_info, "log the model with an input_example (a few rows of X)"
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path_factory.mktemp("model")))
    example = mlflow.models.Model.load(local).load_input_example(local)
    shape = np.shape(np.asarray(example))
    assert len(shape) == 2 and 1 <= shape[0] <= 20 and shape[1] == n_features, (
        f"the input example should be a few rows of X (1 to 20, {n_features} columns); got shape {shape}"
    )


# -- artifacts --------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.covers("plot-png")
def test_each_run_logs_a_png_plot(world, class_run, reg_run, tmp_path_factory):
    """A classifier's run and a regressor's run each log a real PNG image."""
    for run_id, kind in ((class_run, "classifier"), (reg_run, "regressor")):
        files = run_files(world, run_id, tmp_path_factory)
        images = [p for p in files if p.suffix.lower() == ".png"]
        assert images, f"a {kind}'s run should log a PNG plot; its artifacts are {sorted(p.name for p in files)}"
        for image in images:
            assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{image.name} should be a PNG image"
            try:
                with Image.open(image) as img:
                    img.verify()
            except Exception as exc:
                raise AssertionError(f"{image.name} should open as an image; got {exc}") from None


def json_numbers(value, found: dict[str, list[float]]) -> dict[str, list[float]]:
    """Every number in a JSON document under the key it sits at, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, int | float) and not isinstance(item, bool):
                found.setdefault(str(key), []).append(float(item))
            else:
                json_numbers(item, found)
    elif isinstance(value, list):
        for item in value:
            json_numbers(item, found)
    return found


@pytest.mark.points(2)
@pytest.mark.covers("report-json")
def test_report_is_json_with_the_logged_metrics(world, class_run, reg_run, tmp_path_factory):
    """A JSON report among the artifacts holds each metric of evaluate() the run logged, under its name."""
    for run_id, names in ((class_run, ("accuracy", "f1")), (reg_run, ("rmse", "mae", "r2"))):
        files = run_files(world, run_id, tmp_path_factory)
        reports = [p for p in files if p.suffix.lower() == ".json"]
        assert reports, f"the run should log a JSON evaluation report; its artifacts are {sorted(p.name for p in files)}"
        logged = {k: v for k, v in get_run(world, run_id).data.metrics.items() if k in names}
        problems = []
        for report in reports:
            try:
                numbers = json_numbers(json.loads(report.read_text()), {})
            except ValueError as exc:
                problems.append(f"{report.name} is not valid JSON ({exc})")
                continue
            missing = [k for k, v in logged.items()
                       if not any(math.isclose(x, v, rel_tol=1e-6, abs_tol=1e-9) for x in numbers.get(k, []))]
            if not missing:
                break
            problems.append(f"{report.name} lacks {missing} with the logged values")
        else:
            raise AssertionError(f"the JSON report should hold each logged metric {sorted(logged)} under its "
                                 f"name; {'; '.join(problems)}")


# -- tags -------------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("git-commit", "git-unknown")
def test_git_commit_is_the_working_folders_head_at_run_time(world, version_runs, pinned_run):
    """git_commit: HEAD of the current folder when each run starts; "unknown" outside git."""
    runs, (first, second) = version_runs["runs"], version_runs["commits"]
    for key, commit, when in (("first", first, "the first commit"), ("copied", second, "a second commit")):
        got = get_run(world, runs[key]).data.tags.get("git_commit")
        assert got == commit, (
            f"tag git_commit of a run started in a git repository at {when} should be its HEAD {commit}; "
            f"got {got!r}" + (" (the commit of an earlier moment: read HEAD when the run starts)"
                              if got == first else "")
        )
    got = get_run(world, pinned_run["run_id"]).data.tags.get("git_commit")
    assert got == pinned_run["git_commit"], (
        f"tag git_commit of a run started outside any git repository should be "
        f"{pinned_run['git_commit']!r}; got {got!r}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("data-version-given")
def test_data_version_given_to_the_constructor_is_the_tag(world, pinned_run):
    """MLExperiment(..., data_version="dvc:abc123") tags its runs data_version=dvc:abc123."""
    got = get_run(world, pinned_run["run_id"]).data.tags.get("data_version")
    assert got == "dvc:abc123", f"a data_version given to MLExperiment should be the run's tag; got {got!r}"


@pytest.mark.points(2)
@pytest.mark.covers("data-version-hash", "hash-stable", "hash-train-only")
def test_data_version_hash_follows_the_training_data(world, version_runs):
    """Same training values (new arrays, other val_data): same hash; a few labels changed: another hash."""
    tags = {k: get_run(world, r).data.tags for k, r in version_runs["runs"].items()}
    versions = {k: field_of(t, "data_version", what="the run's tags") for k, t in tags.items()}
    assert versions["first"], "tag data_version should be a hash of the training data; got an empty value"
    assert versions["copied"] == versions["first"], (
        "the same training data (equal values in new arrays), with other validation data, should give the "
        f"same data_version; got {versions['first']!r} then {versions['copied']!r}: hash the values of X "
        "and y, nothing else"
    )
    assert versions["relabelled"] != versions["first"], (
        f"training data with three labels changed should give another data_version; both are "
        f"{versions['first']!r}: the hash should cover y as well as X"
    )
    assert versions["nudged"] != versions["first"], (
        f"training data with one value of X changed (row 150 of 300) should give another data_version; "
        f"both are {versions['first']!r}: hash every value (numpy's repr or str leaves the middle rows out)"
    )


# -- a failing training -----------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("failed-status", "error-propagates")
def test_failed_training_ends_failed_and_reraises(world, version_runs):
    """When fit raises: the error reaches the caller, the run ends FAILED, and no run is left active."""
    failure = version_runs["failure"]
    raised = failure["raised"]
    chain, seen = [], raised
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert raised is not None, "run_experiment should let the training error reach the caller; it returned"
    assert isinstance(raised, FloatingPointError) and "training diverged" in str(raised), (
        f"run_experiment should let the training error itself reach the caller (FloatingPointError: "
        f"training diverged); got {raised!r}"
        + (", which wraps it: re-raise the error itself" if any(isinstance(e, FloatingPointError) for e in chain[1:]) else "")
    )
    assert failure["left_active"] is None, (
        "after a failed training no run should stay active, or the next call nests in it or fails; "
        f"run {failure['left_active']} was still active"
    )
    mine = set(version_runs["runs"].values())
    statuses = sorted(r.info.status for r in world.client.search_runs([world.experiment_id_of(version_runs["name"])])
                      if r.info.run_id not in mine)
    assert statuses == ["FAILED"], (
        f"a failed training should leave exactly one run, ended FAILED (never left RUNNING); got {statuses}"
    )


# -- comparing runs ---------------------------------------------------------------------------


def compared(exp, *args, **kwargs) -> list[dict]:
    __tracebackhide__ = True
    result = exp.compare_experiments(*args, **kwargs)
    return list(result)


def ids(entries) -> list[str]:
    return [field_of(e, "run_id", what="a compared run") for e in entries]


@pytest.mark.points(3)
@pytest.mark.covers("compare-order")
def test_compare_orders_runs_best_first(world, ranked_runs, reg_run):
    """By accuracy, by f1, and ascending: three runs whose orders all differ from their logging order."""
    client = world.client
    truth = {r: client.get_run(r).data.metrics for r in ranked_runs}
    exp = world.experiments["A"]
    for metric, ascending in (("accuracy", False), ("f1", False), ("accuracy", True)):
        values = {r: truth[r][metric] for r in ranked_runs if metric in truth[r]}
        got = ids(compared(exp, metric, ascending=ascending))
        call = f"compare_experiments({metric!r}{', ascending=True' if ascending else ''})"
        assert sorted(got) == sorted(values), (
            f"{call} should list the {len(values)} runs that logged {metric}; got {len(got)} runs"
        )
        order = [values[r] for r in got]
        best = sorted(order, reverse=not ascending)
        assert order == best, (
            f"{call} should order runs {'lowest' if ascending else 'highest'} {metric} first; "
            f"got {metric} values {[round(v, 4) for v in order]}"
        )


@pytest.mark.points(2)
@pytest.mark.covers("compare-missing")
def test_compare_leaves_out_runs_without_the_metric(world, ranked_runs, reg_run, version_runs, regression_runs):
    """rmse lists only the regressor's run; accuracy leaves out the regressor's and failed runs;
    a run whose metric is below 0 (an r2 of a constant model) did log it."""
    exp = world.experiments["A"]
    got = ids(compared(exp, "rmse", ascending=True))
    assert got == [reg_run], (
        f"compare_experiments('rmse') should list only the one run that logged rmse; got {len(got)} runs"
    )
    assert reg_run not in ids(compared(exp, "accuracy")), (
        "compare_experiments('accuracy') should leave out the regressor's run, which has no accuracy"
    )
    assert ids(compared(exp, "no_such_metric")) == [], "a metric no run logged should give an empty list"
    good = set(version_runs["runs"].values())
    got = ids(compared(version_runs["exp"], "accuracy"))
    assert sorted(got) == sorted(good), (
        f"compare_experiments('accuracy') should list the {len(good)} good runs and leave out a failed run; "
        f"got {len(got)} runs"
    )
    runs = regression_runs["runs"]
    got = ids(compared(regression_runs["exp"], "r2"))
    assert got == [runs["good"], runs["bad"]], (
        "compare_experiments('r2') should list both runs that logged r2, the one below 0 too, highest first; "
        f"got {len(got)} runs" + (" (the run whose r2 is below 0 is missing: leave out runs without the "
                                  "metric, not runs with a low value)" if runs["bad"] not in got else "")
    )


@pytest.mark.points(2)
@pytest.mark.covers("compare-own-experiment")
def test_compare_lists_only_its_own_experiment(world, ranked_runs, pinned_run):
    """Two experiments alive at once: each compares its own runs only."""
    got_a = ids(compared(world.experiments["A"], "accuracy"))
    assert pinned_run["run_id"] not in got_a and sorted(got_a) == sorted(ranked_runs), (
        f"compare_experiments should list this experiment's {len(ranked_runs)} classification runs only; "
        f"got {len(got_a)} runs" + (", one of another experiment" if pinned_run["run_id"] in got_a else "")
    )
    got_b = ids(compared(world.experiments["B"], "accuracy"))
    assert got_b == [pinned_run["run_id"]], (
        f"the other experiment should compare its one run only; got {len(got_b)} runs"
    )


@pytest.mark.points(1)
@pytest.mark.covers("compare-fields")
def test_compare_entries_hold_params_and_metrics(world, ranked_runs):
    """Each entry has run_id, params and metrics as the run logged them."""
    client = world.client
    for entry in compared(world.experiments["A"], "accuracy"):
        run = client.get_run(field_of(entry, "run_id", what="a compared run"))
        params = field_of(entry, "params", what="a compared run")
        metrics = field_of(entry, "metrics", what="a compared run")
        wrong = [f"{k}={v!r} (logged: {run.data.params[k]!r})" for k, v in dict(params).items()
                 if k in run.data.params and v != run.data.params[k]]
        missing = sorted(set(run.data.params) - set(dict(params)))
        assert not wrong and not missing, (
            "a compared run's params should be the ones it logged, as the strings MLflow keeps; "
            + (f"different: {wrong}" if wrong else f"missing: {missing}")
        )
        for name, value in run.data.metrics.items():
            assert name in metrics, f"a compared run's metrics should include {name!r}; got {sorted(metrics)}"
            assert_close(metrics[name], value, what=f"a compared run's metric {name!r}")
        others = sorted(set(dict(metrics)) - set(run.data.metrics))
        assert not others, f"a compared run's metrics should be its own; it never logged {others}"


@pytest.mark.points(1)
@pytest.mark.covers("compare-max-results")
def test_compare_max_results_keeps_the_best(world, ranked_runs):
    """max_results=2 of three runs: the two best, in order, highest first and with ascending=True lowest first."""
    client = world.client
    logged = {r: client.get_run(r).data.metrics for r in ranked_runs}
    accuracy = {r: m["accuracy"] for r, m in logged.items() if "accuracy" in m}
    for ascending in (False, True):
        best = sorted(accuracy.values(), reverse=not ascending)[:2]  # values: equal ones may swap
        got = ids(compared(world.experiments["A"], "accuracy", ascending=ascending, max_results=2))
        call = f"compare_experiments('accuracy', {'ascending=True, ' if ascending else ''}max_results=2)"
        assert len(got) == 2 and all(r in accuracy for r in got) and [accuracy[r] for r in got] == best, (
            f"{call} should give the 2 best runs ({'lowest' if ascending else 'highest'} accuracy), best "
            f"first; got {len(got)} runs with accuracy {[round(accuracy.get(r, float('nan')), 4) for r in got]}"
        )


# -- the server -------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.timeout(30)
@pytest.mark.covers("unreachable-server")
def test_unreachable_server_is_one_clear_error(ce):
    """An MLflow URI where nothing answers fails fast with an error that names the URI."""
    uri = f"http://127.0.0.1:{free_port()}"
    with learner_error(what=f"MLExperiment(tracking_uri={uri!r}) with nothing listening") as caught:
        ce.MLExperiment(f"grader-{uuid.uuid4().hex[:6]}", tracking_uri=uri)
    assert uri in str(caught.value), f"the error should name the unreachable URI {uri}; got {caught.value!r}"

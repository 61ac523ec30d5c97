"""Graders for AP2.1 — a reproducible pipeline, with real git, dvc and an MLflow server.

Each check builds a fresh project from the learner's dvc.yaml, params.yaml and
stages.py, with data made here and versioned with DVC, and drives it with the dvc CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification

from workbook.checks import assert_close, require_started

pytestmark = pytest.mark.timeout(240)
FILES = ["dvc.yaml", "params.yaml", "stages.py"]


def dvc_cmd() -> list[str]:
    found = shutil.which("dvc")
    return [found] if found else [sys.executable, "-m", "dvc"]


def sh(cwd: Path, *command: str) -> str:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if "NotImplementedError" in output:
            raise NotImplementedError("stages.py still raises NotImplementedError when dvc runs a stage")
        tail = "\n".join(output.strip().splitlines()[-8:])
        shown = " ".join([Path(command[0]).name, *command[1:]])
        raise AssertionError(f"`{shown}` should succeed in {cwd.name}; it failed:\n{tail}")
    return proc.stdout + proc.stderr


def git(cwd: Path, *args: str) -> str:
    return sh(cwd, "git", "-c", "user.name=grader", "-c", "user.email=grader@example.com", *args)


def dvc(cwd: Path, *args: str) -> str:
    return sh(cwd, *dvc_cmd(), *args)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture
def experiment(mlflow_server, monkeypatch) -> str:
    """The MLflow server and experiment the pipeline logs to (through the environment).

    The workbook's Python comes first on PATH, as in an activated venv, so the
    stages' `python` has the workbook's packages.
    """
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    name = f"ap2_1-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    return name


@pytest.fixture
def project(tmp_path, target_dir, exercise_id, experiment) -> Path:
    """A git + DVC project: the learner's files, raw data versioned with DVC, a local remote."""
    source = target_dir / exercise_id
    require_started(exercise_id, source, FILES)
    repo = tmp_path / "project"
    (repo / "data").mkdir(parents=True)
    for name in FILES:
        shutil.copy(source / name, repo / name)
    X, y = make_classification(n_samples=400, n_features=4, n_informative=3, n_redundant=0,
                               class_sep=0.6, random_state=0)
    raw = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    raw["label"] = y
    raw.to_csv(repo / "data" / "raw.csv", index=False)
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    dvc(repo, "remote", "add", "-d", "storage", str(tmp_path / "remote"))
    dvc(repo, "add", "-q", "data/raw.csv")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline and data")
    return repo


def metrics(repo: Path) -> dict:
    path = repo / "metrics.json"
    assert path.is_file(), "the evaluate stage should write metrics.json"
    return json.loads(path.read_text())


@pytest.mark.points(2)
def test_dvc_yaml_declares_four_stages_with_metrics_and_plots(project):
    """prepare, featurize, train and evaluate; train reads train.* params; metrics.json and a plot declared."""
    spec = yaml.safe_load((project / "dvc.yaml").read_text()) or {}
    stages = spec.get("stages") or {}
    missing = [s for s in ("prepare", "featurize", "train", "evaluate") if s not in stages]
    assert not missing, f"dvc.yaml should declare the stages {missing}; it has {list(stages)}"
    train_params = [str(p) for p in stages["train"].get("params", [])]
    assert any(p.startswith("train.") for p in train_params), (
        f"the train stage should declare the train.* params it reads; it declares {train_params}"
    )
    declared = json.dumps(stages["evaluate"].get("metrics", []))
    assert "metrics.json" in declared, "the evaluate stage should declare metrics.json under metrics"
    assert any(stage.get("plots") for stage in stages.values()) or spec.get("plots"), "declare at least one plot"


@pytest.mark.points(3)
def test_repro_succeeds_in_a_fresh_clone(project, tmp_path):
    """A new clone, `dvc pull` of the versioned data, then `dvc repro` runs the whole pipeline."""
    dvc(project, "push", "-q")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    dvc(clone, "pull", "-q", "data/raw.csv.dvc")  # no dvc.lock yet: only the raw data exists
    output = dvc(clone, "repro")
    ran = stages_run(output)
    assert {"prepare", "featurize", "train", "evaluate"} <= ran, f"all four stages should run; ran {sorted(ran)}"
    got = metrics(clone)
    assert {"accuracy", "f1"} <= set(got), f"metrics.json should hold accuracy and f1; got {got}"


@pytest.mark.points(2)
def test_two_runs_give_identical_metrics(project):
    """Running the whole pipeline again from scratch gives exactly the same metrics."""
    dvc(project, "repro", "-q")
    first = metrics(project)
    dvc(project, "repro", "-q", "--force")
    second = metrics(project)
    assert first == second, f"the same code, data and params should give the same metrics; got {first} then {second}"


@pytest.mark.points(3)
def test_changing_one_param_reruns_only_what_depends_on_it(project):
    """After a train.* param change, only train and evaluate run again."""
    dvc(project, "repro", "-q")
    status = dvc(project, "status")
    assert "up to date" in status, f"right after `dvc repro`, `dvc status` should be clean; got:\n{status}"
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["C"] = float(params["train"]["C"]) * 0.1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    ran = stages_run(dvc(project, "repro"))
    assert ran == {"train", "evaluate"}, (
        f"changing train.C should re-run exactly train and evaluate; `dvc repro` ran {sorted(ran)}"
    )


@pytest.mark.points(3)
def test_each_run_is_logged_with_commit_and_data_hash(project, experiment, mlflow_server):
    """The pipeline's MLflow run names the commit and the DVC data hash, with params and metrics."""
    dvc(project, "repro", "-q")
    client = mlflow_server.client()
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"the pipeline should log to the MLflow experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, f"one `dvc repro` should log one MLflow run; found {len(runs)}"
    run = runs[0]
    head = git(project, "rev-parse", "HEAD").strip()
    assert run.data.tags.get("git_commit") == head, (
        f"tag git_commit should be {head}; got {run.data.tags.get('git_commit')!r}"
    )
    md5 = hashlib.md5((project / "data" / "raw.csv").read_bytes()).hexdigest()
    assert run.data.tags.get("data_hash") == md5, (
        f"tag data_hash should be the md5 DVC records for raw.csv ({md5}); got {run.data.tags.get('data_hash')!r}"
    )
    expected = metrics(project)
    for name, value in expected.items():
        assert_close(run.data.metrics.get(name), value, what=f"logged metric {name!r}")
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert run.data.params.get("train.C") == str(params["train"]["C"]), (
        f"params should be logged flattened (train.C={params['train']['C']}); got {run.data.params}"
    )


@pytest.mark.points(3)
def test_reproduce_recreates_a_past_run(project, experiment, mlflow_server, load_module):
    """reproduce(run_id) returns the metrics that run recorded, after the project moved on."""
    dvc(project, "repro", "-q")
    client = mlflow_server.client()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (old_run,) = client.search_runs([experiment_id])
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["C"] = 0.0005
    params["featurize"]["poly_degree"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    dvc(project, "repro", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "weaker model")
    new = metrics(project)
    assert not np.isclose(new["accuracy"], old_run.data.metrics["accuracy"]), "the grader's change should matter"
    stages = load_module("stages")
    got = stages.reproduce(old_run.info.run_id, repo=project)
    for name in ("accuracy", "f1"):
        assert_close(got.get(name), old_run.data.metrics[name],
                     what=f"{name} of reproduce({old_run.info.run_id[:8]}…), the recorded value")

"""Graders for AP2.1 — a reproducible pipeline, with real git, dvc and an MLflow server.

One shared project per session: the learner's dvc.yaml, params.yaml (with the
graders' own values) and stages.py, data made here and versioned with DVC, pushed to a
local remote; then a fresh clone, `dvc pull` and one `dvc repro`. Most checks only read
that run; the ones that change something work on copies. Expected numbers are computed
here with scikit-learn from the documented split and model, never from the learner's
files.

Everything the graders and the learner's code write stays under one temporary
folder: the projects sit several levels deep in it (so `../..` paths land inside),
and HOME, TMPDIR, DVC's site cache and config, git's config and matplotlib's cache
point into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from workbook.checks import assert_close, learner_error, require_started
from workbook.sealed import run_learner_program, sandbox_uid

pytestmark = pytest.mark.timeout(240)
FILES = ["dvc.yaml", "params.yaml", "stages.py"]
STAGES = ("prepare", "featurize", "train", "evaluate")
#: The pipeline's contract graph: each stage and the stages that consume its outputs.
DOWNSTREAM = {
    "prepare": {"featurize", "train", "evaluate"},
    "featurize": {"train", "evaluate"},
    "train": {"evaluate"},
    "evaluate": set(),
}
#: The graders' params: none is the starter value, so a hard-coded number shows.
PARAMS = {"prepare": {"test_size": 0.3, "seed": 7}, "featurize": {"poly_degree": 3},
          "train": {"C": 10.0, "max_iter": 15}}
#: The params after "the project moved on" (reproduce must not use them).
LATER_PARAMS = {"prepare": {"test_size": 0.3, "seed": 7}, "featurize": {"poly_degree": 1},
                "train": {"C": 0.01, "max_iter": 15}}
#: Where a param lives -> the stage that reads it.
PARAM_READER = {"prepare.test_size": "prepare", "prepare.seed": "prepare",
                "featurize.poly_degree": "featurize", "train.C": "train", "train.max_iter": "train"}
#: How many folders deep the projects sit under the temporary root.
DEPTH = 5
#: The user's own home and temporary folder, read before the sandbox replaces them.
OUTSIDE = (Path(os.path.expanduser("~")), Path(tempfile.gettempdir()))


# -- data and the independent reference ---------------------------------------------------


def raw_data(random_state: int = 2) -> pd.DataFrame:
    """200 rows, 6 features, unbalanced labels, some noise: degree-3 features over-fit, so
    metrics on the training split are far (0.29 in F1) from those on the test split, and
    every documented choice (seed, test size, stratify, degree, C, max_iter, scaler, macro
    F1) moves the test metrics by at least 2 rows or 2 F1 points."""
    X, y = make_classification(n_samples=200, n_features=6, n_informative=3, n_redundant=0,
                               flip_y=0.05, class_sep=0.6, weights=[0.65], random_state=random_state)
    raw = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    raw["label"] = y
    return raw


@dataclass
class Reference:
    """The documented pipeline, computed here with scikit-learn."""

    train: pd.DataFrame
    test: pd.DataFrame
    n_features: int
    metrics: dict[str, float]
    train_metrics: dict[str, float]
    confusion: np.ndarray


def reference(raw: pd.DataFrame, params: dict) -> Reference:
    p, f, t = params["prepare"], params["featurize"], params["train"]
    train, test = train_test_split(raw, test_size=p["test_size"], random_state=p["seed"],
                                   stratify=raw["label"])
    columns = [c for c in raw.columns if c != "label"]
    poly = PolynomialFeatures(degree=f["poly_degree"], include_bias=False)
    scaler = StandardScaler()
    X_train = scaler.fit_transform(poly.fit_transform(train[columns]))
    X_test = scaler.transform(poly.transform(test[columns]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter is small on purpose: ConvergenceWarning
        model = LogisticRegression(C=t["C"], max_iter=t["max_iter"]).fit(X_train, train["label"])

    def scores(X, y):
        predicted = model.predict(X)
        return {"accuracy": float(accuracy_score(y, predicted)),
                "f1": float(f1_score(y, predicted, average="macro"))}, predicted

    metrics, predicted = scores(X_test, test["label"])
    train_metrics, _ = scores(X_train, train["label"])
    return Reference(train, test, X_train.shape[1], metrics, train_metrics,
                     confusion_matrix(test["label"], predicted, labels=[0, 1]))


# -- the sandbox: every file-system effect under one temporary folder ---------------------


def sandbox_env(root: Path) -> dict[str, str]:
    """Variables that send every tool's writes (DVC, git, pip caches, matplotlib, tempfile) into root."""
    home = root / "home"
    for folder in ("home", "home/.config", "home/.cache", "home/.local/share", "dvc-site", "dvc-global",
                   "dvc-system"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    tmp = root.joinpath("tmp", *[f"t{i}" for i in range(DEPTH)])
    tmp.mkdir(parents=True, exist_ok=True)
    # No update check: it would start a background `dvc daemon updater` on every dvc call.
    (root / "dvc-global" / "config").write_text("[core]\n    check_update = false\n    analytics = false\n")
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = grader\n\temail = grader@example.com\n"
                         "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home), "TMPDIR": str(tmp),
        "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"), "MPLCONFIGDIR": str(home / ".cache/matplotlib"),
        "DVC_SITE_CACHE_DIR": str(root / "dvc-site"), "DVC_GLOBAL_CONFIG_DIR": str(root / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(root / "dvc-system"), "DVC_NO_ANALYTICS": "1",
        "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@dataclass
class Sandbox:
    root: Path
    work: Path  # DEPTH folders below root: projects live here
    patch: pytest.MonkeyPatch


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A temporary root that HOME, TMPDIR, DVC's and git's state point into (MLflow's server comes later)."""
    root = tmp_path_factory.mktemp("ap2_1").resolve()
    work = root.joinpath(*[f"w{i}" for i in range(DEPTH)])
    work.mkdir(parents=True)
    patch = pytest.MonkeyPatch()
    for name, value in sandbox_env(root).items():
        patch.setenv(name, value)
    patch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR for the learner's reproduce()
    patch.setattr(sys, "dont_write_bytecode", True)
    try:
        yield Sandbox(root, work, patch)
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def tracking(sandbox, mlflow_server) -> str:
    """The MLflow server and an experiment, named to the pipeline through the environment.

    The experiment exists before the pipeline runs, as a team's usually does: the pipeline
    logs to it, whether or not it is the first run there."""
    name = f"ap2_1-{uuid.uuid4().hex[:8]}"
    mlflow_server.client().create_experiment(name)
    sandbox.patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    sandbox.patch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    return name


# -- running git and dvc --------------------------------------------------------------------


def dvc_cmd() -> list[str]:
    found = shutil.which("dvc")
    return [found] if found else [sys.executable, "-m", "dvc"]


def sh(cwd: Path, *command: str, learner: bool = False) -> str:
    """Run a command; a stub's NotImplementedError reads "not started", other failures say which command.

    ``learner``: the command runs the learner's code (`dvc repro` runs stages.py): under
    sealed grading it runs as the sandbox user, writing only ``cwd`` (workbook.sealed.learner_program).
    """
    __tracebackhide__ = True
    if learner:
        proc = run_learner_program(list(command), cwd=cwd, capture_output=True, text=True)
    else:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if "NotImplementedError" in output:
            raise NotImplementedError("stages.py still raises NotImplementedError when dvc runs a stage")
        tail = "\n".join(output.strip().splitlines()[-12:])
        shown = " ".join([Path(command[0]).name, *command[1:]])
        raise AssertionError(f"`{shown}` should succeed in the graders' project; it failed:\n{tail}")
    return proc.stdout + proc.stderr


def git(cwd: Path, *args: str) -> str:
    return sh(cwd, "git", *args)


def dvc_repo(path: Path):
    """DVC's own Repo object (in-process: no CLI start-up), with a readable failure."""
    __tracebackhide__ = True
    from dvc.repo import Repo

    try:
        return Repo(str(path))
    except Exception as exc:  # noqa: BLE001 - any DVC error means the files are not valid
        raise AssertionError(f"DVC should read dvc.yaml and params.yaml; it says: {exc}") from None


def pipeline_stages(path: Path) -> dict:
    """{name: stage} of the stages dvc.yaml defines, read by DVC's own loader."""
    __tracebackhide__ = True
    with dvc_repo(path) as repo:
        try:
            stages = list(repo.index.stages)
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"DVC should load the stages of dvc.yaml; it says: {exc}") from None
    return {stage.name: stage for stage in stages if getattr(stage, "name", None) in STAGES}


def stale_stages(path: Path) -> dict[str, list]:
    """{stage: changed deps} for the pipeline stages `dvc status` finds with changed deps."""
    __tracebackhide__ = True
    with dvc_repo(path) as repo:
        try:
            status = repo.status()
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"`dvc status` should run on the pipeline; it says: {exc}") from None
    stale = {}
    for address, changes in status.items():
        name = address.rsplit(":", 1)[-1]
        for change in changes:
            if isinstance(change, dict) and "changed deps" in change:
                stale[name] = sorted(change["changed deps"])
            elif change == "always changed":
                stale[name] = ["always changed"]
    return stale


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


# -- the shared project and its one run -------------------------------------------------------


def write_params(path: Path, values: dict) -> None:
    """The learner's params.yaml with the graders' values for the documented keys (extra keys kept)."""
    __tracebackhide__ = True
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AssertionError(f"params.yaml should be valid YAML; {exc}") from None
    assert isinstance(params, dict), f"params.yaml should be a mapping of sections; got {params!r}"
    for section, keys in values.items():
        current = params.get(section)
        params[section] = {**(current if isinstance(current, dict) else {}), **keys}
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def build_origin(sandbox: Sandbox, source: Path, name: str = "origin") -> Path:
    """A git + DVC project: the learner's files, the graders' params, raw data added and pushed."""
    repo = sandbox.work / name
    (repo / "data").mkdir(parents=True)
    for file in FILES:
        shutil.copy(source / file, repo / file)
    write_params(repo / "params.yaml", PARAMS)
    raw_data().to_csv(repo / "data" / "raw.csv", index=False)
    git(repo, "init", "-q")
    from dvc.repo import Repo

    with Repo.init(str(repo)) as dvc:
        with dvc.config.edit() as conf:
            conf["remote"]["storage"] = {"url": str(sandbox.root / "remote")}
            conf["core"]["remote"] = "storage"
        try:
            dvc.add(str(repo / "data" / "raw.csv"))
            dvc.push()
        except Exception as exc:  # noqa: BLE001 - a broken dvc.yaml surfaces here first
            raise AssertionError(f"DVC should version data/raw.csv next to your dvc.yaml; it says: {exc}") from None
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pipeline and data")
    return repo


@dataclass
class PipelineRun:
    origin: Path
    clone: Path
    commit: str
    output: str = ""
    error: BaseException | None = None
    runs: list = field(default_factory=list)  # MLflow runs of the experiment, right after the run
    experiment: str = ""
    data_md5: str = ""

    def require(self, *files: str) -> None:
        """Fail (or read "not started") the way the shared `dvc repro` failed, unless the
        check needs only ``files`` and the stages before the failure wrote them."""
        __tracebackhide__ = True
        if self.error is not None and not (files and all((self.clone / f).is_file() for f in files)):
            raise self.error


def run_in_fresh_clone(sandbox: Sandbox, origin: Path, name: str = "clone") -> PipelineRun:
    """git clone, `dvc pull` of the raw data, `dvc repro`: what a colleague does on a new machine."""
    clone = sandbox.work / name
    git(sandbox.work, "clone", "-q", str(origin), str(clone))
    commit = git(clone, "rev-parse", "HEAD").strip()
    run = PipelineRun(origin, clone, commit, experiment=os.environ.get("MLFLOW_EXPERIMENT_NAME", ""),
                      data_md5=hashlib.md5((origin / "data" / "raw.csv").read_bytes()).hexdigest())
    with dvc_repo(clone) as dvc:
        try:
            dvc.pull(targets=[str(clone / "data" / "raw.csv.dvc")])
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"`dvc pull data/raw.csv.dvc` should work in a fresh clone; DVC says: {exc}") from None
    try:
        run.output = sh(clone, *dvc_cmd(), "repro", learner=True)
    except (AssertionError, NotImplementedError) as exc:
        run.error = exc
    return run


@pytest.fixture(scope="module")
def origin(sandbox, target_dir, exercise_id) -> Path:
    source = target_dir / exercise_id
    require_started(exercise_id, source, FILES)
    return build_origin(sandbox, source)


@pytest.fixture(scope="module")
def pipeline(sandbox, origin, tracking, mlflow_server) -> PipelineRun:
    """The one shared run; its MLflow runs are read right away, before any check adds more."""
    run = run_in_fresh_clone(sandbox, origin)
    client = mlflow_server.client()
    found = client.get_experiment_by_name(run.experiment)
    run.runs = client.search_runs([found.experiment_id]) if found else []
    return run


@pytest.fixture(scope="module")
def expected() -> Reference:
    return reference(raw_data(), PARAMS)


@pytest.fixture
def scratch(sandbox, pipeline) -> Path:
    """A copy of the project right after the shared run, to change and ask `dvc status` about."""
    pipeline.require()
    copy = sandbox.work / f"scratch-{uuid.uuid4().hex[:6]}"
    shutil.copytree(pipeline.clone, copy, symlinks=True)
    return copy


def read_csv(path: Path, what: str) -> pd.DataFrame:
    __tracebackhide__ = True
    assert path.is_file(), f"{what} should write {path.name}; it is not there after `dvc repro`"
    return pd.read_csv(path)


def rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return sorted(tuple(np.round(r, 9)) for r in frame[columns].to_numpy(dtype=float))


# -- dvc.yaml, read by DVC ---------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.covers("four-stages")
def test_dvc_yaml_defines_the_four_stages(origin):
    """DVC reads prepare, featurize, train and evaluate, each running `python stages.py <stage>`."""
    stages = pipeline_stages(origin)
    missing = [s for s in STAGES if s not in stages]
    assert not missing, f"dvc.yaml should define the stages {list(STAGES)}; DVC finds no {missing}"
    for name, stage in stages.items():
        command = " ".join(stage.cmd) if isinstance(stage.cmd, list) else str(stage.cmd or "")
        assert re.search(rf"stages\.py\s+{name}\b", command), (
            f"stage {name} should run `python stages.py {name}`; its cmd is {command!r}"
        )


@pytest.mark.points(2)
@pytest.mark.covers("stage-outs")
def test_each_stage_declares_what_it_writes(origin):
    """Every file a stage writes is one of its outs (or inside an out folder), metrics and plots included."""
    writes = {
        "prepare": ["data/prepared/train.csv", "data/prepared/test.csv"],
        "featurize": ["data/features/train.csv", "data/features/test.csv"],
        "train": ["model.joblib"],
        "evaluate": ["metrics.json", "plots/confusion.csv"],
    }
    stages = pipeline_stages(origin)
    for name, files in writes.items():
        assert name in stages, f"dvc.yaml should define the stage {name}"
        outs = [Path(str(out.def_path)).as_posix().rstrip("/") for out in stages[name].outs]
        for file in files:
            covered = any(file == out or file.startswith(out + "/") for out in outs)
            assert covered, f"stage {name} writes {file}, so it should declare it in outs; its outs are {outs}"


# -- the graders' own sandbox (not graded: a property of the graders) ---------------------------
# It runs before the shared run, while the MLflow server starts: it needs no server.


HOSTILE_DVC_YAML = """\
stages:
  prepare:
    cmd: python stages.py prepare
    deps: [data/raw.csv, stages.py]
    outs: [out.txt]
"""
HOSTILE_STAGES = '''\
import os, subprocess, sys
from pathlib import Path

def prepare():
    # relative paths climbing out of the project, as far as a careless learner might
    for up in range(1, 5):
        Path("/".join([".."] * up), f"escape-{up}.txt").write_text("out")
    Path("out.txt").write_text(f"done by {os.getuid()}")

def reproduce(run_id, repo="."):
    # a relative remote, added to a clone in the temporary folder, then pushed
    import shutil, tempfile
    clone = Path(tempfile.mkdtemp()) / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    dvc = [shutil.which("dvc") or sys.executable] + ([] if shutil.which("dvc") else ["-m", "dvc"])
    cache = Path(repo).resolve() / ".dvc" / "cache"
    (clone / ".dvc" / "config.local").write_text(
        "[cache]\\n    dir = " + str(cache) + "\\n['remote \\"rel\\"']\\n    url = ../../../rel-remote\\n")
    subprocess.run([*dvc, "push", "-q", "-r", "rel", "data/raw.csv.dvc"], cwd=clone, check=True)
    return {}

if __name__ == "__main__":
    {"prepare": prepare}[sys.argv[1]]()
'''


def test_grading_stays_in_its_temporary_folder(sandbox, tmp_path, exercise_id):
    """Hostile learner files (climbing `..` outputs, a relative remote) write only inside the graders' root."""
    hostile = tmp_path / exercise_id
    hostile.mkdir()
    (hostile / "dvc.yaml").write_text(HOSTILE_DVC_YAML)
    (hostile / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (hostile / "stages.py").write_text(HOSTILE_STAGES)
    # Where a climbing relative path or the user's own state would land without the sandbox.
    outside = {sandbox.root.parent, sandbox.root.parent.parent, Path.cwd(), *OUTSIDE}
    origin = build_origin(sandbox, hostile, name="hostile-origin")
    run = run_in_fresh_clone(sandbox, origin, name="hostile-clone")
    assert run.error is None, f"the hostile pipeline should run: {run.error}"
    # Under sealed grading as root, `dvc repro` runs the stages as the sandbox user, in a
    # working copy made writable for it (DVC's cache and state in the clone included).
    user = sandbox_uid()
    if user is not None:
        done = (run.clone / "out.txt").read_text()
        assert done == f"done by {user}", f"`dvc repro` should run the stages as uid {user}; out.txt says {done!r}"
    import importlib.util

    spec = importlib.util.spec_from_file_location("hostile_stages", hostile / "stages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.reproduce("any", repo=origin)
    escaped = [p for p in sandbox.root.rglob("escape-*.txt")]
    assert len(escaped) == 4, f"the hostile stage's files should all land under the graders' root; found {escaped}"
    assert list(sandbox.root.rglob("rel-remote")), "the relative remote should land under the graders' root"
    assert any((sandbox.root / "dvc-site").iterdir()), "DVC's site cache should be under the graders' root"
    for folder in outside:
        strays = sorted(p.name for p in folder.glob("escape-*.txt")) + sorted(p.name for p in folder.glob("rel-remote"))
        assert not strays, f"grading should write nothing outside its temporary folder; found {strays} in {folder}"


# -- the shared run ------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("fresh-clone")
def test_repro_runs_the_whole_pipeline_in_a_fresh_clone(pipeline):
    """A new clone, `dvc pull` of the versioned data, then `dvc repro` runs all four stages."""
    pipeline.require()
    ran = stages_run(pipeline.output)
    assert set(STAGES) <= ran, f"`dvc repro` in a fresh clone should run all four stages; it ran {sorted(ran)}"
    assert (pipeline.clone / "metrics.json").is_file(), "`dvc repro` should leave metrics.json in the clone"


@pytest.mark.points(3)
@pytest.mark.covers("prepare-outputs", "split", "deterministic")
def test_prepare_writes_the_documented_split(pipeline, expected):
    """data/prepared holds exactly the rows of the seeded, stratified train_test_split with the graders' params."""
    pipeline.require("data/prepared/train.csv", "data/prepared/test.csv")
    columns = list(expected.test.columns)
    for name, want in (("test", expected.test), ("train", expected.train)):
        got = read_csv(pipeline.clone / "data" / "prepared" / f"{name}.csv", "the prepare stage")
        missing = [c for c in columns if c not in got.columns]
        assert not missing, f"data/prepared/{name}.csv should keep the columns of raw.csv; it lacks {missing}"
        extra = [c for c in got.columns if c not in columns]
        assert not extra, (
            f"data/prepared/{name}.csv should have the same columns as raw.csv; it also has {extra} "
            "(a DataFrame index written by to_csv without index=False?)"
        )
        got_rows, want_rows = rows(got, columns), rows(want, columns)
        assert got_rows == want_rows, (
            f"data/prepared/{name}.csv should hold the {len(want_rows)} rows of train_test_split(raw, "
            f"test_size={PARAMS['prepare']['test_size']}, random_state={PARAMS['prepare']['seed']}, "
            f"stratify=raw['label']) (the graders' params.yaml values); got {len(got_rows)} rows, "
            f"{len(set(got_rows) - set(want_rows))} of them not in that split"
        )


@pytest.mark.points(1)
@pytest.mark.covers("features-outputs", "poly-features")
def test_featurize_writes_polynomial_features(pipeline, expected):
    """data/features/{train,test}.csv: one row per split row, the degree-3 features without bias, and the label."""
    pipeline.require("data/features/train.csv", "data/features/test.csv")
    for name, split in (("train", expected.train), ("test", expected.test)):
        got = read_csv(pipeline.clone / "data" / "features" / f"{name}.csv", "the featurize stage")
        assert "label" in got.columns, f"data/features/{name}.csv should keep the label column; got {list(got.columns)}"
        assert len(got) == len(split), f"data/features/{name}.csv should have {len(split)} rows; got {len(got)}"
        assert sorted(got["label"]) == sorted(split["label"]), (
            f"data/features/{name}.csv should carry the labels of data/prepared/{name}.csv"
        )
        width = got.shape[1] - 1
        assert width == expected.n_features, (
            f"data/features/{name}.csv should have {expected.n_features} feature columns "
            f"(PolynomialFeatures(degree={PARAMS['featurize']['poly_degree']}, include_bias=False) of 6 "
            f"columns); got {width}"
        )


@pytest.mark.points(4)
@pytest.mark.covers("metrics-test-split", "f1-macro", "scaler-train", "train-model", "params-read", "deterministic")
def test_metrics_are_those_of_the_test_split(pipeline, expected):
    """metrics.json equals the documented pipeline's accuracy and macro F1 on the test split, recomputed here."""
    pipeline.require("metrics.json")
    path = pipeline.clone / "metrics.json"
    assert path.is_file(), "the evaluate stage should write metrics.json"
    try:
        got = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AssertionError(f"metrics.json should be JSON; {exc}") from None
    assert isinstance(got, dict) and {"accuracy", "f1"} <= set(got), (
        f"metrics.json should hold accuracy and f1; got {got}"
    )
    on_train = all(np.isclose(float(got[k]), v, atol=1e-6) for k, v in expected.train_metrics.items())
    assert not on_train, (
        f"metrics.json should be computed on the test split; {got} are the metrics on the training split"
    )
    n_test = len(expected.test)
    assert_close(got["accuracy"], expected.metrics["accuracy"], abs_=0.5 / n_test,
                 what="accuracy in metrics.json (test split, the graders' params)")
    assert_close(got["f1"], expected.metrics["f1"], abs_=0.005,
                 what="f1 in metrics.json (macro F1 on the test split, the graders' params)")


@pytest.mark.points(2)
@pytest.mark.covers("confusion-rows")
def test_confusion_plot_has_one_row_per_test_row(pipeline, expected):
    """plots/confusion.csv: actual and predicted for every test row; its counts match the reference model's."""
    pipeline.require("plots/confusion.csv")
    got = read_csv(pipeline.clone / "plots" / "confusion.csv", "the evaluate stage")
    assert {"actual", "predicted"} <= set(got.columns), (
        f"plots/confusion.csv should have the columns actual and predicted; got {list(got.columns)}"
    )
    index = [c for c in got.columns if str(c).startswith("Unnamed")]
    assert not index, (
        f"plots/confusion.csv should have the columns actual and predicted; it also has {index} "
        "(a DataFrame index written by to_csv without index=False?)"
    )
    assert len(got) == len(expected.test), (
        f"plots/confusion.csv should have one row per test row ({len(expected.test)}); got {len(got)}"
    )
    counts = confusion_matrix(got["actual"], got["predicted"], labels=[0, 1])
    assert np.abs(counts - expected.confusion).sum() <= 1, (
        f"plots/confusion.csv should give the confusion counts {expected.confusion.tolist()} "
        f"(rows: actual 0/1, columns: predicted 0/1); got {counts.tolist()}"
    )


@pytest.mark.points(2)
@pytest.mark.covers("metrics-declared", "plot-declared")
def test_dvc_shows_the_metrics_and_the_plot(pipeline):
    """`dvc metrics show` finds accuracy and f1 in metrics.json; `dvc plots` knows plots/confusion.csv."""
    pipeline.require()
    with dvc_repo(pipeline.clone) as repo:
        shown = repo.metrics.show()
        plots = repo.plots.show()
    metrics = ((shown.get("workspace") or shown.get("") or {}).get("data") or {})
    found = {Path(k).as_posix(): (v or {}).get("data") for k, v in metrics.items()}
    assert "metrics.json" in found, f"dvc.yaml should declare metrics.json under metrics; DVC shows {list(found)}"
    assert {"accuracy", "f1"} <= set(found["metrics.json"] or {}), (
        f"`dvc metrics show` should find accuracy and f1; got {found['metrics.json']}"
    )
    text = json.dumps(plots.get("workspace") or plots.get("") or {}, default=str)
    assert "plots/confusion.csv" in text, "dvc.yaml should declare plots/confusion.csv under plots"


# -- params and deps: asked of DVC with `dvc status` -----------------------------------------


def with_changed_file(path: Path, change, ask):
    """Apply change(path), call ask(), restore the file."""
    original = path.read_bytes()
    try:
        change(path)
        return ask()
    finally:
        path.write_bytes(original)


@pytest.mark.points(3)
@pytest.mark.covers("stage-params", "param-rerun")
def test_changing_a_param_reruns_exactly_its_stage_and_downstream(scratch):
    """Each documented param makes its own stage stale; what re-runs is that stage and those after it."""
    before = stale_stages(scratch)
    assert not before, f"right after `dvc repro`, `dvc status` should be clean; stale: {before}"
    params_file = scratch / "params.yaml"
    problems = []
    for key, reader in PARAM_READER.items():
        section, name = key.split(".")

        def bump(path, section=section, name=name):
            params = yaml.safe_load(path.read_text())
            value = params[section][name]
            params[section][name] = value + 1 if isinstance(value, int) else value * 0.5
            path.write_text(yaml.safe_dump(params))

        stale = with_changed_file(params_file, bump, lambda: stale_stages(scratch))
        reruns = set(stale) | {d for s in stale for d in DOWNSTREAM.get(s, ())}
        want = {reader} | DOWNSTREAM[reader]
        if reruns != want:
            problems.append(f"changing {key} should re-run {sorted(want)}; it makes `dvc repro` re-run "
                            f"{sorted(reruns)} (stale: {sorted(stale)})")
    assert not problems, "each stage should declare exactly the params it reads:\n" + "\n".join(problems)


@pytest.mark.points(2)
@pytest.mark.covers("unrelated-param")
def test_a_param_no_stage_reads_reruns_nothing(scratch):
    """A new params.yaml section that no stage reads leaves every stage up to date."""

    def add_section(path):
        params = yaml.safe_load(path.read_text())
        params["notes"] = {"owner": "grader", "reviewed": True}
        path.write_text(yaml.safe_dump(params))

    stale = with_changed_file(scratch / "params.yaml", add_section, lambda: stale_stages(scratch))
    assert not stale, (
        f"a param no stage reads (notes.owner) should re-run nothing; `dvc status` finds stale {stale}. "
        "Declare params key by key (or by section), not the whole params.yaml file."
    )


@pytest.mark.points(3)
@pytest.mark.covers("stage-deps")
def test_each_stage_depends_on_what_it_reads(scratch):
    """Changing a file a stage reads (its input data, the previous stage's output, stages.py) makes it stale."""
    readers = {
        "data/raw.csv": {"prepare"},
        "data/prepared/train.csv": {"featurize"},
        "data/prepared/test.csv": {"featurize"},
        "data/features/train.csv": {"train"},
        "data/features/test.csv": {"evaluate"},
        "model.joblib": {"evaluate"},
        "stages.py": set(STAGES),
    }

    def touch(path):
        path.write_bytes(path.read_bytes() + (b"\n# changed\n" if path.suffix == ".py" else
                                              path.read_bytes().splitlines(keepends=True)[-1]
                                              if path.suffix == ".csv" else b"\0"))

    problems = []
    for file, want in readers.items():
        path = scratch / file
        if not path.is_file():
            problems.append(f"{file} should exist after `dvc repro`")
            continue
        stale = with_changed_file(path, touch, lambda: stale_stages(scratch))
        missing = sorted(want - set(stale))
        if missing:
            problems.append(f"{file} changed, so {missing} should be stale (declare it in deps); "
                            f"`dvc status` finds stale {sorted(stale)}")
    assert not problems, "each stage should list as deps every file it reads:\n" + "\n".join(problems)


# -- MLflow ------------------------------------------------------------------------------------


def the_run(pipeline: PipelineRun):
    __tracebackhide__ = True
    pipeline.require()
    assert pipeline.runs, (
        f"the pipeline should log a run to the MLflow experiment named by $MLFLOW_EXPERIMENT_NAME "
        f"({pipeline.experiment!r}, which existed before the run: log to it, do not create it again); "
        "it has none"
    )
    assert len(pipeline.runs) == 1, f"one `dvc repro` should log one MLflow run; found {len(pipeline.runs)}"
    return pipeline.runs[0]


@pytest.mark.points(2)
@pytest.mark.covers("one-run", "logged-params", "logged-metrics")
def test_the_run_is_logged_with_params_and_metrics(pipeline):
    """One MLflow run per `dvc repro`, with every param flattened ("train.C") and the metrics of metrics.json."""
    run = the_run(pipeline)
    logged = run.data.params
    for section, keys in PARAMS.items():
        for key, value in keys.items():
            name = f"{section}.{key}"
            assert name in logged, f"the run should log the param {name!r} (flattened with dots); it logged {logged}"
            assert_close(logged[name], float(value), what=f"logged param {name!r}")
    recorded = json.loads((pipeline.clone / "metrics.json").read_text())
    for name in ("accuracy", "f1"):
        assert name in run.data.metrics, f"the run should log the metric {name!r}; it logged {run.data.metrics}"
        assert_close(run.data.metrics[name], float(recorded[name]), what=f"logged metric {name!r} (metrics.json)")


@pytest.mark.points(2)
@pytest.mark.covers("tag-commit", "tag-data-hash")
def test_the_run_is_tagged_with_commit_and_data_hash(pipeline):
    """Tags git_commit (the clone's HEAD) and data_hash (the md5 of raw.csv that raw.csv.dvc records)."""
    run = the_run(pipeline)
    tags = run.data.tags
    assert tags.get("git_commit") == pipeline.commit, (
        f"tag git_commit should be the commit checked out ({pipeline.commit}); got {tags.get('git_commit')!r}"
    )
    md5 = hashlib.md5((pipeline.clone / "data" / "raw.csv").read_bytes()).hexdigest()
    assert tags.get("data_hash") == md5, (
        f"tag data_hash should be the md5 DVC records for data/raw.csv ({md5}); got {tags.get('data_hash')!r}"
    )


# -- reproduce(run_id) ---------------------------------------------------------------------------


@dataclass
class Later:
    """The project after it moved on: new params and new data, committed."""

    repo: Path
    commit: str
    data_md5: str
    files: dict[str, bytes]
    metrics: dict[str, float]  # the metrics.json committed there: what the project's pipeline gives now
    status: str  # `git status --porcelain` (untracked files too) right after the commit


def git_status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")


@pytest.fixture(scope="module")
def later(sandbox, pipeline) -> Later:
    """A copy of the clone where the project moved on: other params, a new data version, a new commit."""
    pipeline.require()
    repo = sandbox.work / "later"
    shutil.copytree(pipeline.clone, repo, symlinks=True)
    write_params(repo / "params.yaml", LATER_PARAMS)
    raw = raw_data(random_state=5)
    raw.to_csv(repo / "data" / "raw.csv", index=False)
    # What the project's own `dvc repro` gave since: a reproduce that reads this repository's
    # metrics.json, instead of the clone's, returns these.
    now = reference(raw, LATER_PARAMS).metrics
    (repo / "metrics.json").write_text(json.dumps(now, indent=2) + "\n")
    with dvc_repo(repo) as dvc:
        dvc.add(str(repo / "data" / "raw.csv"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "new data, weaker model")
    commit = git(repo, "rev-parse", "HEAD").strip()
    files = {name: (repo / name).read_bytes() for name in ("params.yaml", "data/raw.csv", "data/raw.csv.dvc")}
    return Later(repo, commit, hashlib.md5(files["data/raw.csv"]).hexdigest(), files, now, git_status(repo))


def assert_untouched(later: Later) -> None:
    __tracebackhide__ = True
    for name, content in later.files.items():
        assert (later.repo / name).read_bytes() == content, (
            f"reproduce should work in a new clone and leave the project's {name} as it was; it changed"
        )
    head = git(later.repo, "rev-parse", "HEAD").strip()
    assert head == later.commit, f"reproduce should leave the project's HEAD at {later.commit}; it is now {head}"
    status = git_status(later.repo)
    assert status == later.status, (
        "reproduce should work in a new clone outside the project and leave no files in it; "
        f"`git status` there now says:\n{status}"
    )


def past_run(client, pipeline: PipelineRun, data_md5: str, recorded: dict[str, float]) -> str:
    """A finished MLflow run as the pipeline logs one: flattened params, metrics, the two tags."""
    found = client.get_experiment_by_name(pipeline.experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(pipeline.experiment)
    run = client.create_run(experiment_id, tags={"git_commit": pipeline.commit, "data_hash": data_md5})
    for section, keys in PARAMS.items():
        for key, value in keys.items():
            client.log_param(run.info.run_id, f"{section}.{key}", value)
    for name, value in recorded.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def pipeline_metrics(pipeline: PipelineRun, expected: Reference) -> dict[str, float]:
    """What the learner's pipeline computed for the shared commit and data (the reference if it wrote none)."""
    try:
        got = json.loads((pipeline.clone / "metrics.json").read_text())
        return {name: float(got[name]) for name in ("accuracy", "f1")}
    except (OSError, ValueError, KeyError, TypeError):
        return dict(expected.metrics)


@pytest.mark.points(4)
@pytest.mark.covers("reproduce-repo", "reproduce-clone", "reproduce-data", "reproduce-metrics", "deterministic")
def test_reproduce_recreates_a_past_run(pipeline, later, expected, load_module, mlflow_server):
    """reproduce(run_id, repo) re-runs that run's commit and data after params and data moved on."""
    pipeline.require()
    want = pipeline_metrics(pipeline, expected)
    # Recorded values the pipeline cannot give: reproduce returns what it computes, not these.
    recorded = {"accuracy": 0.99, "f1": 0.99}
    run_id = past_run(mlflow_server.client(), pipeline, pipeline.data_md5, recorded)
    now = later.metrics
    assert not np.isclose(now["accuracy"], expected.metrics["accuracy"]), "the graders' change should matter"
    stages = load_module("stages")
    got = stages.reproduce(run_id, repo=later.repo)
    assert isinstance(got, dict), f"reproduce should return the metrics as a dict; got {got!r}"
    for name in ("accuracy", "f1"):
        assert name in got, f"reproduce should return accuracy and f1; got {got}"
    if all(np.isclose(float(got[k]), v) for k, v in recorded.items()):
        raise AssertionError(
            f"reproduce should return the metrics.json the pipeline writes in the clone ({want}); "
            f"it returned the values recorded on the run ({recorded})"
        )
    if all(np.isclose(float(got[k]), v) for k, v in now.items()):
        raise AssertionError(
            f"reproduce should return the metrics.json the pipeline writes in the clone ({want}); "
            f"it returned the metrics.json of the repository it was given ({now}), the project's today"
        )
    for name in ("accuracy", "f1"):
        assert_close(got[name], want[name], abs_=1e-6,
                     what=f"{name} of reproduce(run_id) (what `dvc repro` gave at commit "
                          f"{pipeline.commit[:8]} with its data; the project has since moved on)")
    assert_untouched(later)


@pytest.mark.points(1)
@pytest.mark.covers("reproduce-unknown-run")
def test_reproduce_rejects_an_unknown_run(pipeline, later, load_module):
    """reproduce of a run id the server does not know raises, and leaves the project alone."""
    pipeline.require()
    stages = load_module("stages")
    unknown = uuid.uuid4().hex
    with learner_error(what=f"reproduce({unknown[:8]}…), a run id no run has"):
        stages.reproduce(unknown, repo=later.repo)
    assert_untouched(later)


@pytest.mark.points(2)
@pytest.mark.covers("reproduce-hash-mismatch")
def test_reproduce_never_returns_metrics_of_other_data(pipeline, later, load_module, mlflow_server):
    """A run whose data_hash is not what its commit records (logged from a dirty workspace): raise, or
    use that data; a data version no cache holds can only be refused."""
    pipeline.require()
    stages = load_module("stages")
    nowhere = hashlib.md5(uuid.uuid4().bytes).hexdigest()  # the md5 of no file anyone has
    run_id = past_run(mlflow_server.client(), pipeline, nowhere, {"accuracy": 0.5, "f1": 0.5})
    with learner_error(what=f"reproduce of a run tagged with data {nowhere[:8]}…, a version no cache "
                            "holds (it cannot be restored, and other data must not be used instead),"):
        stages.reproduce(run_id, repo=later.repo)
    assert_untouched(later)
    run_id = past_run(mlflow_server.client(), pipeline, later.data_md5, {"accuracy": 0.5, "f1": 0.5})
    try:
        got = stages.reproduce(run_id, repo=later.repo)
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001 - refusing is one of the two right answers
        assert_untouched(later)
        return
    # The other right answer: the data version the tag names (in the cache), with the commit's params.
    want = reference(raw_data(random_state=5), PARAMS).metrics
    got = got if isinstance(got, dict) else {}
    for name in ("accuracy", "f1"):
        assert name in got and np.isclose(float(got[name]), want[name], atol=1e-6), (
            f"reproduce of a run tagged with commit {pipeline.commit[:8]} and data {later.data_md5[:8]} "
            f"(a version that commit does not record) should raise, or restore that data version and "
            f"return {want}; it returned {got}"
        )
    assert_untouched(later)

"""Fixtures of the CE4.1 graders: the learner's module, and the servers (see ce4_1_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ce4_1_support import (
    HARNESS_MODULE,
    HARNESS_SOURCE,
    MODEL_NAME,
    MODEL_VERSION,
    PROMETHEUS_JOB,
    Model,
    Server,
    spawn,
    train_model,
)

from workbook.checks import require_started
from workbook.services.base import make_tempdir, remove_tree

EXERCISE = Path(__file__).parent.name


@pytest.fixture(scope="module")
def metrics(load_module):
    """The learner's metrics.py (in a child process under --sealed)."""
    return load_module("metrics")


class Servers:
    """The three servers, spawned together; each check waits only for the one it uses."""

    def __init__(self, folder: Path, model: Model, servers: dict[str, Server], multiproc_dir: Path):
        self.folder = folder
        self.model = model
        self.servers = servers
        self.multiproc_dir = multiproc_dir
        self.scraped = False

    def __getitem__(self, role: str) -> Server:
        return self.servers[role].up()


@pytest.fixture(scope="session")
def servers(target_dir, prometheus):
    """At the first check that needs a server: all three spawned at once, and Prometheus told
    to scrape the single-worker service every second (it takes up a new target within ~5 s)."""
    learner = target_dir / EXERCISE
    require_started(EXERCISE, learner, ["metrics.py"])
    folder = make_tempdir("ce4_1-grader")
    spawned: dict[str, Server] = {}
    try:
        model = train_model(folder)
        (folder / f"{HARNESS_MODULE}.py").write_text(HARNESS_SOURCE, encoding="utf-8")
        multiproc = folder / "multiproc"
        multiproc.mkdir()
        env = {"MODEL_PATH": str(model.path), "MODEL_NAME": MODEL_NAME, "MODEL_VERSION": MODEL_VERSION}
        spawned["harness"] = spawn("harness", f"{HARNESS_MODULE}:app", folder, learner, {},
                                   what="the graders' test app")
        spawned["serving"] = spawn("serving", "serving:app", learner, folder, env,
                                   what="serving.py, one worker")
        spawned["workers"] = spawn("workers", "serving:app", learner, folder,
                                   {**env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}, workers=2,
                                   what="serving.py, two workers, PROMETHEUS_MULTIPROC_DIR set",
                                   probe="/openapi.json")  # /health requests are what the check counts
        serving = spawned["serving"]
        prometheus.scrape(PROMETHEUS_JOB, serving.url.removeprefix("http://"))
        yield Servers(folder, model, spawned, multiproc)
    finally:
        for server in spawned.values():
            server.stop()
        remove_tree(folder)

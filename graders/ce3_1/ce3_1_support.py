"""Support for the CE3.1 graders: the servers they talk to, the learner's app under real uvicorn processes.

One module-scoped fleet, each server with its own settings, so the checks that only
read share them and grading stays fast. The main server starts first; the others start
together when a check first needs one:

* ``main``: the fully configured service (keys from the environment and a file, a small
  rate limit and body limit) serving a classifier that raises on one input;
* ``plain_1`` / ``plain_2``: every setting at its default but RATE_LIMIT, two processes sharing one Redis;
* ``missing``: a model file that does not exist;
* ``no_redis``: a Redis URL nobody answers at;
* ``redis_window``: REDIS_URL with a 2 s window and a limit of 2 (Retry-After in the right unit);
* ``spy``: the app served through a wrapper module of the graders' (``SPY_MODULE``) that
  records what ``hmac.compare_digest`` / ``secrets.compare_digest`` compare in a file;
* ``empty``: every setting present but empty; ``no_keys``: no API key configured;
  ``defaults``: API_KEYS only (the default rate limit).

The learner's app always runs as its own uvicorn process (``learner=True``: under sealed
grading as the sandbox user), never in the grader's process.

Expectations never come from the learner's objects: the graders train the models here
with scikit-learn and call their ``predict`` / ``predict_proba`` themselves.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import secrets
import signal
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from workbook.services.asgi import spawn_uvicorn
from workbook.services.base import (
    LocalProcess,
    Running,
    ServiceStartError,
    tail,
    wait_until,
)

#: Every setting the app reads; a server gets only those its role sets (the rest are unset).
SETTINGS = ("MODEL_PATH", "MODEL_NAME", "MODEL_VERSION", "API_KEYS", "API_KEYS_FILE", "RATE_LIMIT",
            "RATE_LIMIT_WINDOW", "REDIS_URL", "MAX_BODY_BYTES", "MAX_BATCH_SIZE")

# The main server's settings (none of them a default, so defaults can't pass by chance).
MAIN_RATE_LIMIT = 3
MAIN_WINDOW = 2.0
MAIN_MAX_BODY = 4096
MAIN_MAX_BATCH = 20
MAIN_NAME = "churn-classifier"
MAIN_VERSION = "2024.06.1"
MAIN_LABELS = np.array([-1, 3, 7])  # class labels that are not 0..k-1, so an index is not a label
N_FEATURES = 5

# The defaults the contract states.
DEFAULT_RATE_LIMIT = 60
DEFAULT_WINDOW = 60.0
# The two Redis-sharing servers: a small limit in the default window, so that a burst is
# always short enough (< window/limit = 6 s) to pin the shared count exactly.
SHARED_RATE_LIMIT = 10
DEFAULT_MAX_BODY = 1_048_576
DEFAULT_MAX_BATCH = 100
PLAIN_FEATURES = 7
PLAIN_LABELS = np.array([2, 4, 6])
# The redis_window server: a small limit and window, so Retry-After is waited out in a check.
REDIS_WINDOW_LIMIT = 2
REDIS_WINDOW = 2.0

#: The first feature value on which the main model raises (a stand-in for any bug).
BOOM = 31337.0
SECRET = "grader-secret-8c1f"

# The servers get scikit-learn models' parameters in a shell that needs numpy only: loading
# it does not import scikit-learn (~1 s of CPU a process), so the servers start faster.
LIGHT_MODULE = "ce3_1_grader_light"
LIGHT_SOURCE = textwrap.dedent('''
    """A linear classifier with scikit-learn's interface that needs numpy only (written by the graders)."""
    import numpy as np


    class LinearClassifier:
        """Softmax over X @ coef_.T + intercept_, with the parameters of a fitted LogisticRegression."""

        def __init__(self, coef, intercept, classes):
            self.coef_ = np.asarray(coef, dtype=float)
            self.intercept_ = np.asarray(intercept, dtype=float)
            self.classes_ = np.asarray(classes)
            self.n_features_in_ = self.coef_.shape[1]

        def predict_proba(self, X):
            z = np.asarray(X, dtype=float) @ self.coef_.T + self.intercept_
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)

        def predict(self, X):
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


    class FailingLinearClassifier(LinearClassifier):
        """The same, but it raises when the first feature is exactly BOOM: a stand-in for any bug."""

        def predict_proba(self, X):
            if np.any(np.asarray(X, dtype=float)[:, 0] == BOOM):
                raise RuntimeError("SECRET: the model blew up")
            return super().predict_proba(X)
''').replace("BOOM", repr(BOOM)).replace("SECRET", SECRET)


# The compare_digest spy: uvicorn serves ``SPY_MODULE:app``, which patches both functions to
# append ``repr((a, b))`` to the file named by SPY_LOG_VARIABLE, then imports the learner's app.
SPY_MODULE = "ce3_1_grader_spy"
SPY_LOG_VARIABLE = "CE3_1_GRADER_SPY_LOG"
SPY_SOURCE = textwrap.dedent('''
    """Serves the learner's app with hmac/secrets.compare_digest recorded (written by the graders)."""
    import hmac
    import os
    import secrets

    _real = hmac.compare_digest
    _log = os.environ.get("VARIABLE", "")


    def _plain(value):
        return bytes(value) if isinstance(value, (bytearray, memoryview)) else value


    def compare_digest(a, b):
        try:
            with open(_log, "a", encoding="utf-8") as out:
                out.write(repr((_plain(a), _plain(b))) + "\\n")
        except Exception:
            pass
        return _real(a, b)


    hmac.compare_digest = compare_digest
    secrets.compare_digest = compare_digest

    from app import app  # noqa: E402 - the learner's module, once the spy is in place
''').replace("VARIABLE", SPY_LOG_VARIABLE)


class KeyPool:
    """Fresh API keys, one per use, so the per-key rate limit never gets in a check's way."""

    def __init__(self, prefix: str, size: int):
        self.keys = [f"{prefix}-{secrets.token_hex(6)}-{i:04d}" for i in range(size)]
        self._next = 0

    def take(self) -> str:
        if self._next >= len(self.keys):
            raise RuntimeError("the graders used more API keys than they made: raise the pool size")
        self._next += 1
        return self.keys[self._next - 1]


@dataclass
class Server:
    """One uvicorn process serving the learner's app."""

    role: str
    process: LocalProcess
    url: str
    log_dir: Path
    running: Running | None = None
    client: httpx.Client | None = None
    _state: str = "spawned"  # spawned -> up | failed; up -> ready | unready
    _error: str = ""

    def logs(self) -> str:
        return self.process.logs()

    def alive(self) -> bool:
        return self.process.alive()

    def up(self, timeout: float = 60.0) -> Server:
        """Wait until the server answers HTTP (any status); fail the check if it never does."""
        __tracebackhide__ = True
        if self._state == "spawned":
            try:
                wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2) is not None,
                           what=f"the {self.role} server", timeout=timeout,
                           logs=self.logs, alive=self.alive)
                self._state = "up"
            except ServiceStartError as exc:
                self._state, self._error = "failed", str(exc)
        if self._state == "failed":
            stub_check(self)
            raise AssertionError(
                f"uvicorn app:app should start and answer HTTP ({self.role} server); it did not. "
                f"{self._error}"
            )
        return self

    def ready(self, timeout: float = 60.0) -> Server:
        """Wait until ``/ready`` answers 200; fail the check (with the server's log) if it never does."""
        __tracebackhide__ = True
        self.up()
        if self._state == "up":
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.alive():
                if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    self._state = "ready"
                    break
                time.sleep(0.05)
            else:
                self._state = "unready"
        if self._state == "unready":
            stub_check(self)
            raise AssertionError(
                f"GET /ready on the {self.role} server should answer 200 once its model is loaded; "
                f"it did not within {timeout:g} s. Recent server log:\n{tail(self.logs())}"
            )
        return self

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM to its process group) without waiting."""
        if self.client is not None:
            self.client.close()
        if self.process.proc is not None and self.process.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.running is not None:
            self.running.stop()


def stub_check(server: Server) -> None:
    """An unfinished part of app.py shows as "not started", not as a crash."""
    if "NotImplementedError" in server.logs():
        raise NotImplementedError(
            f"the server's log shows NotImplementedError: part of app.py still raises it "
            f"({server.role} server)"
        )


@dataclass
class Fleet:
    """The started servers, their models and their API keys."""

    folder: Path
    main_model: object
    plain_model: object
    plain_model_bytes: bytes
    app_dir: Path = Path()
    servers: dict[str, Server] = field(default_factory=dict)
    pending: dict[str, tuple[Path, dict[str, str]]] = field(default_factory=dict)
    apps: dict[str, str] = field(default_factory=dict)  # role -> uvicorn's app, when not app:app
    role_keys: dict[str, str] = field(default_factory=dict)  # the one API key of a single-check role
    spy_log: Path = Path()
    wanted: set[str] | None = None  # the roles the selected checks use (roles_used)  # the file the spy role's wrapper appends compared values to
    keys: dict[str, KeyPool] = field(default_factory=dict)
    env_keys: list[str] = field(default_factory=list)
    file_keys: list[str] = field(default_factory=list)

    def start(self, *roles: str) -> None:
        """Spawn these roles' servers now, without waiting for them."""
        for role in roles:
            cwd, env = self.pending.pop(role)
            self.servers[role] = spawn(role, self.app_dir, cwd, env, self.folder,
                                       app=self.apps.get(role, "app:app"))

    def __getitem__(self, role: str) -> Server:
        """The server of ``role``; the first use of a server not yet spawned spawns all the rest
        the selected checks use at once (``wanted``; every pending one when it is None)."""
        if role not in self.servers:
            self.start(*dict.fromkeys([role, *(r for r in self.pending if self.wanted is None or r in self.wanted)]))
        return self.servers[role]


def roles_used(items) -> set[str] | None:
    """The roles the checks ``items`` ask the fleet for (``fleet["role"]`` in their source); None if unknown.

    A grading run of a few checks (``-k``, as the mutant gate runs them) then starts only
    their servers; a role missed here still starts on its own first use.
    """
    found: set[str] = set()
    for item in items:
        try:
            source = inspect.getsource(item.function)
        except (AttributeError, OSError, TypeError):
            return None
        found.update(re.findall(r'fleet\["(\w+)"\]', source))
    return found


def _import(folder: Path, name: str, source: str):
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        sys.modules.pop(name, None)
        return __import__(name)
    finally:
        sys.path.remove(str(folder))


def train_models(folder: Path):
    """The main model (3 classes, 5 features, raises on BOOM), the plain one (3 classes, 7 features)
    and the one that replaces the plain one's file later: logistic regressions fitted here."""
    light = _import(folder, LIGHT_MODULE, LIGHT_SOURCE)
    X, y = make_classification(n_samples=600, n_features=N_FEATURES, n_informative=4, n_redundant=0,
                               n_classes=3, n_clusters_per_class=1, random_state=0)
    fitted = LogisticRegression(max_iter=2000).fit(X, MAIN_LABELS[y])
    main = light.FailingLinearClassifier(fitted.coef_, fitted.intercept_, fitted.classes_)
    Xp, yp = make_classification(n_samples=600, n_features=PLAIN_FEATURES, n_informative=5,
                                 n_redundant=0, n_classes=3, n_clusters_per_class=1, random_state=1)
    fitted = LogisticRegression(max_iter=2000).fit(Xp, PLAIN_LABELS[yp])
    plain = light.LinearClassifier(fitted.coef_, fitted.intercept_, fitted.classes_)
    swapped = light.LinearClassifier(fitted.coef_[::-1], fitted.intercept_[::-1], fitted.classes_)
    return main, plain, swapped


def write_spy(folder: Path) -> None:
    """The wrapper module of the ``spy`` role, in the folder on the servers' PYTHONPATH."""
    (folder / f"{SPY_MODULE}.py").write_text(SPY_SOURCE, encoding="utf-8")


def spied_calls(log: Path, offset: int = 0) -> list[tuple]:
    """The (a, b) pairs the spy recorded after ``offset`` bytes of its file (unreadable lines skipped)."""
    try:
        with open(log, "rb") as recorded:
            recorded.seek(offset)
            text = recorded.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    calls = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pair = ast.literal_eval(line)
            if isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(v, str | bytes) for v in pair):
                calls.append(pair)
    return calls


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def spawn(role: str, app_dir: Path, cwd: Path, env: dict[str, str], pythonpath: Path,
          app: str = "app:app") -> Server:
    # Only the settings of this role: none inherited from the grader's own environment.
    spawned = spawn_uvicorn(app, app_dir, name=f"ce3_1-{role}", env=env, pythonpath=pythonpath, cwd=cwd,
                            unset=SETTINGS)
    server = Server(role, spawned.process, spawned.url, spawned.log_dir, spawned.running)
    server.client = httpx.Client(base_url=server.url, timeout=15)
    return server



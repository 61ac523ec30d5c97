"""What every service backend shares: connection objects, waiting, processes, clean-up.

A grader gets an *endpoint* (URL, host, port, plus what the service needs) and
never knows whether a container or a local process serves it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# One id per Python process that starts services: containers carry it as a label, so a
# later session can remove what a killed one left behind.
RUN_ID = os.environ.get("WORKBOOK_RUN_ID") or uuid.uuid4().hex[:12]
LABEL_RUN = "workbook.run"
LABEL_PID = "workbook.pid"


class ServiceStartError(RuntimeError):
    """A service did not start or did not become ready; the message says what to do."""


class ServiceUnavailable(RuntimeError):
    """The chosen backend cannot run this service here; the message has the fix."""


# -- endpoints ------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """Where a started service answers. Always on loopback."""

    service: str
    backend: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class PostgresEndpoint(Endpoint):
    user: str = "workbook"
    password: str = "workbook"
    database: str = "workbook"

    @property
    def dsn(self) -> str:
        """A libpq URL: ``postgresql://user:password@127.0.0.1:port/database``."""
        from urllib.parse import quote

        return f"postgresql://{quote(self.user)}:{quote(self.password)}@{self.host}:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        return self.dsn

    @property
    def sqlalchemy_url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)

    def connect(self, **kwargs: Any):
        """A psycopg (3) connection, autocommit off."""
        import psycopg

        return psycopg.connect(self.dsn, **kwargs)


@dataclass
class RedisEndpoint(Endpoint):
    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def get_client(self, **kwargs: Any):
        import redis

        return redis.Redis(host=self.host, port=self.port, **kwargs)


@dataclass
class PrometheusEndpoint(Endpoint):
    """A Prometheus server whose scrape targets and rules a grader can change at run time."""

    config_dir: Path = field(default_factory=Path)
    scrape_interval: str = "1s"
    alertmanager: str | None = None  # host:port alerts are sent to
    _jobs: dict[str, list[str]] = field(default_factory=dict)
    _rule_files: list[str] = field(default_factory=list)

    def query(self, promql: str, **params: Any) -> list[dict]:
        """Run an instant PromQL query; returns ``data.result``. Errors name the query."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql, **params}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"PromQL {promql!r} failed: {body.get('error', response.text)}")
        return body["data"]["result"]

    def scrape(self, job: str, *targets: str) -> None:
        """Scrape ``host:port`` targets (on loopback) under ``job``; reloads Prometheus."""
        self._jobs[job] = list(targets)
        self.write_config()
        self.reload()

    def add_rules(self, name: str, text: str) -> Path:
        """Load a rule file (alerting or recording rules, YAML) and reload."""
        path = self.config_dir / f"{name}.rules.yml"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        self._rule_files.append(path.name)
        self.write_config()
        self.reload()
        return path

    def use_alertmanager(self, alertmanager: Endpoint) -> None:
        """Send firing alerts to this Alertmanager; reloads Prometheus."""
        self.alertmanager = f"{alertmanager.host}:{alertmanager.port}"
        self.write_config()
        self.reload()

    def write_config(self) -> Path:
        import json

        lines = [
            "global:",
            f"  scrape_interval: {self.scrape_interval}",
            f"  evaluation_interval: {self.scrape_interval}",
        ]
        if self._rule_files:
            lines.append("rule_files:")
            lines += [f"  - {json.dumps(name)}" for name in self._rule_files]
        if self.alertmanager:
            lines += ["alerting:", "  alertmanagers:", "    - static_configs:",
                      f"        - targets: [{json.dumps(self.alertmanager)}]"]
        lines.append("scrape_configs:")
        lines += ["  - job_name: prometheus", "    static_configs:",
                  f"      - targets: [\"{self.host}:{self.port}\"]"]
        for job, targets in self._jobs.items():
            lines += [f"  - job_name: {json.dumps(job)}", "    static_configs:",
                      f"      - targets: {json.dumps(targets)}"]
        path = self.config_dir / "prometheus.yml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o644)
        return path

    def reload(self) -> None:
        httpx.post(f"{self.url}/-/reload", timeout=10).raise_for_status()

    def wait_for(self, promql: str, timeout: float = 15.0) -> list[dict]:
        """Poll a query until it returns a non-empty result (a scrape takes a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.2)


@dataclass
class AlertmanagerEndpoint(Endpoint):
    """An Alertmanager routing every alert to ``receiver`` (a WebhookReceiver) at once."""

    receiver: Any = None

    def post_alerts(self, *alerts: dict) -> None:
        httpx.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=10).raise_for_status()

    def alerts(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v2/alerts", timeout=10).json()


@dataclass
class MlflowEndpoint(Endpoint):
    @property
    def tracking_uri(self) -> str:
        return self.url

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)


# -- a started service ----------------------------------------------------------------------


@dataclass
class Running:
    """A started service: its endpoint, its logs, and how to stop it (idempotent)."""

    endpoint: Endpoint
    stop_fn: Callable[[], None]
    logs_fn: Callable[[], str] = lambda: ""
    started_s: float = 0.0
    _stopped: bool = False

    def logs(self) -> str:
        try:
            return self.logs_fn()
        except Exception as exc:  # logs are a courtesy; never hide the real error
            return f"(logs unavailable: {exc})"

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            unregister(self)
            self.stop_fn()


_LIVE: list[Running] = []
_LIVE_LOCK = threading.Lock()


def register(running: Running) -> Running:
    with _LIVE_LOCK:
        _LIVE.append(running)
    return running


def unregister(running: Running) -> None:
    with _LIVE_LOCK:
        if running in _LIVE:
            _LIVE.remove(running)


def stop_all() -> None:
    """Stop everything this process started (last started, first stopped)."""
    while True:
        with _LIVE_LOCK:
            if not _LIVE:
                return
            running = _LIVE[-1]
        with contextlib.suppress(Exception):
            running.stop()
        unregister(running)


atexit.register(stop_all)


# -- waiting --------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], Any],
    *,
    what: str,
    timeout: float,
    logs: Callable[[], str] = lambda: "",
    hint: str = "",
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.05,
) -> None:
    """Poll ``check`` until it returns a truthy value without raising.

    Waits on the protocol (a query, PING, /-/ready), never on an open port:
    docker-proxy accepts connections even when nothing listens behind it.
    """
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while True:
        try:
            if check():
                return
            last_error = "not ready yet"
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if not alive():
            raise ServiceStartError(
                f"{what} exited before it was ready ({last_error}).\nRecent logs:\n{tail(logs())}"
                + (f"\nHint: {hint}" if hint else "")
            )
        if time.monotonic() > deadline:
            raise ServiceStartError(
                f"{what} was not ready within {timeout:g} s ({last_error}).\nRecent logs:\n{tail(logs())}"
                + (f"\nHint: {hint}" if hint else "")
            )
        time.sleep(interval)


def tail(text: str, lines: int = 20) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:]) or "    (none)"


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


#: How long a port handed out by free_port stays promised to its caller: long enough for
#: the slowest server here to start (an app loads its model before uvicorn binds).
PORT_HOLD_SECONDS = 300.0
LEDGER_WAIT_SECONDS = 5.0  # how long free_port waits for another process's lock on the ledger
_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 65535  # Linux's default start; macOS's range is 49152-65535


def _port_candidates() -> list[int]:
    """Ports outside the kernel's ephemeral range, in a random order."""
    low, high = _ephemeral_range()
    if low - 1024 >= 4000:
        pool = range(max(1024, low - 16000), low)
    elif 65535 - high >= 4000:
        pool = range(high + 1, 65536)
    else:
        return []
    return random.sample(pool, min(400, len(pool)))


def _ledger_path() -> Path:
    return Path(tempfile.gettempdir()) / f"workbook-ports-{os.getuid()}.ledger"


def _open_ledger():
    """The ledger, locked, or None when it cannot be used safely or at once.

    It is private to this user (0600, owned by it): a file someone else made or can read is
    not used, so another user (a learner's sandboxed code, under sealed grading) can neither
    fill it nor hold its lock. A lock held past a few seconds is not waited for either.
    """
    try:
        fd = os.open(_ledger_path(), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError:
        return None
    info = os.fstat(fd)
    if info.st_uid != os.getuid():
        os.close(fd)
        return None
    if info.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    handle = os.fdopen(fd, "r+", encoding="utf-8")
    deadline = time.monotonic() + LEDGER_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError:
            if time.monotonic() > deadline:
                handle.close()
                return None
            time.sleep(0.02)


@contextlib.contextmanager
def _port_ledger():
    """The ports promised in the last PORT_HOLD_SECONDS by any workbook process of this user
    (an empty dict, not kept, when the ledger cannot be used)."""
    handle = _open_ledger()
    if handle is None:
        yield {}
        return
    with handle:
        handle.seek(0)
        now = time.time()
        promised: dict[int, float] = {}
        for line in handle.read().split("\n"):
            with contextlib.suppress(ValueError):
                port, when = line.split()
                if 0 <= now - float(when) < PORT_HOLD_SECONDS:
                    promised[int(port)] = float(when)
        yield promised
        handle.seek(0)
        handle.truncate()
        handle.write("".join(f"{port} {when}\n" for port, when in promised.items()))


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port that nothing listens on now and that no one else will be handed soon.

    A server told to listen on it binds it a few seconds later, so the port must not be taken
    in between. Asking the kernel (``bind(host, 0)``) gives a port from its ephemeral range,
    which any other process's ``bind(0)`` or outgoing connection may take the next moment:
    CI saw uvicorn fail with "address already in use" that way. So the port comes from
    outside that range, and every workbook process of this user (xdist workers, parallel
    gradings) records the ports it promises in one locked ledger and skips the others'.
    """
    with _ports_lock, _port_ledger() as promised:
        for port in _port_candidates():
            if port in promised or port in _ports_handed_out or not _bindable(host, port):
                continue
            promised[port] = time.time()
            _ports_handed_out.add(port)
            return port
    with socket.socket() as sock:  # no room outside the ephemeral range: the kernel's choice
        sock.bind((host, 0))
        return sock.getsockname()[1]


def make_tempdir(service: str, *, shared: bool = False) -> Path:
    """A fresh folder for one service's data, named after this run (``RUN_ID``).

    It goes under ``WORKBOOK_SERVICES_TMP`` if set, else the system's temp folder.
    ``shared`` forces the system's temp folder, for a service that drops to another
    user and so needs every parent folder to be traversable by that user.
    """
    root = None if shared else os.environ.get("WORKBOOK_SERVICES_TMP") or None
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"workbook-{RUN_ID}-{service}-", dir=root))


# -- local processes ------------------------------------------------------------------------


def _child_setup(uid: int | None, gid: int | None) -> Callable[[], None]:
    def setup() -> None:
        os.setsid()  # own process group: stopped as a whole, untouched by the terminal's Ctrl-C
        try:  # Linux: die with the parent (the starting thread, precisely), even on SIGKILL
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)

    return setup


@dataclass
class LocalProcess:
    """A service binary run as a child process, logging to a file in its data folder."""

    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    proc: subprocess.Popen | None = None
    learner: bool = False  # the learner's whole program: sealed like its code (workbook.sealed.learner_program)

    def start(self) -> LocalProcess:
        uid = gid = None
        if self.user and os.geteuid() == 0:
            import pwd

            record = pwd.getpwnam(self.user)
            uid, gid = record.pw_uid, record.pw_gid
        argv, cwd = self.argv, self.cwd
        if self.learner:
            from workbook.sealed import learner_program

            argv, cwd = learner_program(self.argv, cwd=self.cwd, env=self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})}, cwd=cwd,
                preexec_fn=_child_setup(uid, gid),
            )
        except FileNotFoundError:
            log.close()
            raise ServiceUnavailable(f"{self.argv[0]} is not installed") from None
        self._log = log
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Anything the service forked into its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

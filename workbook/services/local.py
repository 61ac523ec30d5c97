"""The local backend: each service as a process from a binary on PATH (Debian's packages).

Every service gets a free loopback port and a temporary data folder, both its own,
so parallel sessions (pytest-xdist workers) never collide.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
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
POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def which(service: str) -> str | None:
    """Path of the service's binary, or None."""
    if service == "mlflow":
        return sys.executable if _has_module("mlflow") else None
    name = BINARIES[service][0]
    found = shutil.which(name)
    if found is None and service == "postgres":
        for folder in POSTGRES_BIN_DIRS:
            if (folder / "postgres").is_file():
                return str(folder / "postgres")
    if found is None and service == "alertmanager":
        found = shutil.which("alertmanager")
    return found


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def missing_fix(service: str) -> str:
    if service == "mlflow":
        return "pip install mlflow (make setup installs it)"
    return f"apt-get install -y {BINARIES[service][1]}"


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


def _postgres_template(postgres: str, user: str) -> Path:
    """An initdb'd cluster, made once per machine and copied per session (initdb takes ~1 s)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "workbook"
    version = Path(postgres).resolve().parent.parent.name
    template = cache / f"postgres-{version}-{user}"
    if (template / "PG_VERSION").is_file():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    as_postgres = os.geteuid() == 0  # initdb refuses root
    work = make_tempdir("postgres-template", shared=as_postgres)
    data = work / "data"
    initdb = str(Path(postgres).resolve().parent / "initdb")
    if as_postgres:
        shutil.chown(work, "postgres", "postgres")
    init = LocalProcess([initdb, "-D", str(data), "-U", user, "--auth=trust", "-N", "-E", "UTF8"],
                        work / "initdb.log", user="postgres" if as_postgres else None).start()
    init.proc.wait(60)
    init.stop()
    if init.proc.returncode != 0:
        raise ServiceUnavailable(f"initdb failed:\n{init.logs()[-2000:]}")
    try:
        data.rename(template)  # atomic: parallel workers may race to make it
    except OSError:
        remove_tree(data)
    remove_tree(work)
    return template


def start_postgres(user: str = "workbook", password: str = "workbook", database: str = "workbook") -> Running:
    postgres = _require("postgres")
    as_postgres = os.geteuid() == 0  # postgres refuses to run as root
    data_dir = make_tempdir("postgres", shared=as_postgres)
    data = data_dir / "data"
    shutil.copytree(_postgres_template(postgres, user), data, symlinks=True)
    if as_postgres:
        for path in [data_dir, *data_dir.rglob("*")]:
            shutil.chown(path, "postgres", "postgres")
    data.chmod(0o700)
    port = free_port()
    process = LocalProcess(
        [postgres, "-D", str(data), "-p", str(port), "-k", str(data_dir),
         "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off"],
        data_dir / "postgres.log", user="postgres" if as_postgres else None,
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

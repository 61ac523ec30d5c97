"""The docker backend: each service in a container started through testcontainers.

Images come from settings (official names by default; ``workbook images build``
makes stand-ins where no registry is reachable). Ports are published on loopback
only (dockerd runs with ``--ip 127.0.0.1``); Prometheus and Alertmanager share the
host's network instead, so that they reach scrape targets and webhooks on
127.0.0.1 and listen on 127.0.0.1 themselves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from workbook.services import settings
from workbook.services.base import (
    LABEL_PID,
    LABEL_RUN,
    RUN_ID,
    AlertmanagerEndpoint,
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
from workbook.services.local import alertmanager_config

HOST = "127.0.0.1"


def engine_answers() -> bool:
    """True when a Docker engine answers on this machine."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_present(service: str) -> bool:
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "image", "inspect", settings.image(service)], capture_output=True)
    return proc.returncode == 0


def _require(service: str) -> str:
    if not engine_answers():
        raise ServiceUnavailable(
            "--services=docker needs a running Docker engine: apt-get install -y docker.io, "
            "start `dockerd --ip 127.0.0.1 &`, or use --services=local."
        )
    image = settings.image(service)
    if not image_present(service):
        raise ServiceUnavailable(
            f"--services=docker needs the image {image} for {service}: run `workbook images build` "
            "(no registry needed), or use --services=local."
        )
    settings.configure_testcontainers()
    reap_orphans()
    return image


def import_clients() -> None:
    """Import the testcontainers modules the start_* functions use (see services.prepare)."""
    settings.configure_testcontainers()  # testcontainers reads its settings when first imported
    import testcontainers.community.postgres  # noqa: F401
    import testcontainers.community.redis  # noqa: F401
    import testcontainers.core.container  # noqa: F401


def labels() -> dict[str, str]:
    return {LABEL_RUN: RUN_ID, LABEL_PID: str(os.getpid())}


def reap_orphans() -> None:
    """Remove workbook containers whose owning process is gone (a killed session's leftovers)."""
    proc = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={LABEL_PID}",
         "--format", f'{{{{.ID}}}} {{{{.Label "{LABEL_PID}"}}}}'],
        capture_output=True, text=True,
    )
    stale = [cid for cid, pid in (line.split() for line in proc.stdout.splitlines() if " " in line)
             if not _pid_alive(int(pid))]
    if stale:
        subprocess.run(["docker", "rm", "-f", "-v", *stale], capture_output=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start(service: str, container, endpoint_fn, ready, data_dir: Path | None = None) -> Running:
    started = time.monotonic()
    container.with_kwargs(**{**container._kwargs, "labels": labels()})

    def logs() -> str:
        wrapped = container.get_wrapped_container()
        return wrapped.logs(tail=50).decode(errors="replace") if wrapped else ""

    def stop() -> None:
        with contextlib.suppress(Exception):
            container.stop()
        if data_dir is not None:
            remove_tree(data_dir)

    running = register(Running(None, stop, logs))  # type: ignore[arg-type]
    try:
        container.start()
        running.endpoint = endpoint_fn()
        wait_until(lambda: ready(running.endpoint), what=f"{service} (docker, {settings.image(service)})",
                   timeout=settings.start_timeout(service), logs=logs, alive=lambda: _running(container))
    except BaseException:
        running.stop()
        raise
    running.started_s = time.monotonic() - started
    return running


def _running(container) -> bool:
    wrapped = container.get_wrapped_container()
    if wrapped is None:
        return False
    wrapped.reload()
    return wrapped.status in ("created", "running")


def start_postgres(user: str = "workbook", password: str = "workbook", database: str = "workbook") -> Running:
    image = _require("postgres")
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(image, username=user, password=password, dbname=database, driver=None)

    def endpoint() -> PostgresEndpoint:
        return PostgresEndpoint("postgres", "docker", HOST, int(container.get_exposed_port(5432)),
                                user, password, database)

    def ready(ep: PostgresEndpoint) -> bool:
        with ep.connect(connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    # PostgresContainer.start() itself waits until psql answers inside the container.
    return _start("postgres", container, endpoint, ready)


def start_redis() -> Running:
    image = _require("redis")
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer(image)

    def endpoint() -> RedisEndpoint:
        return RedisEndpoint("redis", "docker", HOST, int(container.get_exposed_port(6379)))

    def ready(ep: RedisEndpoint) -> bool:
        client = ep.get_client(socket_timeout=1)
        try:
            return client.ping()
        finally:
            client.close()

    return _start("redis", container, endpoint, ready)


def _host_network_container(image: str, command: list[str], data_dir: Path, mount: str):
    from testcontainers.core.container import DockerContainer

    data_dir.chmod(0o777)  # the images run their service as a non-root user
    container = DockerContainer(image).with_command(command)
    container.with_volume_mapping(str(data_dir), mount, "rw")
    container.with_kwargs(network_mode="host")
    return container


def start_prometheus() -> Running:
    image = _require("prometheus")
    data_dir = make_tempdir("prometheus")
    port = free_port()
    endpoint = PrometheusEndpoint("prometheus", "docker", HOST, port, config_dir=data_dir)
    endpoint.write_config()
    container = _host_network_container(
        image,
        ["--config.file=/workbook/prometheus.yml", "--storage.tsdb.path=/tmp/tsdb",
         f"--web.listen-address={HOST}:{port}", "--web.enable-lifecycle",
         "--rules.alert.resend-delay=1s"],
        data_dir, "/workbook",
    )
    return _start("prometheus", container, lambda: endpoint,
                  lambda ep: http_ok(f"{ep.url}/-/ready"), data_dir)


def start_alertmanager(receiver) -> Running:
    image = _require("alertmanager")
    data_dir = make_tempdir("alertmanager")
    port = free_port()
    (data_dir / "alertmanager.yml").write_text(alertmanager_config(receiver.url), encoding="utf-8")
    (data_dir / "alertmanager.yml").chmod(0o644)
    container = _host_network_container(
        image,
        ["--config.file=/workbook/alertmanager.yml", "--storage.path=/tmp/alertmanager",
         f"--web.listen-address={HOST}:{port}", "--cluster.listen-address="],
        data_dir, "/workbook",
    )
    endpoint = AlertmanagerEndpoint("alertmanager", "docker", HOST, port, receiver=receiver)
    return _start("alertmanager", container, lambda: endpoint,
                  lambda ep: http_ok(f"{ep.url}/-/ready"), data_dir)


def start_mlflow() -> Running:
    image = _require("mlflow")
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(image)
        .with_command(["mlflow", "server", "--host", "0.0.0.0", "--port", "5000",
                       "--backend-store-uri", "sqlite:////tmp/mlflow.db",
                       "--artifacts-destination", "/tmp/artifacts", "--workers", "1"])
        .with_env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .with_exposed_ports(5000)
    )

    def endpoint() -> MlflowEndpoint:
        return MlflowEndpoint("mlflow", "docker", HOST, int(container.get_exposed_port(5000)))

    return _start("mlflow", container, endpoint, lambda ep: http_ok(f"{ep.url}/health"))

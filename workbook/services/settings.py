"""Service settings: image names, backend choice, timeouts — environment first, then defaults."""

from __future__ import annotations

import os
from importlib import metadata

SERVICES = ("postgres", "redis", "prometheus", "alertmanager", "mlflow")  # docker and local backends
BACKENDS = ("auto", "docker", "local")


def mlflow_version() -> str:
    return metadata.version("mlflow")


def default_images() -> dict[str, str]:
    """The official images, at the versions Debian bookworm (and our venv) ship."""
    return {
        "postgres": "postgres:15",
        "redis": "redis:7",
        "prometheus": "prom/prometheus:v2.42.0",
        "alertmanager": "prom/alertmanager:v0.25.0",
        "mlflow": f"ghcr.io/mlflow/mlflow:v{mlflow_version()}",
    }


def image(service: str) -> str:
    """``WORKBOOK_IMAGE_<SERVICE>`` or the official default."""
    return os.environ.get(f"WORKBOOK_IMAGE_{service.upper()}") or default_images()[service]


def backend() -> str:
    value = os.environ.get("WORKBOOK_SERVICES", "auto")
    if value not in BACKENDS:
        raise ValueError(f"Invalid WORKBOOK_SERVICES {value!r} from the environment; use one of {BACKENDS}")
    return value


def start_timeout(service: str) -> float:
    """Seconds a service may take to become ready (``WORKBOOK_START_TIMEOUT`` overrides)."""
    env = os.environ.get("WORKBOOK_START_TIMEOUT")
    if env:
        return float(env)
    return 90.0 if service == "mlflow" else 30.0


def configure_testcontainers() -> None:
    """Settings these machines need (DESIGN.md): no ryuk, connect through localhost, fast polls."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    os.environ.setdefault("TC_POOLING_INTERVAL", "0.1")
    # testcontainers' own waits (PostgresContainer's psql) give up after TC_MAX_TRIES polls: the
    # default 120 × 0.1 s = 12 s is too short for initdb on a loaded machine; allow 60 s.
    os.environ.setdefault("TC_MAX_TRIES", "600")
    os.environ.setdefault("TC_HOST", "127.0.0.1")

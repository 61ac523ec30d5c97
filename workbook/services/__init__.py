"""Real services for graders: PostgreSQL, Redis, Prometheus, Alertmanager, an MLflow server.

Each service runs under one of two backends and yields the same endpoint object:

* ``docker`` — a container started through testcontainers (``workbook.services.docker``);
* ``local``  — a process from a binary on PATH (``workbook.services.local``).

``auto`` picks docker when an engine answers and the service's image is present,
else local. ``start(service, backend)`` returns a ``Running`` (endpoint + stop()).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict

from workbook.services import settings
from workbook.services.base import (
    Endpoint,
    MlflowEndpoint,
    PostgresEndpoint,
    RedisEndpoint,
    Running,
    ServiceStartError,
    ServiceUnavailable,
    stop_all,
)

__all__ = ["Running", "ServiceStartError", "ServiceUnavailable", "attached", "availability",
           "choose_backend", "start", "stop_all", "warm", "warm_environment"]

#: Environment variable through which a parent process hands running services to graders
#: (``workbook dev mutation`` starts them once for hundreds of grader runs).
WARM_ENV = "WORKBOOK_WARM_SERVICES"
#: Services whose endpoint is plain data, so a second process can share them safely.
SHAREABLE = {"postgres": PostgresEndpoint, "redis": RedisEndpoint, "mlflow": MlflowEndpoint}


def _module(backend: str):
    if backend == "docker":
        from workbook.services import docker as module
    else:
        from workbook.services import local as module
    return module


def available(service: str, backend: str) -> tuple[bool, str]:
    """Whether ``backend`` can run ``service`` here, and what is missing (with the fix)."""
    if backend == "local":
        from workbook.services import local

        path = local.which(service)
        return (True, path) if path else (False, local.missing_fix(service))
    from workbook.services import docker

    if not docker.engine_answers():
        return False, "apt-get install -y docker.io && dockerd --ip 127.0.0.1 &"
    image = settings.image(service)
    if not docker.image_present(service):
        return False, f"image {image} missing: workbook images build"
    return True, image


def availability() -> dict[str, dict[str, tuple[bool, str]]]:
    """service -> backend -> (available, detail or fix), for ``workbook doctor``."""
    return {s: {b: available(s, b) for b in ("local", "docker")} for s in settings.SERVICES}


def choose_backend(service: str, requested: str) -> str:
    if requested in ("docker", "local"):
        return requested
    ok, _ = available(service, "docker")
    return "docker" if ok else "local"


def prepare(names: Iterable[str], backend: str = "auto") -> None:
    """Import what starting ``names`` needs, here, before threads start them side by side.

    Two threads importing testcontainers' modules at once can meet in a circular import and
    one of them gets importlib's ``_DeadlockError``: every check that needs its service
    then errors.
    """
    import psycopg  # noqa: F401 - the endpoints' clients, which the readiness checks import
    import redis  # noqa: F401

    for chosen in {choose_backend(name, backend) for name in names}:
        module = _module(chosen)
        getattr(module, "import_clients", lambda: None)()


def start(service: str, backend: str = "auto", **kwargs) -> Running:
    """Start ``service`` under ``backend``; raises ServiceUnavailable with the fix when it can't."""
    chosen = choose_backend(service, backend)
    return getattr(_module(chosen), f"start_{service}")(**kwargs)


def warm_environment(running: list[Running]) -> dict[str, str]:
    """Environment that lets a child pytest attach to these started services."""
    shared = {r.endpoint.service: asdict(r.endpoint) for r in running
              if r.endpoint.service in SHAREABLE}
    return {WARM_ENV: json.dumps(shared)} if shared else {}


def attached(service: str) -> Endpoint | None:
    """The endpoint of ``service`` started by a parent process, if one was handed over."""
    raw = os.environ.get(WARM_ENV)
    if not raw or service not in SHAREABLE:
        return None
    try:
        data = json.loads(raw).get(service)
    except (ValueError, AttributeError):
        raise ServiceUnavailable(f"${WARM_ENV} is not valid JSON: {raw[:200]!r}") from None
    return SHAREABLE[service](**data) if data else None


@contextlib.contextmanager
def warm(names: Iterable[str], backend: str = "auto") -> Iterator[list[Running]]:
    """Start the shareable ones of ``names`` once; grader runs started inside attach to them.

    For tools that run an exercise's graders many times (mutants, mutation testing): the
    MLflow server alone costs ~7 s a start. Already handed-over services are left alone.
    """
    wanted = [n for n in dict.fromkeys(names) if n in SHAREABLE and attached(n) is None]
    running: list[Running] = []
    previous = os.environ.get(WARM_ENV)
    try:
        for name in wanted:
            running.append(start(name, backend))
        if running:
            shared = json.loads(previous) if previous else {}
            shared.update(json.loads(warm_environment(running)[WARM_ENV]))
            os.environ[WARM_ENV] = json.dumps(shared)
        yield running
    finally:
        if previous is None:
            os.environ.pop(WARM_ENV, None)
        else:
            os.environ[WARM_ENV] = previous
        for r in reversed(running):
            r.stop()

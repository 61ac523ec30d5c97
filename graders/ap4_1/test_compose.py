"""The project's docker-compose.yml provisions Grafana with the AP4.1 dashboard (checked
statically: Grafana cannot run on every machine). Not graded: it checks the project's
files, not the learner's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from workbook import paths

ROOT = paths.root()
COMPOSE = ROOT / "docker-compose.yml"
GRAFANA = ROOT / "infra" / "grafana"

pytestmark = pytest.mark.skipif(not COMPOSE.is_file(), reason="this checkout has no docker-compose.yml")


def mounts(service: dict) -> dict[str, str]:
    """container path -> host path (relative to the repository root)."""
    found = {}
    for volume in service.get("volumes") or []:
        host, container, *_ = volume.split(":")
        found[container] = host
    return found


def test_compose_provisions_grafana_with_the_dashboard():
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"prometheus", "alertmanager", "grafana"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for host in mounts(service).values():
            assert (ROOT / host).exists(), f"{name} mounts {host}, which does not exist"
    grafana = mounts(services["grafana"])
    assert grafana["/etc/grafana/provisioning"] == "./infra/grafana/provisioning"
    dashboards = [c for c, h in grafana.items() if h == "./exercises/ap4_1/dashboard.json"]
    assert dashboards, "Grafana should mount exercises/ap4_1/dashboard.json"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/workbook.yml").read_text(encoding="utf-8"))
    folder = provider["providers"][0]["options"]["path"]
    assert all(Path(d).parent == Path(folder) for d in dashboards), "the dashboard is mounted outside the provider's path"
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text(encoding="utf-8"))
    source = datasource["datasources"][0]
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus"), "the dashboards name uid 'prometheus'"
    assert source["url"] == "http://prometheus:9090"


def test_compose_prometheus_config_is_valid(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None or not paths.solutions_dir().is_dir():
        pytest.skip("needs promtool and the reference rules (solutions/ap4_1)")
    config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text(encoding="utf-8"))
    rules = tmp_path / "rules.yml"
    shutil.copy(paths.solutions_dir() / "ap4_1" / "rules.yml", rules)
    config["rule_files"] = [str(rules)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr

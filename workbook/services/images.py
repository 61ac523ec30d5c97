"""Build offline stand-ins for the official service images (``workbook images build``).

No container registry is reachable on air-gapped machines (and this project's
CI), so a Debian base is made with debootstrap and each service image is built
on it from Debian's packages, tagged with the official name the services use.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from workbook import paths
from workbook.services import settings

BASE_IMAGE = "workbook/debian-base:bookworm"
SUITE = "bookworm"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageBuildError(RuntimeError):
    """A stand-in image could not be built; the message says what to install or fix."""


def images_dir() -> Path:
    return paths.root() / "infra" / "images"


def docker(*args: str, check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=capture, text=True, **kw)


def image_exists(name: str) -> bool:
    try:
        return docker("image", "inspect", name, check=False).returncode == 0
    except FileNotFoundError:
        return False


def debian_mirror() -> str:
    """The Debian archive URL apt already uses on this host."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", line)
            if match and "security" not in match.group(1):
                return match.group(1)
    raise ImageBuildError("no Debian mirror found in /etc/apt: pass --mirror URL")


def build_base(mirror: str | None, log: Callable[[str], None]) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is missing: apt-get install -y debootstrap")
    mirror = mirror or debian_mirror()
    with tempfile.TemporaryDirectory(prefix="workbook-rootfs-") as tmp:
        log(f"debootstrap {SUITE} (minbase) …")
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, tmp, mirror], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise ImageBuildError(f"debootstrap failed:\n{proc.stderr[-2000:]}")
        log(f"importing {BASE_IMAGE} …")
        tar = subprocess.Popen(["tar", "-C", tmp, "-c", "."], stdout=subprocess.PIPE)
        docker("import", "-", BASE_IMAGE, stdin=tar.stdout)
        tar.wait()


def build_service(service: str, log: Callable[[str], None]) -> str:
    """docker build infra/images/<service> with the base; returns the tag."""
    tag = settings.image(service)
    context = images_dir() / service
    with tempfile.TemporaryDirectory(prefix=f"workbook-{service}-") as tmp:
        shutil.copytree(context, tmp, dirs_exist_ok=True)
        args = ["build", "--force-rm", "-t", tag, "--build-arg", f"BASE={BASE_IMAGE}"]
        if service == "mlflow":
            if not HOST_CA.is_file():
                raise ImageBuildError(f"{HOST_CA} is missing: apt-get install -y ca-certificates")
            shutil.copy(HOST_CA, Path(tmp) / "host-ca.crt")
            args += ["--build-arg", f"MLFLOW_VERSION={settings.mlflow_version()}"]
        log(f"building {tag} …")
        proc = docker(*args, tmp, check=False)
        if proc.returncode != 0:
            raise ImageBuildError(f"docker build of {tag} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return tag


def build_all(
    services: list[str] | None = None, *, force: bool = False, mirror: str | None = None,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Build the base and the missing stand-ins (all with ``force``); return the tags built."""
    if shutil.which("docker") is None:
        raise ImageBuildError("docker is missing: apt-get install -y docker.io, then start dockerd")
    if docker("info", check=False).returncode != 0:
        raise ImageBuildError("the Docker engine does not answer: start it (dockerd --ip 127.0.0.1 &)")
    if force or not image_exists(BASE_IMAGE):
        build_base(mirror, log)
    built = []
    for service in services or settings.SERVICES:
        if force or not image_exists(settings.image(service)):
            built.append(build_service(service, log))
        else:
            log(f"{settings.image(service)} is present")
    return built

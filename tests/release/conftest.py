"""`make release-check`: the release workflow's steps, rehearsed against a local registry.

Why here and not only on GitHub: release.yml runs once per tag, far too rarely to find out
late that a chart no longer packages, cannot be pulled back by digest, or that the image's
SBOM does not list what requirements.lock pins. The registry is local (127.0.0.1 only):

- an upstream registry image (`OCI_REGISTRY_IMAGE`, default `registry:2`) where one can
  be pulled (`scripts/airgap.sh --check` says upstream), run with Docker;
- otherwise Debian's `docker-registry` package (provision/debian-packages.txt), the same
  distribution registry, started here as a process on a free port.

RELEASE_CHECK_REGISTRY=image|debian forces one. The stack's image is WALLET_API_IMAGE
(the Makefile builds it first).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "src"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "release: make release-check (Docker, local registry)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_v2(address: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise RuntimeError(f"registry at {address} did not answer /v2/: {last}")


def registry_backend() -> str:
    """image where the upstream registry image can be pulled, else debian."""
    forced = os.environ.get("RELEASE_CHECK_REGISTRY", "")
    if forced in ("image", "debian"):
        return forced
    check = subprocess.run(
        [str(ROOT / "scripts" / "airgap.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "image" if check.returncode == 0 else "debian"


class Registry:
    def __init__(self, address: str, kind: str) -> None:
        self.address = address
        self.kind = kind


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    kind = registry_backend()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    if kind == "image":
        image = os.environ.get("OCI_REGISTRY_IMAGE", "registry:2")
        cid = subprocess.run(
            ["docker", "run", "-d", "--rm", "-p", f"{address}:5000", image],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        try:
            _wait_v2(address)
            print(f"\nrelease-check: registry = upstream image {image} at {address}")
            yield Registry(address, f"image {image}")
        finally:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)
        return
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("no registry: install Debian's docker-registry (scripts/provision.sh)")
    workdir = tmp_path_factory.mktemp("registry")
    config = workdir / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
                "http": {"addr": address},
            }
        )
    )
    log = (workdir / "registry.log").open("w")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        _wait_v2(address)
        print(f"\nrelease-check: registry = Debian docker-registry (pid {proc.pid}) at {address}")
        yield Registry(address, "Debian docker-registry")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def find_helm() -> str:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    local = ROOT / ".tools" / "bin" / "helm"
    if not local.exists():
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "helm-validate.sh"), "--install-only"],
            check=True, capture_output=True,
        )  # fmt: skip
    return str(local)


@pytest.fixture(scope="session")
def helm() -> str:
    return find_helm()


@pytest.fixture(scope="session")
def wallet_image() -> str:
    image = os.environ.get("WALLET_API_IMAGE", "wallet-stack/wallet-api:dev")
    if subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, check=False
    ).returncode:
        pytest.fail(f"{image} is not built (make release-check builds it first)")
    return image

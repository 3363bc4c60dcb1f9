"""Helpers of `make fresh-check` (conftest.py runs the steps; see its docstring)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "stack"))
import stack_support as ss  # noqa: E402

# Pinned upstream base where a registry answers (a point release, not a moving tag).
UPSTREAM_BASE = "debian:12.11-slim"
PROJECT = os.environ.get("FRESH_PROJECT", "wallet-fresh")
HTTP_PORT = int(os.environ.get("FRESH_HTTP_PORT", "18080"))
HTTPS_PORT = int(os.environ.get("FRESH_HTTPS_PORT", "18443"))
# What the new user installs first: the README's prerequisites. FRESH_PROVISION replays
# another set-up, e.g. an older README's package list on an older commit.
PROVISION = os.environ.get("FRESH_PROVISION", "scripts/provision.sh")
STEP_TIMEOUT = {"provision": 600, "make up": 1200, "smoke test": 60, "make clean": 300}
# Lines for the terminal summary.
SUMMARY: list[str] = []


@dataclass
class Step:
    name: str
    returncode: int
    output: str
    seconds: float

    @property
    def tail(self) -> str:
        return "\n".join(self.output.splitlines()[-40:])


@dataclass
class Fresh:
    """What the new user did and saw."""

    clone: Path
    base_image: str
    commit: str
    steps: dict[str, Step] = field(default_factory=dict)

    def step(self, name: str) -> Step:
        if name not in self.steps:
            pytest.fail(f"step {name!r} did not run (an earlier step failed)")
        return self.steps[name]

    def stack(self) -> ss.Stack:
        """The running fresh stack; fails the test if `make up` did not succeed."""
        up = self.step("make up")
        if up.returncode != 0:
            pytest.fail(f"make up failed (exit {up.returncode}):\n{up.tail}")
        values = ss.read_env_file(self.clone / ".env")
        return ss.Stack(
            user=values.get("BASIC_AUTH_USER", "admin"),
            password=values["BASIC_AUTH_PASSWORD"],
            api_key=values["WALLET_API_KEYS"].split(",")[0],
            ca_file=self.clone / ".secrets" / "certs" / "ca.crt",
            https_port=HTTPS_PORT,
            http_port=HTTP_PORT,
            replicas=2,
        )


def base_image() -> str:
    if os.environ.get("FRESH_BASE_IMAGE"):
        return os.environ["FRESH_BASE_IMAGE"]
    airgap = ss.read_env_file(ROOT / ".airgap.env")
    return airgap.get("DEBIAN_IMAGE") or os.environ.get("DEBIAN_IMAGE") or UPSTREAM_BASE


# Debian 12's docker.io (Docker 20.10), which provision.sh installs in the container,
# speaks Docker API 1.41. Docker 29 engines refuse clients below 1.44 by default.
DEBIAN_CLI_API = (1, 41)


def host_cli_mount() -> list[str]:
    """`docker run` options that lend the host's docker CLI to the container when the
    host engine refuses Debian's older CLI. The engine is the host's anyway (its socket
    is mounted); everything else still comes from the README's set-up."""
    out = subprocess.run(
        ["docker", "version", "--format", "{{.Server.MinAPIVersion}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if tuple(int(p) for p in out.split(".")) <= DEBIAN_CLI_API:
        return []
    cli = shutil.which("docker")
    if cli is None:
        pytest.fail("no docker CLI on PATH")
    SUMMARY.append(f"host engine needs Docker API >= {out}: the host's docker CLI is lent")
    return ["-v", f"{os.path.realpath(cli)}:/usr/local/bin/docker:ro"]


def run(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        return proc.returncode, proc.stdout, time.monotonic() - started
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return 124, out + f"\n(timed out after {timeout:.0f}s)", time.monotonic() - started


def force_cleanup(container: str, clone: Path) -> None:
    """Whatever a failed run left behind: the project's containers, volumes and
    networks (by compose label), the container and the clone."""
    label = f"label=com.docker.compose.project={PROJECT}"
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", label],
                         capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    for kind in ("volume", "network"):
        names = subprocess.run(["docker", kind, "ls", "-q", "--filter", label],
                               capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
        if names:
            subprocess.run(["docker", kind, "rm", *names], capture_output=True, check=False)
    subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    shutil.rmtree(clone.parent, ignore_errors=True)


def project_containers() -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip

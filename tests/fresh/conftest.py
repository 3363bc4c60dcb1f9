"""`make fresh-check`: a new user's first `make up`, proven in a pristine container.

The session fixture `fresh` plays the new user on a machine where nothing was
installed by hand:

1. a fresh `git clone` of HEAD (FRESH_REF) into a temporary directory;
2. a pristine Debian container: the air-gapped base (DEBIAN_IMAGE from .airgap.env)
   where no registry answers, the pinned upstream image otherwise. The host's Docker
   socket is mounted, and the clone sits at the same absolute path as on the host,
   because compose's bind-mount paths are resolved by the host's engine;
3. inside it only what the README names: `scripts/provision.sh` (the OS packages of
   provision/debian-packages.txt), then `make up` with another compose project name
   and other ports, so it runs beside a developer's stack;
4. the smoke-test command `make up` printed, run exactly as printed;
5. the tests check, with certificate verification against the clone's new CA, that
   the wallet API answers through Traefik and the dashboard wants its password;
6. `make clean` inside the container; the fixture then removes the container and the
   clone (and, should anything have failed, the project's containers and volumes).

    FRESH_REF          commit to check (default HEAD)
    FRESH_PROVISION    the set-up command (default scripts/provision.sh)
    FRESH_BASE_IMAGE   override the base image
    FRESH_PROJECT      compose project name (default wallet-fresh)
    FRESH_HTTP_PORT / FRESH_HTTPS_PORT   published ports (default 18080 / 18443)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fresh_support as fs
import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fresh: make fresh-check (a pristine container)")


@pytest.fixture(scope="session")
def fresh() -> Iterator[fs.Fresh]:
    ref = os.environ.get("FRESH_REF", "HEAD")
    commit = subprocess.run(["git", "-C", str(fs.ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if fs.project_containers():
        pytest.fail(f"compose project {fs.PROJECT!r} already has containers: set FRESH_PROJECT")
    workdir = Path(tempfile.mkdtemp(prefix="wallet-fresh-"))
    clone = workdir / "wallet-stack"
    container = f"wallet-fresh-check-{os.getpid()}"
    result = fs.Fresh(clone=clone, base_image=fs.base_image(), commit=commit)
    fs.SUMMARY.append(f"commit {commit[:12]} in {result.base_image}, project {fs.PROJECT}, "
                   f"ports {fs.HTTP_PORT}/{fs.HTTPS_PORT}")  # fmt: skip

    def step(name: str, script: str) -> fs.Step:
        rc, out, seconds = fs.run(["docker", "exec", container, "bash", "-c", script],
                                fs.STEP_TIMEOUT[name])  # fmt: skip
        result.steps[name] = fs.Step(name, rc, out, seconds)
        fs.SUMMARY.append(f"{name}: exit {rc} after {seconds:.0f}s")
        return result.steps[name]

    started = time.monotonic()
    try:
        subprocess.run(
            ["git", "clone", "--quiet", "--no-hardlinks", str(fs.ROOT), str(clone)], check=True
        )
        subprocess.run(
            ["git", "-C", str(clone), "checkout", "--quiet", "--detach", commit], check=True
        )
        rc, out, _ = fs.run(
            ["docker", "run", "-d", "--name", container, "--network", "host",
             "-v", "/var/run/docker.sock:/var/run/docker.sock",
             "-v", f"{clone}:{clone}", "-w", str(clone), *fs.host_cli_mount(),
             "-e", f"COMPOSE_PROJECT_NAME={fs.PROJECT}", "-e", f"HTTP_PORT={fs.HTTP_PORT}",
             "-e", f"HTTPS_PORT={fs.HTTPS_PORT}", "-e", "DEBIAN_FRONTEND=noninteractive",
             result.base_image, "sleep", "3600"],
            timeout=120,
        )  # fmt: skip
        if rc != 0:
            pytest.fail(f"cannot start {result.base_image}: {out}")
        # The README's set-up, as a new user on Debian types it.
        if step("provision", fs.PROVISION).returncode == 0:
            up = step("make up", "make up")
            if up.returncode == 0:
                printed = up.output.rstrip().splitlines()[-1].strip()
                smoke = step("smoke test", printed)
                smoke.output = f"$ {printed}\n{smoke.output}"
        yield result
    finally:
        try:
            if "make up" in result.steps:
                clean = step("make clean", "make clean")
                left = fs.project_containers()
                if clean.returncode != 0 or left:
                    raise AssertionError(
                        f"make clean exited {clean.returncode}, containers left: {left}\n"
                        f"{clean.tail}"
                    )
        finally:
            fs.force_cleanup(container, clone)
            fs.SUMMARY.append(f"fresh-check: {time.monotonic() - started:.0f}s in all")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if fs.SUMMARY:
        terminalreporter.section("fresh-check")
        for line in fs.SUMMARY:
            terminalreporter.write_line(line)

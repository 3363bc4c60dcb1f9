"""Upstream registry images or the air-gapped stand-ins: the explicit REGISTRY_MODE switch.

`scripts/airgap.sh --check` runs this (`python3 -m stackctl.registry check`, standard
library only, so it works before .venv exists: .ci/run calls it first thing). The Makefile's
`images` target and .ci/run act on the exit status.

REGISTRY_MODE (environment):

- ``auto`` (default): one probe (`docker manifest inspect`, at most AIRGAP_PROBE_TIMEOUT
  seconds, 15 by default); no answer means the local stand-ins. Right for machines that may
  or may not reach a registry, but a registry that is only slow, or answers 429 (rate
  limit), looks exactly like no registry, and the machine quietly switches to the
  air-gapped build.
- ``upstream``: the registry is supposed to be there (GitHub runners: ci.yml sets this).
  The probe is retried (REGISTRY_PROBE_ATTEMPTS, 3 by default, with a growing pause) and a
  registry that still fails is one clear error line, never a switch to the stand-ins.
  `.airgap.env` must not exist then: the Makefile would export its stand-in images.
- ``airgap``: the stand-ins without probing (a machine known to be offline, or to test
  the air-gapped build on a machine that has a registry).

Exit status of `check`:

- 0: use the upstream images,
- 1: use the stand-ins, which need building (scripts/airgap.sh),
- 2: error (one line on stderr): forced upstream and the registry fails, `.airgap.env`
  with forced upstream, or an unknown REGISTRY_MODE,
- 3: use the stand-ins; `.airgap.env` is already there (auto or airgap mode).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MODES = ("auto", "upstream", "airgap")

UPSTREAM = 0
BUILD_STANDINS = 1
ERROR = 2
STANDINS_READY = 3


@dataclass(frozen=True)
class Probe:
    """One registry probe: did it answer, and if not, why (one short phrase)."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    code: int
    message: str


@dataclass(frozen=True)
class Settings:
    mode: str = "auto"
    probe_image: str = "debian:bookworm-slim"
    timeout: float = 15.0
    attempts: int = 3  # upstream mode only: auto mode probes once
    backoff: float = 5.0  # pause before retry n is backoff * n seconds

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            mode=(env.get("REGISTRY_MODE") or "auto").strip().lower(),
            probe_image=env.get("AIRGAP_PROBE_IMAGE") or cls.probe_image,
            timeout=float(env.get("AIRGAP_PROBE_TIMEOUT") or cls.timeout),
            attempts=max(1, int(env.get("REGISTRY_PROBE_ATTEMPTS") or cls.attempts)),
            backoff=float(env.get("REGISTRY_PROBE_BACKOFF") or cls.backoff),
        )


def classify(returncode: int, output: str) -> Probe:
    """Turn `docker manifest inspect`'s exit status and stderr into a Probe."""
    if returncode == 0:
        return Probe(True)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1][:200] if lines else f"exit {returncode}"
    lowered = output.lower()
    if "toomanyrequests" in lowered or "429" in lowered or "too many requests" in lowered:
        return Probe(False, f"rate-limited (429): {last}")
    return Probe(False, last)


def docker_probe(image: str, timeout: float) -> Probe:
    """Ask the registry for one manifest: the CLI talks to it directly, no engine needed."""
    docker = shutil.which("docker")
    if docker is None:
        return Probe(False, "no docker CLI on PATH")
    env = dict(os.environ, DOCKER_CLI_HINTS="false")
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [docker, "manifest", "inspect", image],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Probe(False, f"no answer within {timeout:g}s")
    return classify(proc.returncode, proc.stderr)


def decide(
    settings: Settings,
    airgap_env_exists: bool,
    probe: Callable[[], Probe],
    sleep: Callable[[float], None] = time.sleep,
) -> Decision:
    """What the machine uses, from the mode, `.airgap.env` and (when needed) probes."""
    mode = settings.mode
    if mode not in MODES:
        return Decision(ERROR, f"REGISTRY_MODE={mode!r} is not one of {', '.join(MODES)}")
    if mode == "airgap":
        if airgap_env_exists:
            return Decision(STANDINS_READY, "REGISTRY_MODE=airgap: stand-ins in .airgap.env")
        return Decision(BUILD_STANDINS, "REGISTRY_MODE=airgap: build the local stand-ins")
    if mode == "auto":
        if airgap_env_exists:
            return Decision(
                STANDINS_READY,
                "air-gapped stand-ins in use (.airgap.env; delete it to use upstream images)",
            )
        result = probe()
        if result.ok:
            return Decision(UPSTREAM, "registry reachable: upstream images can be pulled")
        return Decision(
            BUILD_STANDINS,
            f"registry unreachable ({result.reason}): use scripts/airgap.sh for local stand-ins",
        )
    # upstream: never the stand-ins
    if airgap_env_exists:
        return Decision(
            ERROR,
            "REGISTRY_MODE=upstream but .airgap.env exists (its stand-in images would be "
            "used): delete .airgap.env",
        )
    result = Probe(False, "not probed")
    for attempt in range(1, settings.attempts + 1):
        result = probe()
        if result.ok:
            return Decision(UPSTREAM, "registry reachable: upstream images can be pulled")
        if attempt < settings.attempts:
            sleep(settings.backoff * attempt)
    return Decision(
        ERROR,
        f"REGISTRY_MODE=upstream and the registry failed {settings.attempts} time(s) "
        f"(last: {result.reason}); not switching to the air-gapped stand-ins "
        "(REGISTRY_MODE=auto or airgap allows them)",
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackctl.registry", description=__doc__)
    parser.add_argument("command", choices=["check"])
    parser.add_argument(
        "--env-file", type=Path, required=True, help="the .airgap.env that make includes"
    )
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    try:
        settings = Settings.from_env(env)
    except ValueError as exc:
        print(f"registry: error: bad probe setting: {exc}", file=sys.stderr)
        return ERROR
    decision = decide(
        settings,
        args.env_file.exists(),
        lambda: docker_probe(settings.probe_image, settings.timeout),
    )
    if decision.code == ERROR:
        print(f"registry: error: {decision.message}", file=sys.stderr)
    else:
        print(f"registry: {decision.message}")
    return decision.code


if __name__ == "__main__":
    sys.exit(main())

"""REGISTRY_MODE: upstream images or the air-gapped stand-ins, and what a failure says."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from stackctl import REPO_ROOT, registry
from stackctl.registry import (
    BUILD_STANDINS,
    ERROR,
    STANDINS_READY,
    UPSTREAM,
    Probe,
    Settings,
    classify,
    decide,
)

OK = Probe(True)
RATE_LIMITED = Probe(False, "rate-limited (429): toomanyrequests")
SLOW = Probe(False, "no answer within 15s")


class Probes:
    """A scripted registry: answers in order, counts calls and pauses."""

    def __init__(self, *answers: Probe) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.pauses: list[float] = []

    def __call__(self) -> Probe:
        self.calls += 1
        return self.answers.pop(0)

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


def run(mode: str, airgap_env: bool, *answers: Probe) -> tuple[registry.Decision, Probes]:
    probes = Probes(*answers)
    return decide(Settings(mode=mode), airgap_env, probes, probes.sleep), probes


def test_auto_probes_once_and_falls_back_to_the_stand_ins() -> None:
    d, p = run("auto", False, SLOW)
    assert (d.code, p.calls) == (BUILD_STANDINS, 1)
    assert "no answer within 15s" in d.message
    d, p = run("auto", False, OK)
    assert (d.code, p.calls) == (UPSTREAM, 1)


def test_auto_keeps_existing_stand_ins_without_probing() -> None:
    d, p = run("auto", True)
    assert (d.code, p.calls) == (STANDINS_READY, 0)


def test_upstream_retries_then_fails_with_one_clear_line() -> None:
    d, p = run("upstream", False, RATE_LIMITED, SLOW, RATE_LIMITED)
    assert d.code == ERROR
    assert p.calls == 3 and p.pauses == [5.0, 10.0]
    assert "\n" not in d.message
    assert "REGISTRY_MODE=upstream" in d.message and "429" in d.message
    assert "not switching to the air-gapped stand-ins" in d.message


def test_upstream_survives_a_transient_429() -> None:
    d, p = run("upstream", False, RATE_LIMITED, OK)
    assert (d.code, p.calls) == (UPSTREAM, 2)


def test_upstream_refuses_an_existing_airgap_env() -> None:
    d, p = run("upstream", True)
    assert (d.code, p.calls) == (ERROR, 0)
    assert ".airgap.env" in d.message


def test_airgap_never_probes() -> None:
    assert run("airgap", False)[0].code == BUILD_STANDINS
    d, p = run("airgap", True)
    assert (d.code, p.calls) == (STANDINS_READY, 0)


def test_unknown_mode_is_an_error() -> None:
    d, p = run("sometimes", False)
    assert (d.code, p.calls) == (ERROR, 0)
    assert "auto, upstream, airgap" in d.message


def test_classify() -> None:
    assert classify(0, "").ok
    p = classify(1, "Error response from daemon: toomanyrequests: You have reached your pull rate")
    assert not p.ok and p.reason.startswith("rate-limited (429)")
    p = classify(1, "\nerror: dial tcp: lookup registry: no such host\n")
    assert p.reason == "error: dial tcp: lookup registry: no such host"
    assert classify(7, "").reason == "exit 7"


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "REGISTRY_MODE": " Upstream ",
            "AIRGAP_PROBE_TIMEOUT": "4",
            "REGISTRY_PROBE_ATTEMPTS": "0",
            "AIRGAP_PROBE_IMAGE": "x:1",
        }
    )
    assert (s.mode, s.timeout, s.attempts, s.probe_image) == ("upstream", 4.0, 1, "x:1")
    assert Settings.from_env({}).mode == "auto"


# ------------------------------------------------- the bash glue: scripts/airgap.sh --check


def _fake_docker(tmp_path: Path, stderr: str, rc: int) -> Path:
    """A `docker` on PATH that answers every call like a registry would, and logs it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker"
    lines = ["#!/bin/sh", f'echo "$*" >>"{tmp_path}/calls"', f"printf '%s\\n' '{stderr}' >&2"]
    script.write_text("\n".join([*lines, f"exit {rc}", ""]))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


def _check(tmp_path: Path, bindir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "AIRGAP_ENV_FILE": str(tmp_path / "airgap.env"),
        "REGISTRY_PROBE_BACKOFF": "0",
        **env,
    }
    return subprocess.run(
        [str(REPO_ROOT / "scripts" / "airgap.sh"), "--check"],
        capture_output=True, text=True, env=full, check=False, timeout=60,
    )  # fmt: skip


def _calls(tmp_path: Path) -> int:
    calls = tmp_path / "calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.mark.parametrize(
    ("mode", "rc", "calls"),
    [("auto", BUILD_STANDINS, 1), ("upstream", ERROR, 3), ("airgap", BUILD_STANDINS, 0)],
)
def test_airgap_check_with_a_rate_limiting_registry(
    tmp_path: Path, mode: str, rc: int, calls: int
) -> None:
    bindir = _fake_docker(tmp_path, "toomanyrequests: You have reached your pull rate limit", 1)
    proc = _check(tmp_path, bindir, REGISTRY_MODE=mode)
    assert proc.returncode == rc, proc.stderr
    assert _calls(tmp_path) == calls
    if rc == ERROR:
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("registry: error: REGISTRY_MODE=upstream")
        assert "429" in lines[0]


def test_airgap_check_with_a_working_registry(tmp_path: Path) -> None:
    bindir = _fake_docker(tmp_path, "", 0)
    for mode in ("auto", "upstream"):
        proc = _check(tmp_path, bindir, REGISTRY_MODE=mode)
        assert proc.returncode == UPSTREAM, proc.stderr
    assert _calls(tmp_path) == 2


def test_building_stand_ins_is_refused_in_upstream_mode(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(REPO_ROOT / "scripts" / "airgap.sh")],
        capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": os.environ["PATH"], "REGISTRY_MODE": "upstream",
             "AIRGAP_CACHE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "REGISTRY_MODE=upstream: not building" in proc.stderr
    assert not any(tmp_path.iterdir()), "it started work before refusing"

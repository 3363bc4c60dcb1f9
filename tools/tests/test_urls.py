"""`stackctl urls`: the lines `make up` ends with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackctl import envfile, urls


def test_default_port_has_no_suffix(tmp_path: Path) -> None:
    out = urls.lines(tmp_path, wallet=True, environ={})
    assert out[-1] == "  curl --cacert .secrets/certs/ca.crt https://wallet.localhost/status"
    assert any("https://traefik.localhost/dashboard/" in line for line in out)


def test_port_from_env_file_then_environment(tmp_path: Path) -> None:
    envfile.write(tmp_path / ".env", "HTTPS_PORT", "8443")
    assert urls.lines(tmp_path, wallet=True, environ={})[-1].endswith(
        "https://wallet.localhost:8443/status"
    )
    assert urls.lines(tmp_path, wallet=True, environ={"HTTPS_PORT": "9443"})[-1].endswith(
        "https://wallet.localhost:9443/status"
    )


def test_edge_only_prints_no_wallet_and_no_smoke_test(tmp_path: Path) -> None:
    out = urls.lines(tmp_path, wallet=False, environ={})
    assert not any("wallet.localhost" in line for line in out)


@pytest.mark.parametrize("bad", ["https", "0", "70000"])
def test_bad_port_is_one_line(tmp_path: Path, bad: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stackctl", "urls", "--root", str(tmp_path)],
        env={"HTTPS_PORT": bad, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"stackctl urls: error: HTTPS_PORT must be a port number, got '{bad}'\n"

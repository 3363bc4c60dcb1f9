"""`stackctl secrets` as `make secrets` runs it: a subprocess in the project venv."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml
from dotenv import dotenv_values

from stackctl import REPO_ROOT, envfile, htpasswd, tls

NAMES = [s.name for s in envfile.SETTINGS]


def run(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in NAMES and k != "FORCE_CERTS"}
    return subprocess.run(
        [sys.executable, "-m", "stackctl", "secrets", "--root", str(root)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_fresh_run_generates_everything_with_private_modes(tmp_path: Path) -> None:
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    values = dotenv_values(tmp_path / ".env")
    assert values["BASIC_AUTH_USER"] == "admin"
    assert len(values["BASIC_AUTH_PASSWORD"] or "") == 36
    assert len(values["REDIS_PASSWORD"] or "") == 48
    assert len(values["WALLET_API_KEYS"] or "") == 64
    assert len(values["REDIS_ADMIN_PASSWORD"] or "") == 48
    assert len(values["REDIS_EXPORTER_PASSWORD"] or "") == 48
    assert len(set(values.values())) == len(values), "every secret is its own"
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / ".secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / ".secrets" / "htpasswd").stat().st_mode) == 0o600
    assert htpasswd.is_current(
        tmp_path / ".secrets" / "htpasswd", "admin", values["BASIC_AUTH_PASSWORD"] or ""
    )
    # Secrets are never printed.
    for value in values.values():
        assert value and (value == "admin" or value not in proc.stdout + proc.stderr)


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    assert run(tmp_path).returncode == 0
    before = snapshot(tmp_path)
    proc = run(tmp_path)
    assert proc.returncode == 0
    assert snapshot(tmp_path) == before
    assert "generated" not in proc.stdout and "up to date" in proc.stdout


def test_supplied_values_win_and_are_kept(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# my settings\nexport BASIC_AUTH_USER=ops\nHTTPS_PORT=8443\nREDIS_PASSWORD=''\n"
    )
    proc = run(
        tmp_path, BASIC_AUTH_PASSWORD="s3cret pass!", WALLET_API_KEYS="k" * 20 + "," + "x" * 16
    )
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / ".env").read_text()
    assert text.startswith("# my settings\n") and "HTTPS_PORT=8443\n" in text
    values = dotenv_values(tmp_path / ".env")
    assert values["BASIC_AUTH_USER"] == "ops"
    assert values["BASIC_AUTH_PASSWORD"] == "s3cret pass!"
    assert values["WALLET_API_KEYS"] == "k" * 20 + "," + "x" * 16
    assert len(values["REDIS_PASSWORD"] or "") == 48  # empty counts as missing
    # The environment only wins while it is set; .env keeps the supplied value.
    assert run(tmp_path).returncode == 0
    assert dotenv_values(tmp_path / ".env")["BASIC_AUTH_PASSWORD"] == "s3cret pass!"
    line = (tmp_path / ".secrets" / "htpasswd").read_text()
    assert line.startswith("ops:$2y$10$")
    assert bcrypt.checkpw(
        b"s3cret pass!", line.strip().split(":", 1)[1].replace("$2y$", "$2b$").encode()
    )


def test_password_change_rewrites_htpasswd_in_place(tmp_path: Path) -> None:
    assert run(tmp_path).returncode == 0
    path = tmp_path / ".secrets" / "htpasswd"
    inode = path.stat().st_ino
    proc = run(tmp_path, BASIC_AUTH_PASSWORD="another-password")
    assert proc.returncode == 0
    assert path.stat().st_ino == inode
    assert htpasswd.is_current(path, "admin", "another-password")
    assert "restart traefik" in proc.stdout


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_PASSWORD", "p@ss/word", "REDIS_PASSWORD may only use URL-safe characters"),
        ("BASIC_AUTH_USER", "ad min", "BASIC_AUTH_USER may only use letters"),
        ("BASIC_AUTH_PASSWORD", "it's", "must not contain newlines, single quotes"),
        ("BASIC_AUTH_PASSWORD", "a\\b", "must not contain newlines, single quotes"),
        ("BASIC_AUTH_PASSWORD", "tab\there", "must not contain control characters"),
        ("WALLET_API_KEYS", "a" * 16 + ",," + "b" * 16, "must be comma-separated tokens"),
        ("WALLET_API_KEYS", "a" * 16 + ",abc", "tokens of at least 16 characters"),
        ("WALLET_API_KEYS", "a" * 15, "tokens of at least 16 characters"),
    ],
)
def test_bad_supplied_value_is_one_line_and_changes_nothing(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    assert run(tmp_path).returncode == 0
    before = snapshot(tmp_path)
    proc = run(tmp_path, **{name: value})
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stderr.startswith("stackctl secrets: error: ")
    assert snapshot(tmp_path) == before


def test_bad_value_on_a_fresh_directory_writes_nothing(tmp_path: Path) -> None:
    proc = run(tmp_path, REDIS_PASSWORD="bad value")
    assert proc.returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_missing_root_is_one_line(tmp_path: Path) -> None:
    proc = run(tmp_path / "nope")
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("is not a directory")
    assert proc.stderr.count("\n") == 1


def test_values_are_written_so_compose_reads_them_back(tmp_path: Path) -> None:
    """Unquoted when safe; single-quoted (taken literally by compose) otherwise."""
    envfile.write(tmp_path / ".env", "A", "abc-123,def")
    envfile.write(tmp_path / ".env", "B", "with space $HOME #x")
    assert (tmp_path / ".env").read_text() == "A=abc-123,def\nB='with space $HOME #x'\n"
    assert envfile.read(tmp_path / ".env") == {"A": "abc-123,def", "B": "with space $HOME #x"}


def test_every_routed_host_has_its_own_san() -> None:
    """Each Host() that compose or the file provider routes is in the certificate."""
    sources = [REPO_ROOT / "docker-compose.traefik.yml", REPO_ROOT / "docker-compose.yml"]
    sources += sorted((REPO_ROOT / "infra" / "traefik" / "dynamic").glob("*.yml"))
    routed: set[str] = set()
    for path in sources:
        text = yaml.safe_dump(yaml.safe_load(path.read_text()))
        routed |= set(re.findall(r"Host\(`([^`]+)`\)", text))
    assert routed, "no Host() rule found: the test would prove nothing"
    assert routed <= set(tls.HOSTS), routed - set(tls.HOSTS)

"""The checks `make restore` makes before it touches anything (the Docker part runs in
the compose e2e drill, tests/integration/stack/test_stack_backup.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackctl import backup


def _snapshot(tmp_path: Path, data: bytes = b"REDIS0010rest") -> Path:
    path = tmp_path / "redis-20261203T000000Z.rdb"
    path.write_bytes(data)
    backup.checksum_path(path).write_text(f"{backup.sha256_file(path)}  {path.name}\n")
    return path


def test_a_good_snapshot_verifies(tmp_path: Path) -> None:
    path = _snapshot(tmp_path)
    assert backup.verify(path) == backup.sha256_file(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes() + b"x"), "does not match"),
        (lambda p: backup.checksum_path(p).unlink(), "missing"),
        (lambda p: p.unlink(), "no such file"),
        (lambda p: backup.checksum_path(p).write_bytes(b"\xff\xfe"), "cannot be read"),
    ],
    ids=["changed", "no-checksum", "no-file", "checksum-not-text"],
)
def test_restore_refuses_before_changing_anything(tmp_path: Path, damage, message: str) -> None:
    path = _snapshot(tmp_path)
    damage(path)
    with pytest.raises(backup.BackupError, match=message):
        backup.verify(path)


def test_not_an_rdb_is_refused(tmp_path: Path) -> None:
    with pytest.raises(backup.BackupError, match="not a Redis RDB"):
        backup.verify(_snapshot(tmp_path, b"PK\x03\x04zip"))


def test_cli_error_is_one_line_and_docker_is_never_called(tmp_path: Path) -> None:
    path = _snapshot(tmp_path)
    path.write_bytes(b"REDIS-tampered")
    proc = subprocess.run(
        [sys.executable, "-m", "stackctl", "restore", str(path)],
        capture_output=True, text=True, check=False,
        env={"PATH": str(tmp_path)},  # no docker on PATH: reaching it would fail differently
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("stackctl restore: error: ") and proc.stderr.count("\n") == 1
    assert "does not match" in proc.stderr


def test_backup_into_a_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stackctl", "backup", "--dir", str(tmp_path / "no" / "deeper")],
        capture_output=True, text=True, check=False, env={"PATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("stackctl backup: error: ") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "no").exists()

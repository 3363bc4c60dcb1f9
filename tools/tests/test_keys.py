"""`stackctl keys` (make key) and the key definitions `make secrets` keeps, checked
against wallet-api's own reader of WALLET_API_KEYS_FILE."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from stackctl import envfile, keys

SERVICE_SRC = Path(__file__).resolve().parents[2] / "services" / "wallet-api" / "src"


def stackctl(*args: str, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("WALLET_API_KEYS", "ROOT_DIR")}
    return subprocess.run(
        [sys.executable, "-m", "stackctl", *args],
        env={**clean, "ROOT_DIR": str(root), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def app_keys(path: Path) -> list[tuple[str, str, frozenset[str], bytes]]:
    """The file as wallet-api reads it at start (its own code, in a subprocess)."""
    code = (
        "import sys; from wallet_api.keys import load_file\n"
        "for k in load_file(sys.argv[1]):\n"
        "    print(k.id, k.tenant, ','.join(sorted(k.scopes)), k.digest.hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env={**os.environ, "PYTHONPATH": str(SERVICE_SRC)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split() for line in out.splitlines()]
    return [(i, t, frozenset(s.split(",")), bytes.fromhex(d)) for i, t, s, d in rows]


def test_create_prints_the_token_once_and_keeps_only_its_digest(tmp_path: Path) -> None:
    proc = stackctl(
        "keys", "create", "--tenant", "acme", "--scopes", "wallets:read,money:move",
        "--description", "payments backend", root=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert proc.stdout == token + "\n", "stdout holds the token and nothing else"
    assert token.startswith("wsk_") and len(token) >= 40
    path = tmp_path / ".secrets" / "api-keys.yaml"
    text = path.read_text()
    assert token not in text and token not in proc.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    ((key_id, tenant, scopes, digest),) = app_keys(path)
    assert key_id.startswith("key_") and key_id in proc.stderr
    assert (tenant, scopes) == ("acme", frozenset({"wallets:read", "money:move"}))
    assert digest == hashlib.sha256(token.encode()).digest()
    assert "payments backend" in stackctl("keys", "list", root=tmp_path).stdout


def test_keys_are_added_revoked_and_listed_without_secrets(tmp_path: Path) -> None:
    tokens = []
    for tenant in ("acme", "acme", "globex"):
        proc = stackctl(
            "keys", "create", "--tenant", tenant, "--scopes", "wallets:read", root=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        tokens.append(proc.stdout.strip())
    path = tmp_path / ".secrets" / "api-keys.yaml"
    ids = [k[0] for k in app_keys(path)]
    assert len(set(ids)) == 3
    listed = stackctl("keys", "list", root=tmp_path).stdout
    assert [line.split()[0] for line in listed.splitlines()] == ids
    assert not any(t in listed for t in tokens) and "sha256" not in listed
    proc = stackctl("keys", "revoke", ids[0], root=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [k[0] for k in app_keys(path)] == ids[1:]
    # Refusals: one line, exit 1, the file unchanged.
    before = path.read_bytes()
    for args in (
        ("revoke", "key_nope"),
        ("create", "--tenant", "a:b", "--scopes", "wallets:read"),
        ("create", "--tenant", "acme", "--scopes", "wallets:read,money:steal"),
        ("create", "--tenant", "acme", "--scopes", ""),
    ):
        proc = stackctl("keys", *args, root=tmp_path)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith("stackctl keys: error: ") and proc.stderr.count("\n") == 1
        assert proc.stdout == ""
    assert path.read_bytes() == before
    stackctl("keys", "revoke", ids[1], root=tmp_path)
    proc = stackctl("keys", "revoke", ids[2], root=tmp_path)
    assert proc.returncode == 1 and "the last key" in proc.stderr
    assert [k[0] for k in app_keys(path)] == [ids[2]]


def test_a_file_that_is_not_key_definitions_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "values.yaml"
    other.write_text("replicaCount: 2\n")
    proc = stackctl(
        "keys",
        "--file",
        str(other),
        "create",
        "--tenant",
        "a",
        "--scopes",
        "money:move",
        root=tmp_path,
    )
    assert proc.returncode == 1 and "not a key definitions file" in proc.stderr
    assert other.read_text() == "replicaCount: 2\n"


def test_make_secrets_keeps_the_development_keys_of_env_in_the_file(tmp_path: Path) -> None:
    """The file compose mounts: the digests of WALLET_API_KEYS (tenant `default`,
    every scope, the id wallet-api derives), next to the keys created by hand."""
    first = stackctl("secrets", "--root", str(tmp_path), root=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / ".secrets" / "api-keys.yaml"
    token = dotenv_values(tmp_path / ".env")["WALLET_API_KEYS"] or ""
    digest = hashlib.sha256(token.encode()).digest()
    assert app_keys(path) == [
        ("key_" + digest.hex()[:16], "default", frozenset(keys.SCOPES), digest)
    ]
    assert token not in path.read_text() and token not in first.stdout
    created = stackctl(
        "keys", "create", "--tenant", "acme", "--scopes", "money:move", root=tmp_path
    )
    acme = app_keys(path)[1]
    # A new development token replaces the old one; the created key stays.
    new_tokens = ["n" * 20, "m" * 24]
    proc = stackctl(
        "secrets", "--root", str(tmp_path), root=tmp_path, WALLET_API_KEYS=",".join(new_tokens)
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 added, 1 removed" in proc.stdout and "restart wallet-api" in proc.stdout
    got = app_keys(path)
    assert got[0] == acme
    assert {d for *_, d in got[1:]} == {hashlib.sha256(t.encode()).digest() for t in new_tokens}
    assert created.stdout.strip() not in path.read_text()
    again = stackctl("secrets", "--root", str(tmp_path), root=tmp_path)
    assert "api-keys.yaml: up to date" in again.stdout


def test_a_broken_definitions_file_stops_make_secrets_with_one_line(tmp_path: Path) -> None:
    (tmp_path / ".secrets").mkdir(mode=0o700)
    (tmp_path / ".secrets" / "api-keys.yaml").write_text("keys: [\n")
    proc = stackctl("secrets", "--root", str(tmp_path), root=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("stackctl secrets: error: ") and proc.stderr.count("\n") == 1


def test_scopes_are_wallet_apis() -> None:
    sys.path.insert(0, str(SERVICE_SRC))
    try:
        from wallet_api.keys import SCOPES
    finally:
        sys.path.remove(str(SERVICE_SRC))
    assert tuple(SCOPES) == keys.SCOPES


@pytest.mark.parametrize("raw", ["wallets:read", "money:move, wallets:read,money:move"])
def test_parse_scopes(raw: str) -> None:
    assert set(keys.parse_scopes(raw)) <= set(keys.SCOPES)


def test_secrets_refuses_the_tokens_wallet_api_refuses() -> None:
    """Compose gives wallet-api only the digests, so its own length check never sees
    a WALLET_API_KEYS token: `make secrets` applies the same minimum."""
    sys.path.insert(0, str(SERVICE_SRC))
    try:
        from wallet_api.keys import MIN_TOKEN_LENGTH
    finally:
        sys.path.remove(str(SERVICE_SRC))
    assert envfile.MIN_API_KEY_LENGTH == MIN_TOKEN_LENGTH

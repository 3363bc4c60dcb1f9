"""Backup and restore drill: move money, back up, wipe the Redis volume, restore; then
every balance equals the sum of its ledger and an idempotent replay still answers with
the original response."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest
import requests
import stack_support as ss

pytestmark = pytest.mark.stack
WALLET = "wallet.localhost"


def _make(*args: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=ss.ROOT, env=ss.subprocess_env(),
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, f"make {' '.join(args)}: {proc.stdout[-800:]}{proc.stderr[-800:]}"
    return proc.stdout


def _ledger_sum(stack: ss.Stack, http: requests.Session, wallet: str) -> tuple[int, int]:
    """(sum of signed ledger amounts, entries), paging through the history."""
    total, entries, cursor = 0, 0, None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = http.get(stack.url(WALLET, f"/wallets/{wallet}/transactions"), params=params,
                        headers=stack.bearer, timeout=ss.HTTP_TIMEOUT).json()  # fmt: skip
        for item in page["items"]:
            sign = 1 if item["type"] in ("deposit", "transfer_in") else -1
            total += sign * item["amount"]
            entries += 1
        cursor = page.get("next_cursor")
        if not cursor:
            return total, entries


def test_backup_wipe_restore_drill(stack: ss.Stack, http: requests.Session) -> None:
    run = uuid.uuid4().hex[:8]
    a, b = f"drill-a-{run}", f"drill-b-{run}"

    def post(path: str, body: dict[str, Any], key: str | None = None) -> requests.Response:
        headers = {**stack.bearer, **({"Idempotency-Key": key} if key else {})}
        return http.post(
            stack.url(WALLET, path), json=body, headers=headers, timeout=ss.HTTP_TIMEOUT
        )

    for w in (a, b):
        assert post("/wallets", {"currency": "EUR", "id": w}).status_code == 201
    keyed = post(f"/wallets/{a}/deposit", {"amount": 5000}, key=f"drill-{run}")
    assert keyed.status_code == 200
    for n in range(10):
        assert post(f"/wallets/{a}/deposit", {"amount": 100 + n}).status_code == 200
    assert post("/transfers", {"from": a, "to": b, "amount": 1234}).status_code == 201
    balances = {w: http.get(stack.url(WALLET, f"/wallets/{w}"), headers=stack.bearer,
                            timeout=ss.HTTP_TIMEOUT).json()["balance"] for w in (a, b)}  # fmt: skip

    out = _make("backup")
    snapshot = ss.ROOT / out.split("backup: ", 1)[1].split(" (", 1)[0]
    assert snapshot.is_file() and snapshot.with_name(snapshot.name + ".sha256").is_file()

    # Wipe: every Redis node (the HA stack's replicas and Sentinels too: a replica would
    # otherwise still hold the data) and its volume are gone; a fresh, empty Redis starts.
    nodes = {"redis": "redis-data"}
    if "docker-compose.ha.yml" in ss.COMPOSE_FILES:
        for name in (
            "redis-replica-1",
            "redis-replica-2",
            "sentinel-1",
            "sentinel-2",
            "sentinel-3",
        ):
            nodes[name] = f"{name}-data"
    ss.run(ss.compose_cmd("rm", "--stop", "--force", *nodes), timeout=120)
    ss.run(["docker", "volume", "rm", *(f"{ss.PROJECT}_{v}" for v in nodes.values())], timeout=60)
    ss.run(ss.compose_cmd("up", "-d", "--wait", *nodes), timeout=180)
    gone = ss.poll(
        "the wiped wallet is missing",
        lambda: http.get(
            stack.url(WALLET, f"/wallets/{a}"), headers=stack.bearer, timeout=ss.HTTP_TIMEOUT
        ),
        lambda r: r.status_code == 404,
        timeout=60,
    )
    assert gone.status_code == 404

    restored = _make("restore", f"FILE={snapshot}")
    assert "restored" in restored
    ss.poll(
        "the wallet is back through Traefik",
        lambda: http.get(
            stack.url(WALLET, f"/wallets/{a}"), headers=stack.bearer, timeout=ss.HTTP_TIMEOUT
        ),
        lambda r: r.status_code == 200,
        timeout=90,
    )
    for w, balance in balances.items():
        now = http.get(
            stack.url(WALLET, f"/wallets/{w}"), headers=stack.bearer, timeout=ss.HTTP_TIMEOUT
        ).json()
        assert now["balance"] == balance, (w, now, balance)
        assert _ledger_sum(stack, http, w)[0] == balance, w
    replay = post(f"/wallets/{a}/deposit", {"amount": 5000}, key=f"drill-{run}")
    assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json() == keyed.json()
    size = snapshot.stat().st_size
    for leftover in (snapshot, snapshot.with_name(snapshot.name + ".sha256")):
        leftover.unlink()
    ss.note(f"backup drill: {snapshot.name} ({size} bytes); after wipe and restore "
            f"{a}={balances[a]}, {b}={balances[b]} = their ledgers; keyed deposit replayed, not repaid")  # fmt: skip

"""Against real redis-server processes (marker `redis`, `make test_redis`): Sentinel
failover with replica acknowledgement, WAIT falling short, a full Redis, an
evicting policy, and batch isolation where EXEC really has no rollback.

Every server is a child process started here and stopped by PID.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from devtools.local_servers import RedisServer, api_server, redis_server, sentinel_server
from tests.helpers import ACTOR, ref
from wallet_api.domain.ledger import EntryType
from wallet_api.domain.operations import Applied, Failed, MoneyOp, TransferApplied
from wallet_api.service import render
from wallet_api.store import OutcomeUnknown, WalletStore, ledger_key

pytestmark = pytest.mark.redis
KEY = "ha-test-key-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}
MASTER = "wallet"
SERVICE_DIR = Path(__file__).resolve().parents[1]


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=5)


def _wait_for(what: str, check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not true after {timeout}s"
        time.sleep(0.05)


def _online_replicas(primary: RedisServer) -> int:
    info = _client(primary).info("replication")
    return sum(1 for k, v in info.items() if k.startswith("slave") and v.get("state") == "online")


def _create(base: str, wallet_id: str) -> None:
    r = requests.post(
        f"{base}/wallets", json={"currency": "EUR", "id": wallet_id}, headers=HEADERS, timeout=10
    )
    assert r.status_code == 201, r.text


def _ledger_ids(base: str, wallet_id: str) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = requests.get(
            f"{base}/wallets/{wallet_id}/transactions", params=params, headers=HEADERS, timeout=10
        ).json()
        ids += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def _balance(base: str, wallet_id: str) -> int:
    r = requests.get(f"{base}/wallets/{wallet_id}", headers=HEADERS, timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["balance"])


@dataclass
class Deposits:
    """Clients depositing 1 cent each, every deposit with its own Idempotency-Key and
    retried with that key (connection errors, 503) until it gets a definitive answer."""

    base: str
    wallet_id: str
    acked: dict[str, str] = field(default_factory=dict)  # key -> transaction id
    answers: Counter[str] = field(default_factory=Counter)
    acked_at: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, http: requests.Session, budget_s: float = 60) -> None:
        key = uuid.uuid4().hex
        deadline = time.monotonic() + budget_s
        while True:
            assert time.monotonic() < deadline, f"deposit {key}: no definitive answer"
            try:
                r = http.post(
                    f"{self.base}/wallets/{self.wallet_id}/deposit",
                    json={"amount": 1},
                    headers={**HEADERS, "Idempotency-Key": key},
                    timeout=15,
                )
            except requests.RequestException as exc:
                with self.lock:
                    self.answers[type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            kind = r.json().get("type", "").rsplit(":", 1)[-1] if r.status_code >= 400 else ""
            with self.lock:
                self.answers[f"{r.status_code} {kind}".strip()] += 1
            if r.status_code == 200:
                with self.lock:
                    self.acked[key] = r.json()["transaction"]["id"]
                    self.acked_at.append(time.monotonic())
                return
            assert r.status_code == 503, (r.status_code, r.text)  # never a 500
            time.sleep(0.05)

    def run(self, clients: int, stop: threading.Event, minimum: int) -> list[threading.Thread]:
        def client() -> None:
            http = requests.Session()
            done = 0
            while done < minimum or not stop.is_set():
                self.one(http)
                done += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        return threads

    def longest_gap(self, after: float) -> float:
        times = sorted(t for t in self.acked_at if t >= after - 30)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@contextlib.contextmanager
def _sentinel_stack() -> Iterator[tuple[list[RedisServer], list[RedisServer]]]:
    """A primary, two replicas (AOF appendfsync always everywhere) and 3 Sentinels."""
    ha = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "5")
    with redis_server("always", *ha) as primary:
        replica_args = (*ha, "--replicaof", "127.0.0.1", str(primary.port))
        with (
            redis_server("always", *replica_args) as r1,
            redis_server("always", *replica_args) as r2,
        ):
            _wait_for(
                "both replicas in sync and counted good (min-replicas-to-write)",
                lambda: _client(primary).info("replication").get("min_slaves_good_slaves") == 2,
            )
            with (
                sentinel_server(MASTER, primary.port) as s1,
                sentinel_server(MASTER, primary.port) as s2,
                sentinel_server(MASTER, primary.port) as s3,
            ):
                _wait_for(
                    "the Sentinels know each other",
                    lambda: all(
                        _client(s).sentinel_master(MASTER)["num-other-sentinels"] == 2
                        for s in (s1, s2, s3)
                    ),
                )
                yield [primary, r1, r2], [s1, s2, s3]


def _sentinel_env(sentinels: list[RedisServer]) -> dict[str, str]:
    return {
        "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in sentinels),
        "REDIS_MASTER_NAME": MASTER,
        "REDIS_TIMEOUT_SECONDS": "1",
        "REDIS_WAIT_TIMEOUT_MS": "500",
    }


def test_sigkill_of_the_primary_loses_no_acknowledged_deposit() -> None:
    """8 clients deposit through Sentinel while the primary is SIGKILLed: after the
    failover, balance = acknowledged deposits = ledger entries."""
    with (
        _sentinel_stack() as (nodes, sentinels),
        api_server(
            "redis://127.0.0.1:1/0", KEY, extra_env=_sentinel_env(sentinels), replica_id="ha"
        ) as api,
    ):
        primary = nodes[0]
        _create(api.url, "ha")
        deposits = Deposits(api.url, "ha")
        stop = threading.Event()
        threads = deposits.run(clients=8, stop=stop, minimum=5)
        _wait_for("load under way", lambda: len(deposits.acked) >= 100)
        killed_at = time.monotonic()
        os.kill(primary.proc.pid, signal.SIGKILL)
        _wait_for(
            "a replica promoted",
            lambda: (
                _client(sentinels[0]).sentinel_get_master_addr_by_name(MASTER)[1] != primary.port
            ),
        )
        promoted_at = time.monotonic()
        _wait_for("deposits acknowledged again", lambda: deposits.acked_at[-1] > promoted_at)
        acked_before_stop = len(deposits.acked)
        _wait_for(
            "more load after the failover", lambda: len(deposits.acked) > acked_before_stop + 100
        )
        stop.set()
        for t in threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in threads)
        balance = _balance(api.url, "ha")
        ids = _ledger_ids(api.url, "ha")
        assert balance == len(deposits.acked) == len(ids), (balance, len(deposits.acked), len(ids))
        assert set(ids) == set(deposits.acked.values())  # nothing lost, nothing doubled
        assert deposits.answers["503 outcome-unknown"] + deposits.answers["503 redis-unavailable"]
        assert not [a for a in deposits.answers if a.startswith("5") and not a.startswith("503")]
        print(
            f"\nsentinel failover (SIGKILL primary): acknowledged={len(deposits.acked)} "
            f"balance={balance} ledger={len(ids)} "
            f"promoted_after_s={promoted_at - killed_at:.2f} "
            f"longest_gap_between_acks_s={deposits.longest_gap(killed_at):.2f} "
            f"answers={dict(deposits.answers)}"
        )


def test_wait_short_of_replicas_is_never_a_success() -> None:
    """A replica that stops acknowledging: deposits are 503 outcome-unknown (their
    commit is on the primary only), replays too; once it is back, the same keys
    replay the deposits, each applied once."""
    with (
        redis_server() as primary,
        redis_server("always", "--replicaof", "127.0.0.1", str(primary.port)) as replica,
    ):
        _wait_for("replica in sync", lambda: _online_replicas(primary) == 1)
        env = {"REDIS_MIN_REPLICAS_ACK": "1", "REDIS_WAIT_TIMEOUT_MS": "300"}
        with api_server(primary.url, KEY, extra_env=env) as api:
            _create(api.url, "w")
            url = f"{api.url}/wallets/w/deposit"
            first = {**HEADERS, "Idempotency-Key": "first"}
            assert requests.post(url, json={"amount": 10}, headers=first, timeout=10).ok
            os.kill(replica.proc.pid, signal.SIGSTOP)
            try:
                second = {**HEADERS, "Idempotency-Key": "second"}
                for headers, amount in ((second, 5), (second, 5), (first, 10)):
                    r = requests.post(url, json={"amount": amount}, headers=headers, timeout=10)
                    assert r.status_code == 503, r.text
                    assert r.json()["type"].endswith(":outcome-unknown")
            finally:
                os.kill(replica.proc.pid, signal.SIGCONT)
            r = requests.post(url, json={"amount": 5}, headers=second, timeout=10)
            assert r.status_code == 200 and r.headers["Idempotent-Replayed"] == "true"
            assert _balance(api.url, "w") == 15
            assert _client(replica).hget("w:{w:w}", "balance") == b"15"


def test_a_full_redis_refuses_money_with_storage_full_and_reads_go_on() -> None:
    with (
        redis_server("always", "--maxmemory", "4mb", "--maxmemory-policy", "noeviction") as rs,
        api_server(rs.url, KEY) as api,
    ):
        _create(api.url, "w")
        url = f"{api.url}/wallets/w/deposit"
        keyed = {**HEADERS, "Idempotency-Key": "before"}
        assert requests.post(url, json={"amount": 7}, headers=keyed, timeout=10).ok
        filler = _client(rs)
        n = 0
        # Fill it up the way a busy ledger would, until a write is refused.
        while n < 20_000:
            try:
                filler.set(f"filler:{n}", "x" * 2048)
            except redis.exceptions.OutOfMemoryError:
                break
            n += 1
        assert 0 < n < 20_000
        # A Redis just at its limit drifts back under it on its own: a refused write
        # frees its query buffer and the server shrinks idle clients' buffers in the
        # background, so a later small write could fit again (CI saw a wallet created
        # here). Pin the limit 256 KiB below what is used, so it stays full until the
        # fillers (~4 MB) are deleted below.
        used = int(filler.info("memory")["used_memory"])
        filler.config_set("maxmemory", used - 256 * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            filler.set("probe", "x")
        r = requests.post(url, json={"amount": 5}, headers=HEADERS, timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["type"] == "urn:wallet-stack:problem:storage-full"
        assert r.headers["Retry-After"] == "5"
        r = requests.post(f"{api.url}/wallets", json={"currency": "EUR"}, headers=HEADERS)
        assert r.status_code == 503 and r.json()["type"].endswith(":storage-full")
        assert _balance(api.url, "w") == 7  # nothing changed, reads work
        assert len(_ledger_ids(api.url, "w")) == 1
        again = requests.post(url, json={"amount": 7}, headers=keyed, timeout=10)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert requests.get(f"{api.url}/readyz", timeout=5).status_code == 200
        filler.delete(*[f"filler:{i}" for i in range(n)])
        assert requests.post(url, json={"amount": 5}, headers=HEADERS, timeout=10).ok
        assert _balance(api.url, "w") == 12


def test_an_evicting_policy_stops_the_start_and_unreadies_a_running_replica() -> None:
    with redis_server("always", "--maxmemory-policy", "volatile-lru") as rs:
        conf = SERVICE_DIR / "gunicorn.conf.py"
        proc = subprocess.run(
            [sys.executable, "-m", "gunicorn", "-c", str(conf), "--check-config"],
            env={**os.environ, "WALLET_API_KEYS": KEY, "REDIS_URL": rs.url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            "wallet-api: configuration error: Redis maxmemory-policy is 'volatile-lru': it may "
            "evict idempotency records or ledger entries (a retry would then pay twice); set "
            "maxmemory-policy noeviction\n"
        )
        _client(rs).config_set("maxmemory-policy", "noeviction")
        with api_server(rs.url, KEY) as api:
            assert requests.get(f"{api.url}/readyz", timeout=5).status_code == 200
            _client(rs).config_set("maxmemory-policy", "allkeys-lru")  # changed at run time
            r = requests.get(f"{api.url}/readyz", timeout=5)
            assert r.status_code == 503 and "allkeys-lru" in r.json()["detail"]
            _client(rs).config_set("maxmemory-policy", "noeviction")
            assert requests.get(f"{api.url}/readyz", timeout=5).status_code == 200


def test_63_ops_succeed_beside_one_whose_write_fails_inside_exec() -> None:
    """On a real Redis, EXEC runs every command and keeps the ones that worked: the
    op whose ledger key is of the wrong type is outcome-unknown, the 63 others are
    applied and their ledgers balance."""
    with redis_server() as rs:
        store = WalletStore(_client(rs))
        wallets = [f"w{n}" for n in range(8)]
        for wallet_id in [*wallets, "bad"]:
            store.create_wallet(ref(wallet_id), "EUR")
        _client(rs).set(ledger_key(ref("bad")), "not a sorted set")
        ops = [MoneyOp(EntryType.DEPOSIT, wallets[n % 8], n + 1, actor=ACTOR) for n in range(63)]
        ops.insert(40, MoneyOp(EntryType.DEPOSIT, "bad", 5, actor=ACTOR))
        outcomes = store.commit(ops, render)
        bad = outcomes.pop(40)
        assert isinstance(bad, Failed) and isinstance(bad.error, OutcomeUnknown)
        assert all(isinstance(o, Applied | TransferApplied) for o in outcomes)
        for n, wallet_id in enumerate(wallets):
            wallet = store.get_wallet(ref(wallet_id))
            entries, _ = store.history(ref(wallet_id), before_seq=None, limit=100)
            want = sum(k + 1 for k in range(63) if k % 8 == n)
            assert wallet is not None and wallet.balance == want == sum(e.amount for e in entries)

"""Real redis-server, two gunicorn "replicas" (2 workers each), client processes
with threads: money is conserved and never negative under contention."""

from __future__ import annotations

import multiprocessing
import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from devtools.local_servers import api_server, redis_server

pytestmark = pytest.mark.redis
KEY = "concurrency-test-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
PROCESSES, THREADS, OPS = 3, 8, 40


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[str]]:
    with (
        redis_server() as redis,
        api_server(redis.url, KEY, replica_id="a") as a,
        api_server(redis.url, KEY, replica_id="b") as b,
    ):
        yield [a.url, b.url]


def _create(base: str, currency: str = "EUR") -> str:
    r = requests.post(f"{base}/wallets", json={"currency": currency}, headers=HEADERS, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _ledger(base: str, wallet_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = requests.get(
            f"{base}/wallets/{wallet_id}/transactions", params=params, headers=HEADERS, timeout=10
        ).json()
        entries += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return list(reversed(entries))  # oldest first


def assert_ledger_consistent(base: str, wallet_id: str) -> int:
    """seq is 1..n with no gap, every balance_after >= 0 and follows from the amounts."""
    balance = 0
    entries = _ledger(base, wallet_id)
    for expected_seq, entry in enumerate(entries, start=1):
        assert entry["seq"] == expected_seq
        credit = entry["type"] in ("deposit", "transfer_in")
        balance += entry["amount"] if credit else -entry["amount"]
        assert entry["balance_after"] == balance, entry
        assert balance >= 0, entry
    wallet = requests.get(f"{base}/wallets/{wallet_id}", headers=HEADERS, timeout=10).json()
    assert wallet["balance"] == balance
    return balance


def _hammer_hot_wallet(args: tuple[list[str], str, int]) -> list[tuple[str, int, str]]:
    """One client process: THREADS threads, OPS ops each; returns acknowledged ops."""
    urls, wallet_id, seed = args
    acked: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def thread(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        session = requests.Session()
        for i in range(OPS):
            kind = "deposit" if rng.random() < 0.55 else "withdraw"
            amount = rng.randint(1, 500)
            base = urls[(n + i) % len(urls)]
            r = session.post(
                f"{base}/wallets/{wallet_id}/{kind}",
                json={"amount": amount},
                headers=HEADERS,
                timeout=30,
            )
            assert r.status_code in (200, 409), (r.status_code, r.text)
            if r.status_code == 200:
                with lock:
                    acked.append((kind, amount, r.json()["transaction"]["id"]))
            else:
                assert r.json()["type"].endswith("insufficient-funds")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(thread, range(THREADS)))
    return acked


def test_hot_wallet_balance_equals_acknowledged_operations(replicas: list[str]) -> None:
    wallet_id = _create(replicas[0])
    requests.post(
        f"{replicas[0]}/wallets/{wallet_id}/deposit",
        json={"amount": 1000},
        headers=HEADERS,
        timeout=10,
    )
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # observe the balance while the load runs
        while not stop.is_set():
            samples.append(
                requests.get(
                    f"{replicas[1]}/wallets/{wallet_id}", headers=HEADERS, timeout=10
                ).json()["balance"]
            )

    sampler = threading.Thread(target=sample)
    sampler.start()
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = pool.map(_hammer_hot_wallet, [(replicas, wallet_id, s) for s in range(PROCESSES)])
    stop.set()
    sampler.join()

    acked = [op for result in results for op in result]
    expected = 1000 + sum(a if k == "deposit" else -a for k, a, _ in acked)
    balance = assert_ledger_consistent(replicas[0], wallet_id)
    assert balance == expected
    assert len({tx for _, _, tx in acked}) == len(acked)
    assert len(_ledger(replicas[0], wallet_id)) == len(acked) + 1
    assert samples and min(samples) >= 0
    withdrawals = sum(1 for k, _, _ in acked if k == "withdraw")
    print(
        f"\nhot wallet: {len(acked)} acknowledged ({withdrawals} withdrawals), "
        f"final balance {balance}, {len(samples)} samples"
    )


def test_transfers_conserve_money(replicas: list[str]) -> None:
    wallets = [_create(replicas[0]) for _ in range(6)]
    for w in wallets:
        requests.post(
            f"{replicas[0]}/wallets/{w}/deposit",
            json={"amount": 10_000},
            headers=HEADERS,
            timeout=10,
        )
    outcomes: dict[int, int] = {}
    lock = threading.Lock()

    def thread(n: int) -> None:
        rng = random.Random(n)
        session = requests.Session()
        for i in range(OPS):
            src, dst = rng.sample(wallets, 2)
            r = session.post(
                f"{replicas[(n + i) % 2]}/transfers",
                json={"from": src, "to": dst, "amount": rng.randint(1, 4000)},
                headers={**HEADERS, "Idempotency-Key": uuid.uuid4().hex},
                timeout=30,
            )
            # 503 = contention retries exhausted: allowed, but must change nothing
            assert r.status_code in (201, 409, 503), r.text
            with lock:
                outcomes[r.status_code] = outcomes.get(r.status_code, 0) + 1

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(thread, range(16)))
    total = sum(assert_ledger_consistent(replicas[0], w) for w in wallets)
    assert total == 6 * 10_000
    assert outcomes.get(201, 0) > outcomes.get(503, 0)
    print(f"\ntransfers: {outcomes}, total money {total}")


def test_one_idempotency_key_across_replicas_moves_money_once(replicas: list[str]) -> None:
    wallet_id = _create(replicas[0])
    key = uuid.uuid4().hex

    def call(i: int) -> requests.Response:
        return requests.post(
            f"{replicas[i % 2]}/wallets/{wallet_id}/deposit",
            json={"amount": 77},
            headers={**HEADERS, "Idempotency-Key": key},
            timeout=30,
        )

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(call, range(12)))
    firsts = [
        r for r in responses if r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(firsts) == 1
    for r in responses:
        assert r.status_code == 409 or r.json() == firsts[0].json()
    assert assert_ledger_consistent(replicas[0], wallet_id) == 77


def test_metrics_aggregate_workers_and_group_by_route(replicas: list[str]) -> None:
    for _ in range(10):
        requests.get(f"{replicas[0]}/status", timeout=10)
    text = requests.get(f"{replicas[0]}/metrics", timeout=10).text
    counts = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("flask_http_request_duration_seconds_count")
        and 'url_rule="/status"' in line
    ]
    assert counts and sum(counts) >= 10
    assert "wallet_operations_total" in text
    assert "/wallets/<wallet_id>/deposit" in text

"""The cross-tenant hammer: two tenants move money concurrently through every
replica, each on its own wallets and, all along, on the other tenant's -- and on
wallets of the same ids in both tenants. Afterwards not one foreign wallet was
touched, every ledger entry carries the key id of its own tenant's key, and each
tenant's books balance to the cent."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from containers_support import (
    Op,
    Replicas,
    Result,
    auth,
    create_wallet,
    read_ledger,
    reconcile,
    run_load,
    send,
    session,
)
from containers_support import report as print_report

if TYPE_CHECKING:  # conftest is pytest's to import, not ours
    from conftest import Stack

pytestmark = pytest.mark.containers

THREADS_PER_TENANT = 8
HAMMER_SECONDS = 6.0  # every thread keeps going this long (its plan is longer)
PLAN_LENGTH = 2_000
OWN_WALLETS = 4


def _plans(seed: int, own: list[str], foreign: list[str]) -> list[list[Op]]:
    """A third of each thread's ops name the other tenant's wallets: reads are done
    by the prober, these are deposits, withdrawals and transfers both ways."""
    plans = []
    for t in range(THREADS_PER_TENANT):
        rng = random.Random(seed * 1000 + t)
        ops: list[Op] = []
        for _ in range(PLAN_LENGTH):
            roll = rng.random()
            if roll < 0.35:
                src, dst = rng.sample(own, 2)
                ops.append(Op("transfer", src, rng.randint(1, 400), target=dst))
            elif roll < 0.65:
                kind = "deposit" if rng.random() < 0.6 else "withdraw"
                ops.append(Op(kind, rng.choice(own), rng.randint(1, 300)))
            elif roll < 0.75:
                ops.append(Op("transfer", rng.choice(own), 5, target=rng.choice(foreign)))
            elif roll < 0.85:
                ops.append(Op("transfer", rng.choice(foreign), 5, target=rng.choice(own)))
            else:
                kind = "deposit" if rng.random() < 0.5 else "withdraw"
                ops.append(Op(kind, rng.choice(foreign), 5))
        plans.append(ops)
    return plans


def test_cross_tenant_hammer_touches_no_foreign_wallet(healthy_stack: Stack) -> None:
    stack = healthy_stack
    http = session()
    urls = stack.urls()
    tag = uuid.uuid4().hex[:6]
    alpha, beta = stack.api_keys[0], stack.beta_key
    tenants = {"alpha": alpha, "beta": beta}
    # Each tenant: wallets only it has, and wallets whose ids the other tenant uses too.
    wallets = {
        name: [f"{name[0]}{i}-{tag}" for i in range(OWN_WALLETS - 2)]
        + [f"same{i}-{tag}" for i in range(2)]
        for name in tenants
    }
    foreign = {  # the other tenant's wallets this one does not have an own wallet of
        "alpha": [w for w in wallets["beta"] if w not in wallets["alpha"]],
        "beta": [w for w in wallets["alpha"] if w not in wallets["beta"]],
    }
    funding: dict[str, list[Result]] = {}
    for name, key in tenants.items():
        for i, w in enumerate(wallets[name]):
            assert create_wallet(http, urls[i % len(urls)], key, wallet_id=w) == w
        replicas = Replicas(stack.urls)
        funding[name] = [send(http, replicas, Op("deposit", w, 5_000), key) for w in wallets[name]]
        assert all(r.status == 200 for r in funding[name])

    # Reads of the other tenant's wallets, all along: every one must be a 404.
    probe_statuses: Counter[str] = Counter()
    stop = threading.Event()

    def prober(name: str) -> None:
        s = session()
        key, n = tenants[name], 0
        while not stop.is_set():
            w = foreign[name][n % len(foreign[name])]
            for path in (f"/wallets/{w}", f"/wallets/{w}/transactions"):
                r = s.get(urls[n % len(urls)] + path, headers=auth(key), timeout=10)
                probe_statuses[f"{name} {r.status_code}"] += 1
            n += 1
        s.close()

    reports: dict[str, Any] = {}
    errors: list[BaseException] = []

    def hammer(name: str, seed: int) -> None:
        try:
            plans = _plans(seed, wallets[name], foreign[name])
            reports[name] = run_load(
                Replicas(stack.urls), plans, tenants[name], deadline_s=HAMMER_SECONDS
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=prober, args=(n,), daemon=True) for n in tenants]
    threads += [
        threading.Thread(target=hammer, args=(n, seed), daemon=True)
        for seed, n in enumerate(tenants, start=1)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads[2:]:
        t.join(timeout=HAMMER_SECONDS + 180)
    stop.set()
    for t in threads[:2]:
        t.join(timeout=30)
    seconds = time.monotonic() - started
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)

    summary: dict[str, Any] = {"replicas": len(urls), "seconds": round(seconds, 1)}
    for name, key in tenants.items():
        results = reports[name].results
        assert all(r.definitive for r in results), Counter(
            tuple(r.retry_reasons) for r in results if not r.definitive
        )
        own = set(wallets[name])
        naming_foreign = [
            r.op.wallet not in own or (r.op.target or r.op.wallet) not in own for r in results
        ]
        cross = [r for r, f in zip(results, naming_foreign, strict=True) if f]
        mine = [r for r, f in zip(results, naming_foreign, strict=True) if not f]
        # Every call naming a foreign wallet: 404 wallet-not-found, never money.
        assert cross and mine
        assert {r.status for r in cross} == {404}, Counter(r.status for r in cross)
        # Own books: every acknowledged op exactly once, nothing else (no foreign op landed).
        books = reconcile(http, urls, key, wallets[name], [*funding[name], *mine])
        # Every entry of this tenant's ledgers: this tenant's key id and a request id.
        entries = [e for w in wallets[name] for e in read_ledger(http, urls, key, w)]
        assert len(entries) == books.entries
        key_ids = Counter(e.get("key_id") for e in entries)
        assert set(key_ids) == {stack.key_ids[key]}, key_ids
        assert all(e.get("request_id") for e in entries)
        # And the wallets this tenant attacked do not exist for it (nothing was created).
        for w in foreign[name]:
            assert (
                http.get(f"{urls[0]}/wallets/{w}", headers=auth(key), timeout=10).status_code == 404
            )
        kinds = Counter((r.op.kind, r.status) for r in mine)
        assert kinds[("transfer", 201)] > 0 and kinds[("deposit", 200)] > 0, kinds
        summary[name] = {
            "threads": THREADS_PER_TENANT,
            "ops": len(results),
            "own_ops": len(mine),
            "own_acknowledged": sum(1 for r in mine if r.acked),
            "cross_tenant_attempts": len(cross),
            "cross_tenant_refused_404": sum(1 for r in cross if r.status == 404),
            "ledger_entries": books.entries,
            "entries_without_key_id": sum(1 for e in entries if not e.get("key_id")),
            "foreign_wallets_touched": 0,
            "lost": books.lost,
            "unexpected_entries": books.unexpected,
        }
    bad_probes = {k: v for k, v in probe_statuses.items() if not k.endswith(" 404")}
    assert not bad_probes, probe_statuses
    summary["foreign_reads_404"] = sum(probe_statuses.values())
    assert summary["foreign_reads_404"] > 0
    assert seconds >= HAMMER_SECONDS, "the hammer stopped early"
    print_report("tenants", summary)
    http.close()

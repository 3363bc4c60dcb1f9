"""Many clients, spread over the replicas, on one hot wallet, many spread wallets
and transfers between them -- then the books must balance to the cent, and each
replica's /metrics must tell the same story the clients saw."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from containers_support import (
    LOAD_SCALE,
    OPERATION_LABEL,
    ROUTE_RULE,
    LoadReport,
    Op,
    Replicas,
    auth,
    create_wallet,
    reconcile,
    run_load,
    scrape,
    select,
    send,
    session,
)
from containers_support import report as print_report

if TYPE_CHECKING:  # conftest is pytest's to import, not ours
    from conftest import Stack

pytestmark = pytest.mark.containers

THREADS = 12
OPS_PER_THREAD = 150 * LOAD_SCALE  # 1800 operations
SPREAD_WALLETS = 8
LOAD_DEADLINE_S = 90


def make_plans(
    seed: int, hot: str, spread: list[str], threads: int, per_thread: int
) -> list[list[Op]]:
    """A third of the threads hammer the hot wallet (deposits and withdrawals racing
    around zero); the rest mix deposits, withdrawals and transfers over all wallets."""
    everyone = [hot, *spread]
    plans = []
    for t in range(threads):
        rng = random.Random(seed * 1000 + t)
        ops = []
        for _ in range(per_thread):
            if t % 3 == 0:
                kind = "deposit" if rng.random() < 0.5 else "withdraw"
                ops.append(Op(kind, hot, rng.randint(1, 400)))
                continue
            roll = rng.random()
            if roll < 0.4:
                src, dst = rng.sample(everyone, 2)
                ops.append(Op("transfer", src, rng.randint(1, 1500), target=dst))
            else:
                kind = "deposit" if roll < 0.7 else "withdraw"
                ops.append(Op(kind, rng.choice(spread), rng.randint(1, 1000)))
        plans.append(ops)
    return plans


def fund(stack: Stack, wallets: list[str], amount: int) -> list:  # type: ignore[type-arg]
    http = session()
    replicas = Replicas(stack.urls)
    results = [send(http, replicas, Op("deposit", w, amount), stack.api_keys[0]) for w in wallets]
    assert all(r.status == 200 for r in results), [r.status for r in results]
    return results


def test_replicas_sharing_redis_keep_exact_books(healthy_stack: Stack) -> None:
    stack = healthy_stack
    http = session()
    key = stack.api_keys[0]
    urls = stack.urls()
    hot = create_wallet(http, urls[0], key)
    spread = [create_wallet(http, urls[i % len(urls)], key) for i in range(SPREAD_WALLETS)]
    # The hot wallet starts low, so its withdrawals race around zero from the start.
    funding = fund(stack, [hot], 300) + fund(stack, spread, 2_000)

    before = [scrape(http, u)[0] for u in urls]
    samples: list[int] = []
    stop = threading.Event()

    def sampler() -> None:  # watch the hot wallet's balance from every replica during the load
        s = session()
        for i in range(5_000):
            if stop.is_set():
                break
            r = s.get(f"{urls[i % len(urls)]}/wallets/{hot}", headers=auth(key), timeout=10)
            assert r.status_code == 200
            samples.append(r.json()["balance"])
            time.sleep(0.01)
        s.close()

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    plans = make_plans(1, hot, spread, THREADS, OPS_PER_THREAD)
    report = run_load(Replicas(stack.urls), plans, key, deadline_s=LOAD_DEADLINE_S)
    stop.set()
    watcher.join(timeout=30)
    after = [scrape(http, u) for u in urls]

    results = report.results
    assert len(results) == THREADS * OPS_PER_THREAD, "the load did not finish within its deadline"
    assert all(r.definitive for r in results), Counter(
        tuple(r.retry_reasons) for r in results if not r.definitive
    )
    books = reconcile(http, urls, key, [hot, *spread], [*funding, *results])
    assert samples and min(samples) >= 0

    # Under this load some withdrawals must have been refused, some transfers made,
    # or the test proves less than it claims.
    kinds = Counter((r.op.kind, r.status) for r in results)
    assert (
        kinds[("withdraw", 409)] > 0
        and kinds[("withdraw", 200)] > 0
        and kinds[("transfer", 201)] > 0
    ), kinds

    metrics = check_metrics(before, after, report, [hot, *spread])
    print_report(
        "concurrency",
        {
            **report.summary(),
            "replicas": len(urls),
            "threads": THREADS,
            "lost": books.lost,
            "unexpected_entries": books.unexpected,
            "ledger_entries": books.entries,
            "transfers": books.transfers,
            "total_money": books.total_balance,
            "hot_wallet_samples": len(samples),
            "hot_wallet_min_seen": min(samples),
            "by_kind_status": {f"{k}:{s}": n for (k, s), n in sorted(kinds.items())},
            "metrics": metrics,
        },
    )
    http.close()


def check_metrics(before, after, report: LoadReport, wallet_ids: list[str]) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The replicas' counters, summed, equal what the clients saw -- exactly.

    Every HTTP response a client received during the load was counted by the
    replica that sent it, before sending it (Flask after_request / the service
    layer). With no faults, no request is lost in flight, so for each
    (operation, outcome) the sum over replicas of the counter's increase equals
    the number of client-visible responses of that class:
      200/201 fresh -> ok, 200/201/409 with Idempotent-Replayed -> replayed,
      409 insufficient-funds -> refused, 409 idempotency-key-in-use -> key_in_use,
      503 contention -> not counted (the op raised before being counted).
    If a transport error happened (a request may have been served but not seen),
    the check degrades to bounds instead of guessing.
    """
    transport_errors = sum(r.transport_errors for r in report.results)
    seen_ops: Counter[tuple[str, str]] = Counter()
    seen_http: Counter[tuple[str, str]] = Counter()
    for res in report.results:
        op = OPERATION_LABEL[res.op.kind]
        for status, ptype, replayed in res.responses:
            seen_http[(ROUTE_RULE[res.op.kind], str(status))] += 1
            if replayed:
                seen_ops[(op, "replayed")] += 1
            elif status in (200, 201):
                seen_ops[(op, "ok")] += 1
            elif ptype == "insufficient-funds":
                seen_ops[(op, "refused")] += 1
            elif ptype == "idempotency-key-in-use":
                seen_ops[(op, "key_in_use")] += 1
            elif ptype == "idempotency-key-reused":
                seen_ops[(op, "key_reused")] += 1
            elif ptype == "wallet-not-found":
                seen_ops[(op, "not_found")] += 1
            # 503s are not counted by wallet_operations_total

    server_ops: Counter[tuple[str, ...]] = Counter()
    server_http: Counter[tuple[str, ...]] = Counter()
    for old, (new, text) in zip(before, after, strict=True):
        delta_ops = select(new, "wallet_operations_total", ("operation", "outcome"))
        delta_ops.subtract(select(old, "wallet_operations_total", ("operation", "outcome")))
        server_ops.update(delta_ops)
        delta_http = select(
            new, "flask_http_request_duration_seconds_count", ("url_rule", "status")
        )
        delta_http.subtract(
            select(old, "flask_http_request_duration_seconds_count", ("url_rule", "status"))
        )
        server_http.update(delta_http)
        check_label_cardinality(new, text, wallet_ids)

    money_ops = {(o, out) for (o, out) in server_ops if o in OPERATION_LABEL.values()}
    money_http = {k for k in server_http if k[0] in ROUTE_RULE.values()}
    if transport_errors == 0:
        for k in money_ops | set(seen_ops):
            assert server_ops[k] == seen_ops[k], (
                "wallet_operations_total",
                k,
                server_ops[k],
                seen_ops[k],
            )
        for k in money_http | set(seen_http):
            assert server_http[k] == seen_http[k], (
                "flask_http_request_duration_seconds_count",
                k,
                server_http[k],
                seen_http[k],
            )
    else:  # served-but-unseen requests can only add to the server's side
        for k in set(seen_ops):
            assert seen_ops[k] <= server_ops[k] <= seen_ops[k] + transport_errors, k
    watch_retries = 0.0
    for old, (new, _) in zip(before, after, strict=True):
        watch_retries += sum(select(new, "wallet_watch_retries_total", ("operation",)).values())
        watch_retries -= sum(select(old, "wallet_watch_retries_total", ("operation",)).values())
    return {
        "transport_errors": transport_errors,
        # WATCH conflicts between the replicas' (and workers') group commits, retried
        # inside the API: the optimistic-locking path was exercised, not just taken.
        "wallet_watch_retries_delta": int(watch_retries),
        "wallet_operations_total_delta": {
            f"{o}/{out}": int(v) for (o, out), v in sorted(server_ops.items()) if v
        },
        "http_count_delta": {
            f"{rule} {status}": int(v) for (rule, status), v in sorted(server_http.items()) if v
        },
    }


def check_label_cardinality(samples, text: str, wallet_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Request metrics are labelled by route pattern (url_rule), never by concrete path."""
    rules = set()
    for (name, labels), _ in samples.items():
        if name == "flask_http_request_duration_seconds_count":
            d = dict(labels)
            assert set(d) == {"method", "status", "url_rule"}, d
            rules.add(d["url_rule"])
    assert "/wallets/<wallet_id>/deposit" in rules and "/transfers" in rules, rules
    assert all(r == "None" or r.startswith("/") for r in rules), rules
    assert not any(r.startswith("/wallets/") and "<wallet_id>" not in r for r in rules), rules
    leaked = [w for w in wallet_ids if w in text]
    assert not leaked, f"wallet ids in /metrics: {leaked[:3]}"
    assert len(rules) <= 16, rules

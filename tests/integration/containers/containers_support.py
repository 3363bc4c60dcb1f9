"""Client side of the containers suite: retrying operations, load, ledger and metrics checks.

A money operation is sent with an Idempotency-Key and re-sent with the SAME key
(to any replica) on connection errors, timeouts, 502/503/504 and 409
idempotency-key-in-use, until a definitive answer or its attempt/time budget
runs out. The first definitive answer is the operation's outcome; its
transaction ids are what the ledger must contain exactly once.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

# Multiplies the operations per client thread of every load (e.g. 5 for a nightly run).
LOAD_SCALE = max(1, int(os.environ.get("CONTAINERS_LOAD_SCALE", "1")))
PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:wallet-stack:problem:"
RETRYABLE_STATUS = {502, 503, 504}
DEFINITIVE_STATUS = {200, 201, 404, 409, 422}
# service.py's operation labels: route -> wallet_operations_total{operation=...}
OPERATION_LABEL = {"deposit": "deposit", "withdraw": "withdrawal", "transfer": "transfer"}
ROUTE_RULE = {
    "deposit": "/wallets/<wallet_id>/deposit",
    "withdraw": "/wallets/<wallet_id>/withdraw",
    "transfer": "/transfers",
}


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never route 127.0.0.1 through a proxy from the environment
    return s


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def problem_type(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    t = body.get("type", "") if isinstance(body, dict) else ""
    return t.removeprefix(TYPE_PREFIX) if isinstance(t, str) else ""


# -- operations ------------------------------------------------------------------


@dataclass
class Op:
    kind: str  # deposit | withdraw | transfer
    wallet: str  # the wallet, or the transfer's source
    amount: int
    target: str | None = None
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def path(self) -> str:
        return "/transfers" if self.kind == "transfer" else f"/wallets/{self.wallet}/{self.kind}"

    @property
    def body(self) -> dict[str, Any]:
        if self.kind == "transfer":
            return {"from": self.wallet, "to": self.target, "amount": self.amount}
        return {"amount": self.amount}


@dataclass
class Result:
    op: Op
    status: int | None = None  # the definitive status, None if never reached
    body: dict[str, Any] | None = None
    replayed: bool = False  # the definitive answer was a replay of an earlier attempt
    attempts: int = 0
    retry_reasons: Counter[str] = field(default_factory=Counter)
    # every HTTP response seen: (status, problem type or "", replayed header)
    responses: list[tuple[int, str, bool]] = field(default_factory=list)
    transport_errors: int = 0

    @property
    def acked(self) -> bool:
        """Money moved (first time or as a replay of the attempt that moved it)."""
        return self.status in (200, 201)

    @property
    def definitive(self) -> bool:
        return self.status is not None

    def entry_ids(self) -> dict[str, str]:
        """wallet id -> ledger entry id this op must have written (if acked)."""
        assert self.body is not None
        if self.op.kind == "transfer":
            tid = self.body["id"]
            assert self.op.target is not None
            return {self.op.wallet: f"{tid}-out", self.op.target: f"{tid}-in"}
        return {self.op.wallet: self.body["transaction"]["id"]}

    def effects(self) -> dict[str, int]:
        """wallet id -> balance change of this op (if acked)."""
        if self.op.kind == "deposit":
            return {self.op.wallet: self.op.amount}
        if self.op.kind == "withdraw":
            return {self.op.wallet: -self.op.amount}
        assert self.op.target is not None
        return {self.op.wallet: -self.op.amount, self.op.target: self.op.amount}


class Replicas:
    """Where to send the next attempt: round robin over the replicas that are up."""

    def __init__(self, urls: Callable[[], list[str]]) -> None:
        self._urls = urls

    def pick(self, n: int) -> str | None:
        urls = self._urls()
        return urls[n % len(urls)] if urls else None


def send(
    http: requests.Session,
    replicas: Replicas,
    op: Op,
    api_key: str,
    *,
    start: int = 0,
    max_attempts: int = 60,
    budget_s: float = 45.0,
    timeout_s: float = 10.0,
) -> Result:
    """Send op until a definitive answer; the same Idempotency-Key on every attempt."""
    result = Result(op)
    deadline = time.monotonic() + budget_s
    headers = auth(api_key, **{"Idempotency-Key": op.key})
    delay = 0.02
    n = start
    while result.attempts < max_attempts and time.monotonic() < deadline:
        base = replicas.pick(n)
        n += 1
        if base is None:
            result.retry_reasons["no_replica"] += 1
        else:
            result.attempts += 1
            try:
                r = http.post(base + op.path, json=op.body, headers=headers, timeout=timeout_s)
            except requests.RequestException as exc:
                result.transport_errors += 1
                result.retry_reasons[type(exc).__name__] += 1
                http.close()  # drop pooled keep-alive connections to a dead peer
            else:
                ptype = problem_type(r) if r.status_code >= 400 else ""
                replayed = r.headers.get("Idempotent-Replayed") == "true"
                result.responses.append((r.status_code, ptype, replayed))
                if r.status_code in RETRYABLE_STATUS:
                    result.retry_reasons[f"{r.status_code} {ptype}".strip()] += 1
                elif r.status_code == 409 and ptype == "idempotency-key-in-use":
                    result.retry_reasons["409 idempotency-key-in-use"] += 1
                elif r.status_code in DEFINITIVE_STATUS:
                    result.status, result.body, result.replayed = r.status_code, r.json(), replayed
                    return result
                else:
                    raise AssertionError(
                        f"{op.kind} {op.path}: unexpected {r.status_code} {r.text}"
                    )
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.5)
    return result


@dataclass
class LoadReport:
    results: list[Result]
    seconds: float

    def acked(self) -> list[Result]:
        return [r for r in self.results if r.acked]

    def summary(self) -> dict[str, Any]:
        retries: Counter[str] = Counter()
        for r in self.results:
            retries.update(r.retry_reasons)
        statuses = Counter(r.status for r in self.results)
        return {
            "sent": len(self.results),
            "acknowledged": sum(1 for r in self.results if r.acked),
            "acknowledged_by_replay": sum(1 for r in self.results if r.acked and r.replayed),
            "refused": sum(1 for r in self.results if r.status == 409),
            "unresolved": sum(1 for r in self.results if not r.definitive),
            "attempts": sum(r.attempts for r in self.results),
            "retried_ops": sum(1 for r in self.results if r.attempts > 1),
            "retries": dict(sorted(retries.items())),
            "final_status": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "ops_per_s": round(len(self.results) / self.seconds, 1) if self.seconds else None,
            "seconds": round(self.seconds, 1),
        }


class Progress:
    """Definitive answers so far, with timestamps; lets a fault wait for "mid-load"."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.done = 0
        self.acked_at: list[float] = []

    def record(self, result: Result) -> None:
        with self._cond:
            self.done += 1
            if result.acked:
                self.acked_at.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, done: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.done >= done, timeout=timeout)

    def acked_between(self, start: float, end: float) -> int:
        with self._cond:
            return sum(1 for t in self.acked_at if start <= t <= end)


def run_load(
    replicas: Replicas,
    plans: Sequence[Sequence[Op]],
    api_key: str,
    *,
    deadline_s: float,
    progress: Progress | None = None,
    gate: tuple[int, threading.Event] | None = None,
    **send_kw: Any,
) -> LoadReport:
    """One thread per plan, each sending its ops in order; bounded by deadline_s overall.

    ``gate=(i, event)``: every thread waits (bounded) for event before its i-th op,
    so that a part of the load is guaranteed to run after a fault has been repaired.
    """
    results: list[Result] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s
    errors: list[BaseException] = []

    def worker(index: int, plan: Sequence[Op]) -> None:
        http = session()
        try:
            for i, op in enumerate(plan):
                if gate is not None and i == gate[0]:
                    gate[1].wait(timeout=max(0.0, stop_at - time.monotonic()))
                if time.monotonic() > stop_at:
                    return  # not sent: not in results
                res = send(http, replicas, op, api_key, start=index + i, **send_kw)
                with lock:
                    results.append(res)
                if progress is not None:
                    progress.record(res)
        except BaseException as exc:
            errors.append(exc)
        finally:
            http.close()

    started = time.monotonic()
    threads = [
        threading.Thread(target=worker, args=(i, p), daemon=True) for i, p in enumerate(plans)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=deadline_s + 120)
    assert not any(t.is_alive() for t in threads), "a load thread did not finish in time"
    if errors:
        raise errors[0]
    return LoadReport(results, time.monotonic() - started)


# -- wallets and ledgers ---------------------------------------------------------


def create_wallet(
    http: requests.Session,
    base: str,
    key: str,
    currency: str = "EUR",
    *,
    wallet_id: str | None = None,
) -> str:
    body = {"currency": currency, **({"id": wallet_id} if wallet_id else {})}
    r = http.post(f"{base}/wallets", json=body, headers=auth(key), timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def read_ledger(
    http: requests.Session, bases: Sequence[str], key: str, wallet_id: str
) -> list[dict[str, Any]]:
    """All entries, oldest first; pages are fetched from the replicas in turn."""
    entries: list[dict[str, Any]] = []
    cursor = None
    for page_no in range(10_000):
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        base = bases[page_no % len(bases)]
        r = http.get(
            f"{base}/wallets/{wallet_id}/transactions", params=params, headers=auth(key), timeout=10
        )
        assert r.status_code == 200, r.text
        page = r.json()
        entries += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return list(reversed(entries))
    raise AssertionError("ledger pagination did not end")


def check_ledger(entries: Sequence[dict[str, Any]], balance: int) -> None:
    """seq is 1..n without gaps, balance_after chains from 0 by the amounts, never < 0,
    and ends at the wallet's balance."""
    running = 0
    for expected_seq, entry in enumerate(entries, start=1):
        assert entry["seq"] == expected_seq, ("seq gap/duplicate", expected_seq, entry)
        assert entry["amount"] > 0, entry
        credit = entry["type"] in ("deposit", "transfer_in")
        running += entry["amount"] if credit else -entry["amount"]
        assert entry["balance_after"] == running, ("balance_after chain broken", running, entry)
        assert running >= 0, ("balance went negative", entry)
    assert running == balance, ("ledger sum != balance", running, balance)
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)), "an entry id appears twice in one ledger"


@dataclass
class Reconciliation:
    wallets: int
    entries: int
    acked_ops: int
    total_balance: int
    transfers: int
    lost: int = 0
    unexpected: int = 0


def reconcile(
    http: requests.Session,
    bases: Sequence[str],
    key: str,
    wallets: Iterable[str],
    results: Iterable[Result],
) -> Reconciliation:
    """Every acknowledged op is in the ledger exactly once, nothing else is, balances add up.

    ``results`` must hold every money movement ever made on ``wallets`` (funding too).
    """
    wallets = list(wallets)
    acked = [r for r in results if r.acked]
    expected_ids: dict[str, dict[str, Result]] = {w: {} for w in wallets}
    expected_balance = dict.fromkeys(wallets, 0)
    for res in acked:
        for wallet, entry_id in res.entry_ids().items():
            assert entry_id not in expected_ids[wallet], f"two acked ops got entry id {entry_id}"
            expected_ids[wallet][entry_id] = res
        for wallet, delta in res.effects().items():
            expected_balance[wallet] += delta
    total_entries = total = 0
    lost: list[str] = []  # acknowledged, but no ledger entry
    unexpected: list[str] = []  # a ledger entry nobody was told about (a duplicate apply)
    legs: Counter[str] = Counter()
    for wallet in wallets:
        r = http.get(f"{bases[0]}/wallets/{wallet}", headers=auth(key), timeout=10)
        assert r.status_code == 200, r.text
        balance = r.json()["balance"]
        entries = read_ledger(http, bases, key, wallet)
        check_ledger(entries, balance)
        got = {e["id"]: e for e in entries}
        want = expected_ids[wallet]
        lost += [f"{wallet}/{i}" for i in sorted(set(want) - set(got))]
        unexpected += [f"{wallet}/{i}" for i in sorted(set(got) - set(want))]
        for entry_id in set(want) & set(got):
            res = want[entry_id]
            entry = got[entry_id]
            assert entry["amount"] == res.op.amount, (entry, res.op)
            assert res.body is not None
            if res.op.kind == "transfer":
                assert entry["transfer_id"] == res.body["id"], (entry, res.body)
                if entry["type"] == "transfer_out":
                    # the client's answer (first or replayed) is the ledger's entry
                    assert res.body["transaction"] == entry, (res.body, entry)
                legs[entry["type"]] += 1
            else:
                assert res.body["transaction"] == entry, (res.body, entry)
        total_entries += len(entries)
        total += balance
        if lost or unexpected:
            continue  # reported below, with everything else that is missing
        assert balance == expected_balance[wallet], (
            f"{wallet}: balance {balance} != sum of acknowledged ops {expected_balance[wallet]}"
        )
    assert not lost, f"{len(lost)} acknowledged operations are not in the ledger (LOST): {lost[:5]}"
    assert not unexpected, (
        f"{len(unexpected)} ledger entries were never acknowledged: {unexpected[:5]}"
    )
    transfers = sum(1 for r in acked if r.op.kind == "transfer")
    assert legs["transfer_out"] == legs["transfer_in"] == transfers, legs
    # Transfers conserve money: the total moves only by deposits and withdrawals.
    net = sum(
        r.op.amount if r.op.kind == "deposit" else -r.op.amount
        for r in acked
        if r.op.kind != "transfer"
    )
    assert total == net, f"money not conserved: total {total} != deposits - withdrawals {net}"
    return Reconciliation(
        len(wallets), total_entries, len(acked), total, transfers, len(lost), len(unexpected)
    )


# -- reports ----------------------------------------------------------------------

# Lines for the terminal summary (conftest prints them at the end, with or without -s).
REPORTS: list[str] = []


def report(title: str, data: dict[str, Any]) -> None:
    import json

    line = f"[{title}] " + json.dumps(data)
    REPORTS.append(line)
    print("\n" + line)


# -- metrics ---------------------------------------------------------------------

Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(http: requests.Session, base: str) -> tuple[dict[Sample, float], str]:
    r = http.get(f"{base}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, r.text


def select(samples: dict[Sample, float], name: str, by: Sequence[str]) -> Counter[tuple[str, ...]]:
    """Sum of a metric's samples grouped by the given labels."""
    out: Counter[tuple[str, ...]] = Counter()
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            d = dict(labels)
            out[tuple(d.get(k, "") for k in by)] += value
    return out

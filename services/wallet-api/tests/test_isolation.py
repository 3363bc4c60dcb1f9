"""Batch isolation: a group-commit batch holds up to 64 unrelated requests, so an
op's own trouble (a corrupted wallet, a bug while planning it, a hot wallet that
exhausts WATCH) must be that op's answer alone; trouble of the node itself
(out of memory, read-only, loading) is every op's answer, typed, never a 500.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from tests.helpers import ACTOR, Api, FakeRedis, auth, ref
from wallet_api.combiner import GroupCommitter, _Slot
from wallet_api.domain import planner
from wallet_api.domain.ledger import EntryType
from wallet_api.domain.operations import (
    Applied,
    Failed,
    Idempotency,
    MoneyOp,
    Op,
    TransferApplied,
    TransferOp,
)
from wallet_api.service import render
from wallet_api.store import (
    ContentionExhausted,
    OutcomeUnknown,
    RetryPolicy,
    StorageFull,
    StoreUnavailable,
    WalletStore,
    WalletUnavailable,
    ledger_key,
    wallet_key,
)

HEALTHY = [f"h{n}" for n in range(9)]


@pytest.fixture
def store() -> WalletStore:
    s = WalletStore(FakeRedis(), retry=RetryPolicy(max_attempts=4, base_delay=0.0001))
    for wallet_id in [*HEALTHY, "bad"]:
        s.create_wallet(ref(wallet_id), "EUR")
    s.commit([MoneyOp(EntryType.DEPOSIT, w, 1_000, actor=ACTOR) for w in [*HEALTHY, "bad"]], render)
    return s


def _healthy_ops(seed: int) -> list[Op]:
    """63 ops over the healthy wallets: deposits, withdrawals, transfers, some keyed."""
    rng = random.Random(seed)
    ops: list[Op] = []
    for n in range(63):
        idem = Idempotency(f"w:{{w:h0}}:idem:s:{n}", f"fp{n}") if n % 4 == 0 else None
        roll = rng.random()
        if roll < 0.3:
            src, dst = rng.sample(HEALTHY, 2)
            if idem is not None:
                idem = Idempotency(f"w:{{w:{src}}}:idem:s:{n}", f"fp{n}")
            ops.append(TransferOp(src, dst, rng.randint(1, 50), idem, actor=ACTOR))
        else:
            wallet = rng.choice(HEALTHY)
            if idem is not None:
                idem = Idempotency(f"w:{{w:{wallet}}}:idem:s:{n}", f"fp{n}")
            kind = EntryType.DEPOSIT if roll < 0.7 else EntryType.WITHDRAWAL
            ops.append(MoneyOp(kind, wallet, rng.randint(1, 50), idem, actor=ACTOR))
    return ops


def _corrupt(client: redis.Redis, how: str) -> None:
    if how == "balance-not-a-number":
        client.hset(wallet_key(ref("bad")), "balance", "twelve")
    elif how == "wallet-key-of-wrong-type":
        client.delete(wallet_key(ref("bad")))
        client.set(wallet_key(ref("bad")), "not a hash")
    elif how == "ledger-key-of-wrong-type":
        client.delete(ledger_key(ref("bad")))
        client.set(ledger_key(ref("bad")), "not a sorted set")


def _books_balance(store: WalletStore, wallet_ids: list[str]) -> None:
    """Every healthy ledger chains and ends at its balance."""
    for wallet_id in wallet_ids:
        wallet = store.get_wallet(ref(wallet_id))
        assert wallet is not None
        entries, _ = store.history(ref(wallet_id), before_seq=None, limit=1000)
        running = 0
        for entry in reversed(entries):
            running += entry.amount if entry.type in ("deposit", "transfer_in") else -entry.amount
            assert entry.balance_after == running
        assert running == wallet.balance


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("balance-not-a-number", WalletUnavailable),
        ("wallet-key-of-wrong-type", WalletUnavailable),
        # The ZADD fails inside EXEC after the balance HSET committed: Redis has no
        # rollback, so that op's outcome is honestly unknown; the others are fine.
        ("ledger-key-of-wrong-type", OutcomeUnknown),
    ],
)
@pytest.mark.parametrize("position", [0, 31, 63])
def test_63_healthy_ops_succeed_beside_one_on_a_corrupted_wallet(
    store: WalletStore, how: str, error: type[Exception], position: int
) -> None:
    _corrupt(store.redis, how)
    ops = _healthy_ops(position)
    ops.insert(position, MoneyOp(EntryType.DEPOSIT, "bad", 7, actor=ACTOR))
    before = {w: store.get_wallet(ref(w)).balance for w in HEALTHY}  # type: ignore[union-attr]
    outcomes = store.commit(ops, render)
    assert len(outcomes) == 64
    bad = outcomes.pop(position)
    ops.pop(position)
    assert isinstance(bad, Failed) and isinstance(bad.error, error), bad
    assert all(not isinstance(o, Failed) for o in outcomes), outcomes
    applied = [o for o in outcomes if isinstance(o, Applied | TransferApplied)]
    assert len(applied) >= 50  # refusals (insufficient funds) are answers too
    net = {w: 0 for w in HEALTHY}
    for op, outcome in zip(ops, outcomes, strict=True):
        if isinstance(outcome, Applied):
            assert isinstance(op, MoneyOp)
            net[op.wallet_id] += op.amount if op.entry_type.credits else -op.amount
        elif isinstance(outcome, TransferApplied):
            assert isinstance(op, TransferOp)
            net[op.source] -= op.amount
            net[op.target] += op.amount
    after = {w: store.get_wallet(ref(w)).balance for w in HEALTHY}  # type: ignore[union-attr]
    assert after == {w: before[w] + net[w] for w in HEALTHY}
    _books_balance(store, HEALTHY)


def test_the_group_committer_gives_each_op_its_own_answer(store: WalletStore) -> None:
    _corrupt(store.redis, "wallet-key-of-wrong-type")
    committer = GroupCommitter(store, render)
    ops = _healthy_ops(7)
    ops.insert(10, MoneyOp(EntryType.DEPOSIT, "bad", 7, actor=ACTOR))
    slots = [_Slot(op) for op in ops]
    committer._commit(slots)  # one batch of 64, as the leader commits it
    assert isinstance(slots[10].error, WalletUnavailable)
    others = slots[:10] + slots[11:]
    assert all(s.error is None and s.outcome is not None for s in others)


def test_a_bug_while_planning_one_op_fails_only_that_op(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = planner.apply_op

    def apply_op(op: Op, states: Any, now: str) -> Any:
        if isinstance(op, MoneyOp) and op.amount == 13:
            raise KeyError("a bug")
        return real(op, states, now)

    monkeypatch.setattr(planner, "apply_op", apply_op)
    ops: list[Op] = [
        MoneyOp(EntryType.DEPOSIT, "h1", 5, actor=ACTOR),
        MoneyOp(EntryType.DEPOSIT, "h1", 13, actor=ACTOR),  # the bug
        MoneyOp(
            EntryType.WITHDRAWAL, "h1", 1_005, actor=ACTOR
        ),  # sees 1000 + 5: the failed op left no trace
    ]
    outcomes = store.commit(ops, render)
    assert isinstance(outcomes[0], Applied)
    assert isinstance(outcomes[1], Failed) and isinstance(outcomes[1].error, KeyError)
    assert isinstance(outcomes[2], Applied) and outcomes[2].entry.balance_after == 0


def test_one_hot_wallet_exhausting_watch_fails_only_its_op(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rival replica touches wallet h0 before every EXEC: the batch runs out of
    attempts, is committed again op by op, and only the op on h0 gets 503."""
    rival = FakeRedis(connection_pool=store.redis.connection_pool)
    real = WalletStore._roundtrip

    def roundtrip(self: WalletStore, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        writes = [c for c in commands if c[0] in ("ZADD", "HSET")]
        if commands[0] == ("MULTI",) and any(wallet_key(ref("h0")) in c[1] for c in writes):
            rival.hincrby(wallet_key(ref("h0")), "touched", 1)
        return real(self, conn, commands)

    monkeypatch.setattr(WalletStore, "_roundtrip", roundtrip)
    committer = GroupCommitter(store, render)
    slots = [_Slot(MoneyOp(EntryType.DEPOSIT, w, 3, actor=ACTOR)) for w in ("h1", "h0", "h2")]
    committer._commit(slots)
    assert isinstance(slots[1].error, ContentionExhausted)
    assert isinstance(slots[0].outcome, Applied) and isinstance(slots[2].outcome, Applied)
    assert store.get_wallet(ref("h0")).balance == 1_000  # type: ignore[union-attr]


# -- the node refuses: typed 503 for every op, nothing changed --------------------------


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, error: redis.ResponseError) -> list[int]:
    """Answer every MULTI block the way Redis does when it refuses writes: each
    queued command gets `error`, EXEC gets EXECABORT; nothing reaches the data."""
    calls = [0]
    real = WalletStore._roundtrip

    def roundtrip(self: WalletStore, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        if commands[0] != ("MULTI",):
            return real(self, conn, commands)
        calls[0] += 1
        real(self, conn, [("UNWATCH",)])
        abort = redis.exceptions.ExecAbortError("Transaction discarded because of previous errors.")
        return [b"OK", *[error for _ in commands[1:-1]], abort]

    monkeypatch.setattr(WalletStore, "_roundtrip", roundtrip)
    return calls


@pytest.mark.parametrize(
    ("error", "expected", "slug", "retry_after"),
    [
        (
            redis.exceptions.OutOfMemoryError(
                "command not allowed when used memory > 'maxmemory'.", status_code="OOM"
            ),
            StorageFull,
            "storage-full",
            "5",
        ),
        (
            redis.ResponseError("MISCONF Errors writing to the AOF file: No space left on device"),
            StorageFull,
            "storage-full",
            "5",
        ),
        (
            redis.exceptions.ReadOnlyError(
                "You can't write against a read only replica.", status_code="READONLY"
            ),
            StoreUnavailable,
            "redis-unavailable",
            "1",
        ),
        (
            redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
            StoreUnavailable,
            "redis-unavailable",
            "1",
        ),
        (
            redis.exceptions.MasterDownError(
                "Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                status_code="MASTERDOWN",
            ),
            StoreUnavailable,
            "redis-unavailable",
            "1",
        ),
    ],
)
def test_a_node_that_refuses_writes_is_a_typed_503_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
    client: FlaskClient,
    api: Api,
    error: redis.ResponseError,
    expected: type[Exception],
    slug: str,
    retry_after: str,
) -> None:
    wallet_id = api.create()["id"]
    assert api.move("deposit", wallet_id, 100, key="before").status_code == 200
    calls = _refuse_writes(monkeypatch, error)
    r = api.move("deposit", wallet_id, 50, key="k")
    assert r.status_code == 503, r.get_json()
    assert r.get_json()["type"] == f"urn:wallet-stack:problem:{slug}"
    assert r.headers["Retry-After"] == retry_after
    assert calls[0] == 1  # answered at once, not retried against a refusing node
    # Reads keep working, and nothing changed.
    assert api.balance(wallet_id) == 100
    history = client.get(f"/wallets/{wallet_id}/transactions", headers=auth())
    assert history.status_code == 200 and len(history.get_json()["items"]) == 1
    replay = api.move("deposit", wallet_id, 100, key="before")  # no write: still answered
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    monkeypatch.undo()
    assert api.move("deposit", wallet_id, 50, key="k").status_code == 200
    assert api.balance(wallet_id) == 150


def test_storage_full_is_the_exception_the_store_raises(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse_writes(
        monkeypatch,
        redis.exceptions.OutOfMemoryError("used memory > 'maxmemory'", status_code="OOM"),
    )
    with pytest.raises(StorageFull):
        store.commit([MoneyOp(EntryType.DEPOSIT, "h1", 1, actor=ACTOR)], render)
    with pytest.raises(StorageFull):
        store.create_wallet(ref("new"), "EUR")
    monkeypatch.undo()
    assert store.get_wallet(ref("new")) is None


def test_redis_loading_is_unavailable_not_contention(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def loading(self: WalletStore, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        raise redis.BusyLoadingError("Redis is loading the dataset in memory")

    monkeypatch.setattr(WalletStore, "_roundtrip", loading)
    with pytest.raises(StoreUnavailable):
        store.commit([MoneyOp(EntryType.DEPOSIT, "h1", 1, actor=ACTOR)], render)


@pytest.mark.parametrize("how", ["wallet-key-of-wrong-type", "balance-not-a-number"])
def test_reading_a_corrupted_wallet_is_a_typed_503(
    client: FlaskClient, fake_redis: FakeRedis, api: Api, how: str
) -> None:
    api.create(wallet_id="bad")
    _corrupt(fake_redis, how)
    for path in ("/wallets/bad", "/wallets/bad/transactions"):
        r = client.get(path, headers=auth())
        assert r.status_code == 503, r.get_json()
        assert r.get_json()["type"] == "urn:wallet-stack:problem:wallet-unavailable"
    r = api.move("deposit", "bad", 1)
    assert r.status_code == 503
    assert r.get_json()["type"] == "urn:wallet-stack:problem:wallet-unavailable"


def test_an_unreadable_ledger_entry_is_a_typed_503(
    client: FlaskClient, fake_redis: FakeRedis, api: Api
) -> None:
    api.create(wallet_id="w")
    fake_redis.zadd(ledger_key(ref("w")), {"{not json": 1})
    r = client.get("/wallets/w/transactions", headers=auth())
    assert r.status_code == 503
    assert r.get_json()["type"] == "urn:wallet-stack:problem:wallet-unavailable"

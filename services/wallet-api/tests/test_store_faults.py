"""The traps of WATCH/MULTI, simulated on fakeredis at the store's wire level."""

from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.helpers import ACTOR, ref
from wallet_api.domain.ledger import EntryType
from wallet_api.domain.operations import (
    Applied,
    Idempotency,
    KeyInUse,
    MoneyOp,
    Refused,
    Replayed,
    TransferApplied,
    TransferOp,
)
from wallet_api.service import render
from wallet_api.store import (
    ContentionExhausted,
    OutcomeUnknown,
    RetryPolicy,
    StoreUnavailable,
    WalletStore,
)


class CountingMetrics:
    def __init__(self) -> None:
        self.retries = 0

    def watch_retry(self, operation: str) -> None:
        self.retries += 1

    def commit(self, operation: str, seconds: float, batch_size: int) -> None:
        pass


@pytest.fixture
def store() -> WalletStore:
    s = WalletStore(
        fakeredis.FakeRedis(),
        retry=RetryPolicy(max_attempts=5, base_delay=0.0001, max_delay=0.0002),
        metrics=CountingMetrics(),
    )
    s.create_wallet(ref("w"), "EUR")
    s.create_wallet(ref("v"), "EUR")
    return s


def _balance(store: WalletStore, wallet_id: str) -> int:
    wallet = store.get_wallet(ref(wallet_id))
    assert wallet is not None
    return wallet.balance


def _on_exec(
    monkeypatch: pytest.MonkeyPatch, before: Any = None, after: Any = None, times: int = 1
) -> None:
    """Run hooks around the MULTI..EXEC round trip of the next `times` transactions."""
    real = WalletStore._roundtrip
    left = [times]

    def roundtrip(self: WalletStore, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        if commands[-1] != ("EXEC",) or left[0] == 0:
            return real(self, conn, commands)
        left[0] -= 1
        if before:
            before()
        replies = real(self, conn, commands)
        if after:
            after()
        return replies

    monkeypatch.setattr(WalletStore, "_roundtrip", roundtrip)


def _raise(error: Exception) -> Any:
    def hook() -> None:
        raise error

    return hook


@pytest.mark.parametrize(
    "error", [redis.ConnectionError("reset by peer"), redis.TimeoutError("read timed out")]
)
def test_lost_exec_reply_is_not_applied_twice(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    _on_exec(monkeypatch, after=_raise(error))  # EXEC commits, the reply is lost
    outcomes = store.commit([MoneyOp(EntryType.DEPOSIT, "w", 100, actor=ACTOR)], render)
    assert isinstance(outcomes[0], Applied)
    assert _balance(store, "w") == 100
    entries, _ = store.history(ref("w"), before_seq=None, limit=10)
    assert len(entries) == 1
    # The check for our own write is the next attempt's WATCHed read (late EXEC).
    assert store.metrics.retries == 1  # type: ignore[attr-defined]


def test_lost_reply_of_a_refusal_is_detected_through_its_idempotency_record(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused withdrawal writes no ledger entry; its record proves the commit."""
    op = MoneyOp(EntryType.WITHDRAWAL, "w", 5, Idempotency("w:{w:w}:idem:s:k", "fp"), actor=ACTOR)
    _on_exec(monkeypatch, after=_raise(redis.ConnectionError("gone")))
    outcomes = store.commit([op], render)
    assert isinstance(outcomes[0], Refused)
    assert store.metrics.retries == 1  # type: ignore[attr-defined]
    again = store.commit(
        [MoneyOp(EntryType.WITHDRAWAL, "w", 5, op.idempotency, actor=ACTOR)], render
    )
    assert isinstance(again[0], Replayed) and again[0].response.status == 409


def test_exec_that_never_reached_redis_is_retried_once(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _on_exec(monkeypatch, before=_raise(redis.ConnectionError("write failed")))
    outcomes = store.commit([MoneyOp(EntryType.DEPOSIT, "w", 100, actor=ACTOR)], render)
    assert isinstance(outcomes[0], Applied)
    assert _balance(store, "w") == 100
    assert store.metrics.retries == 1  # type: ignore[attr-defined]


def test_lost_transfer_reply_is_not_applied_twice(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.commit([MoneyOp(EntryType.DEPOSIT, "w", 100, actor=ACTOR)], render)
    _on_exec(monkeypatch, after=_raise(redis.ConnectionError("reset")))
    outcomes = store.commit([TransferOp("w", "v", 30, actor=ACTOR)], render)
    assert isinstance(outcomes[0], TransferApplied)
    assert (_balance(store, "w"), _balance(store, "v")) == (70, 30)


def test_a_write_between_watch_and_exec_forces_a_retry_that_sees_it(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rival = WalletStore(store.redis)
    _on_exec(
        monkeypatch,
        before=lambda: rival.commit([MoneyOp(EntryType.DEPOSIT, "w", 7, actor=ACTOR)], render),
    )
    outcomes = store.commit([MoneyOp(EntryType.DEPOSIT, "w", 5, actor=ACTOR)], render)
    assert isinstance(outcomes[0], Applied) and outcomes[0].entry.balance_after == 12
    assert store.metrics.retries == 1  # type: ignore[attr-defined]


def test_a_concurrent_winner_with_the_same_key_makes_this_request_409(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    idem = Idempotency("w:{w:w}:idem:s:race", "fp")
    rival = WalletStore(store.redis)
    _on_exec(
        monkeypatch,
        before=lambda: rival.commit(
            [MoneyOp(EntryType.DEPOSIT, "w", 9, idem, actor=ACTOR)], render
        ),
    )
    outcomes = store.commit([MoneyOp(EntryType.DEPOSIT, "w", 9, idem, actor=ACTOR)], render)
    assert isinstance(outcomes[0], KeyInUse)
    assert _balance(store, "w") == 9  # moved once, by the winner


def test_conflicts_retry_a_bounded_number_of_times_then_change_nothing(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rival = WalletStore(store.redis)
    bumps = [0]

    def bump() -> None:  # touch the watched wallet before every EXEC
        bumps[0] += 1
        rival.redis.hset("w:{w:w}", "touched", bumps[0])

    _on_exec(monkeypatch, before=bump, times=100)
    with pytest.raises(ContentionExhausted):
        store.commit([MoneyOp(EntryType.DEPOSIT, "w", 1, actor=ACTOR)], render)
    assert bumps[0] == 5
    assert store.metrics.retries == 5  # type: ignore[attr-defined]
    assert _balance(store, "w") == 0
    assert store.history(ref("w"), before_seq=None, limit=10)[0] == []


def test_redis_down_is_store_unavailable_quickly() -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 1)
    )
    store = WalletStore(dead, retry=RetryPolicy(max_attempts=3, base_delay=0.0001))
    with pytest.raises(StoreUnavailable):
        store.commit([MoneyOp(EntryType.DEPOSIT, "w", 1, actor=ACTOR)], render)
    with pytest.raises(StoreUnavailable):
        store.get_wallet(ref("w"))
    assert store.ping() is False


def test_batch_applies_in_order_with_a_running_balance(store: WalletStore) -> None:
    ops = [
        MoneyOp(EntryType.DEPOSIT, "w", 10, actor=ACTOR),
        MoneyOp(EntryType.WITHDRAWAL, "w", 15, actor=ACTOR),  # refused: only 10 so far
        MoneyOp(EntryType.DEPOSIT, "w", 10, actor=ACTOR),
        MoneyOp(EntryType.WITHDRAWAL, "w", 15, actor=ACTOR),  # fine now
        TransferOp("w", "v", 5, actor=ACTOR),
        MoneyOp(EntryType.DEPOSIT, "ghost", 1, actor=ACTOR),
    ]
    outcomes = store.commit(ops, render)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Applied", "Refused", "Applied", "Applied", "TransferApplied", "Refused"]
    assert (_balance(store, "w"), _balance(store, "v")) == (0, 5)
    entries, _ = store.history(ref("w"), before_seq=None, limit=10)
    assert [e.seq for e in entries] == [4, 3, 2, 1]


def test_retry_delay_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=0.05)
    delays = [policy.delay(10) for _ in range(200)]
    assert all(0 <= d <= 0.05 for d in delays)
    assert len(set(delays)) > 100


def test_lost_reply_with_redis_gone_is_outcome_unknown_not_unchanged(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXEC commits, its reply is lost and Redis cannot be asked: the store must not
    claim that nothing changed."""

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("connection refused")

    def cut_redis() -> None:
        monkeypatch.setattr(store.redis, "execute_command", unreachable)
        raise redis.ConnectionError("reset by peer")

    _on_exec(monkeypatch, after=cut_redis)
    with pytest.raises(OutcomeUnknown):
        store.commit([MoneyOp(EntryType.DEPOSIT, "w", 100, actor=ACTOR)], render)
    monkeypatch.undo()
    assert _balance(store, "w") == 100  # it had committed

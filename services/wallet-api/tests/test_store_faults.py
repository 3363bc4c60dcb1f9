"""The traps of WATCH/MULTI with redis-py, simulated on fakeredis."""

from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

from wallet_api.domain.ledger import EntryType
from wallet_api.service import render_money, render_transfer
from wallet_api.store import (
    Applied,
    ContentionExhausted,
    IdempotencyClaim,
    MoneyOp,
    RetryPolicy,
    StoreUnavailable,
    TransferApplied,
    TransferOp,
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
    s.create_wallet("w", "EUR")
    s.create_wallet("v", "EUR")
    return s


def _commit_then_drop_reply(monkeypatch: pytest.MonkeyPatch, error: Exception, times: int = 1) -> None:
    """EXEC reaches Redis and commits, but the client never reads the reply."""
    real = Pipeline.execute
    left = [times]

    def execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        result = real(self, raise_on_error)
        if left[0] > 0:
            left[0] -= 1
            raise error
        return result

    monkeypatch.setattr(Pipeline, "execute", execute)


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("reset by peer"),
        redis.TimeoutError("read timed out"),
        # what redis-py itself raises for a connection error while keys are watched
        redis.WatchError("A ConnectionError occurred while watching one or more keys"),
    ],
)
def test_lost_exec_reply_is_not_applied_twice(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    _commit_then_drop_reply(monkeypatch, error)
    outcomes = store.commit_batch("w", [MoneyOp(EntryType.DEPOSIT, "w", 100)], render_money)
    assert isinstance(outcomes[0], Applied)
    wallet = store.get_wallet("w")
    assert wallet is not None and wallet.balance == 100
    entries, _ = store.history("w", before_seq=None, limit=10)
    assert len(entries) == 1


def test_lost_reply_detected_through_idempotency_record_for_a_refusal(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused withdrawal writes no ledger entry; its idempotency record proves the commit."""
    claim = store.claim_idempotency_key("w:{w:w}:idem:s:k", "fp")
    assert isinstance(claim, IdempotencyClaim)
    _commit_then_drop_reply(monkeypatch, redis.ConnectionError("gone"))
    outcomes = store.commit_batch("w", [MoneyOp(EntryType.WITHDRAWAL, "w", 5, claim=claim)], render_money)
    assert type(outcomes[0]).__name__ == "Refused"
    assert store.metrics.retries == 0  # type: ignore[attr-defined]


def test_lost_transfer_reply_is_not_applied_twice(store: WalletStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.commit_batch("w", [MoneyOp(EntryType.DEPOSIT, "w", 100)], render_money)
    _commit_then_drop_reply(monkeypatch, redis.ConnectionError("reset"))
    outcome = store.transfer(TransferOp("w", "v", 30), render_transfer)
    assert isinstance(outcome, TransferApplied)
    w, v = store.get_wallet("w"), store.get_wallet("v")
    assert w is not None and v is not None
    assert (w.balance, v.balance) == (70, 30)


def test_conflicts_retry_a_bounded_number_of_times_then_change_nothing(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = [0]

    def always_conflict(self: Pipeline, raise_on_error: bool = True) -> Any:
        attempts[0] += 1
        self.reset()
        raise redis.WatchError("Watched variable changed.")

    monkeypatch.setattr(Pipeline, "execute", always_conflict)
    with pytest.raises(ContentionExhausted):
        store.commit_batch("w", [MoneyOp(EntryType.DEPOSIT, "w", 1)], render_money)
    monkeypatch.undo()
    assert attempts[0] == 5
    assert store.metrics.retries == 5  # type: ignore[attr-defined]
    wallet = store.get_wallet("w")
    assert wallet is not None and wallet.balance == 0


def test_a_real_concurrent_write_between_watch_and_exec_forces_a_retry(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client deposits after our read: our first EXEC must fail, the retry sees its write."""
    rival = WalletStore(store.redis)
    real_multi = Pipeline.multi
    fired = [False]

    def multi(self: Pipeline) -> None:
        if not fired[0]:
            fired[0] = True
            rival.commit_batch("w", [MoneyOp(EntryType.DEPOSIT, "w", 7)], render_money)
        real_multi(self)

    monkeypatch.setattr(Pipeline, "multi", multi)
    outcomes = store.commit_batch("w", [MoneyOp(EntryType.DEPOSIT, "w", 5)], render_money)
    assert isinstance(outcomes[0], Applied) and outcomes[0].entry.balance_after == 12
    assert store.metrics.retries == 1  # type: ignore[attr-defined]


def test_redis_down_is_store_unavailable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 1))
    store = WalletStore(dead, retry=RetryPolicy(max_attempts=3, base_delay=0.0001))
    with pytest.raises(StoreUnavailable):
        store.commit_batch("w", [MoneyOp(EntryType.DEPOSIT, "w", 1)], render_money)
    with pytest.raises(StoreUnavailable):
        store.get_wallet("w")
    assert store.ping() is False


def test_retry_delay_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=0.05)
    delays = [policy.delay(10) for _ in range(200)]
    assert all(0 <= d <= 0.05 for d in delays)
    assert len(set(delays)) > 100

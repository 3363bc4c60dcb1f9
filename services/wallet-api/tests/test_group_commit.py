"""Per-process group commit: threads on one wallet share transactions, and every
op still gets its own outcome."""

import threading
import time
from typing import Any

import fakeredis
import pytest

from tests.helpers import ACTOR, ref
from wallet_api.combiner import GroupCommitter
from wallet_api.domain.ledger import EntryType
from wallet_api.domain.operations import (
    Applied,
    MoneyOp,
    Op,
    Outcome,
    Refused,
)
from wallet_api.service import render
from wallet_api.store import StoreUnavailable, WalletStore


class SlowStore(WalletStore):
    """Each transaction takes a while, as it does on a real network with fsync."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def commit(self, ops: Any, render: Any) -> list[Outcome]:
        self.batches.append(len(ops))
        time.sleep(0.02)
        return super().commit(ops, render)


def _run_threads(n: int, work: Any) -> None:
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_threads_on_one_wallet_share_transactions() -> None:
    store = SlowStore(fakeredis.FakeRedis())
    store.create_wallet(ref("hot"), "EUR")
    committer = GroupCommitter(store, render)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for _ in range(10):
            outcome = committer.submit(MoneyOp(EntryType.DEPOSIT, "hot", 1 + i, actor=ACTOR))
            with lock:
                outcomes.append(outcome)

    _run_threads(16, work)
    assert len(outcomes) == 160 and all(isinstance(o, Applied) for o in outcomes)
    wallet = store.get_wallet(ref("hot"))
    assert wallet is not None and wallet.balance == sum(10 * (1 + i) for i in range(16))
    assert sum(store.batches) == 160
    # Batched, not one transaction per op: while one batch takes 20 ms, the other
    # threads' ops queue up behind it.
    assert len(store.batches) <= 40, store.batches
    seqs = sorted(o.entry.seq for o in outcomes if isinstance(o, Applied))
    assert seqs == list(range(1, 161))  # every op its own ledger entry


def test_withdrawals_in_one_batch_never_overdraw() -> None:
    store = SlowStore(fakeredis.FakeRedis())
    store.create_wallet(ref("w"), "EUR")
    store.commit([MoneyOp(EntryType.DEPOSIT, "w", 100, actor=ACTOR)], render)
    committer = GroupCommitter(store, render)
    results: list[Outcome] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        outcome = committer.submit(MoneyOp(EntryType.WITHDRAWAL, "w", 30, actor=ACTOR))
        with lock:
            results.append(outcome)

    _run_threads(12, work)
    applied = [r for r in results if isinstance(r, Applied)]
    assert len(applied) == 3  # 3 x 30 <= 100 < 4 x 30
    assert all(isinstance(r, Refused) for r in results if not isinstance(r, Applied))
    wallet = store.get_wallet(ref("w"))
    assert wallet is not None and wallet.balance == 10


def test_a_failed_batch_fails_every_waiter() -> None:
    class DownStore(SlowStore):
        def commit(self, ops: list[Op], render: Any) -> list[Outcome]:
            time.sleep(0.005)
            raise StoreUnavailable("down")

    committer = GroupCommitter(DownStore(fakeredis.FakeRedis()), render)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        with pytest.raises(StoreUnavailable) as err:
            committer.submit(MoneyOp(EntryType.DEPOSIT, "w", 1, actor=ACTOR))
        with lock:
            errors.append(err.value)

    _run_threads(8, work)
    assert len(errors) == 8

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


class _Interrupted(BaseException):
    """What killing a greenlet raises in it (GreenletExit is a BaseException too)."""


class _GatedStore(SlowStore):
    """The first transaction waits for the test to let it through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.first = True

    def commit(self, ops: Any, render: Any) -> list[Outcome]:
        if self.first:
            self.first = False
            assert self.gate.wait(10)
        return super().commit(ops, render)


@pytest.mark.parametrize("when", ["while waiting", "once handed the leadership"])
def test_an_interrupted_waiter_leaves_the_queue_and_its_shard_goes_on(
    monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A waiting request killed before its op was taken: the op is not applied, and the
    request behind it is still served (it hung when the dead waiter had been handed the
    leadership)."""
    import wallet_api.combiner as combiner

    store = _GatedStore(fakeredis.FakeRedis())
    store.create_wallet(ref("w"), "EUR")
    committer = GroupCommitter(store, render)
    doomed = MoneyOp(EntryType.DEPOSIT, "w", 1000, actor=ACTOR)

    class Wake(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            if when == "once handed the leadership":
                super().wait(timeout)
            raise _Interrupted

    real_slot = combiner._Slot

    def slot(op: Op) -> Any:
        made = real_slot(op)
        if op is doomed:
            made.wake = Wake()
        return made

    monkeypatch.setattr(combiner, "_Slot", slot)
    results: dict[str, Any] = {}

    def submit(name: str, op: Op) -> None:
        try:
            results[name] = committer.submit(op)
        except _Interrupted as exc:
            results[name] = exc

    def until(what: str, condition: Any) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.001)

    pending = committer._shards[0].pending
    leader = threading.Thread(
        target=submit, args=("a", MoneyOp(EntryType.DEPOSIT, "w", 1, actor=ACTOR))
    )
    leader.start()
    until("the leader is inside its (gated) transaction", lambda: not store.first)
    killed = threading.Thread(daemon=True, target=submit, args=("b", doomed))
    killed.start()
    if when == "while waiting":
        killed.join(5)
        until("b left the queue", lambda: not pending)
    else:
        until("b is queued", lambda: len(pending) == 1)
    behind = threading.Thread(
        target=submit, args=("c", MoneyOp(EntryType.DEPOSIT, "w", 10, actor=ACTOR))
    )
    behind.start()
    until("c is queued", lambda: len(pending) == (1 if when == "while waiting" else 2))
    store.gate.set()
    for t in (leader, killed, behind):
        t.join(5)
        assert not t.is_alive(), f"{when}: a request hung"
    assert isinstance(results["b"], _Interrupted)
    assert isinstance(results["a"], Applied) and isinstance(results["c"], Applied)
    wallet = store.get_wallet(ref("w"))
    assert wallet is not None and wallet.balance == 11  # the killed request's op was not applied

"""Per-process group commit of money movements.

Threads (or greenlets) of one worker would otherwise race each other on WATCH,
and each op would pay its own round trips and, with ``appendfsync always``, its
own fsync. Instead each request enqueues its op; whichever thread holds the
leader lock commits everything queued so far (up to ``max_batch``) in one
WATCH/MULTI, and the others find their outcome ready when they get the lock.
Contention left for WATCH is only between processes and replicas, and it is
paid per batch, not per op.

Ops can be spread over ``shards`` independent queues by wallet (all ops of one
wallet share a queue, so there are no intra-process races on it) to keep
several batches in flight. Measured with ``make bench``: with gevent workers one
shard is best (bigger batches, fewer round trips per op); with gthread workers
four shards were (COMMIT_SHARDS).
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass

from wallet_api.store import MoneyOp, Op, Outcome, Render, WalletStore


@dataclass
class _Slot:
    op: Op
    outcome: Outcome | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None or self.error is not None


class _Shard:
    def __init__(self) -> None:
        self.pending: list[_Slot] = []
        self.leading = False  # a thread is committing a batch of this shard
        self.cond = threading.Condition()  # guards both; signals finished batches


class GroupCommitter:
    def __init__(
        self, store: WalletStore, render: Render, *, shards: int = 1, max_batch: int = 64
    ) -> None:
        self.store = store
        self.render = render
        self.max_batch = max_batch
        self._shards = [_Shard() for _ in range(shards)]

    def submit(self, op: Op) -> Outcome:
        # A transfer queues with its source wallet; a race with its target's
        # queue is caught by WATCH like any other.
        wallet_id = op.wallet_id if isinstance(op, MoneyOp) else op.source
        shard = self._shards[zlib.crc32(wallet_id.encode()) % len(self._shards)]
        slot = _Slot(op)
        with shard.cond:
            shard.pending.append(slot)
            while not slot.done:
                if shard.leading:
                    # Followers learn their outcome from the notification, not by
                    # taking a lock the next leader could grab first (barging would
                    # let one thread commit alone, batch after batch).
                    shard.cond.wait()
                    continue
                shard.leading = True
                batch = shard.pending[: self.max_batch]
                del shard.pending[: self.max_batch]
                shard.cond.release()
                try:
                    self._commit(batch)
                finally:
                    shard.cond.acquire()
                    shard.leading = False
                    shard.cond.notify_all()
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        return slot.outcome

    def _commit(self, batch: list[_Slot]) -> None:
        try:
            outcomes = self.store.commit([s.op for s in batch], self.render)
        except Exception as exc:  # every waiter must learn the batch's fate
            for slot in batch:
                slot.error = exc
            return
        for slot, outcome in zip(batch, outcomes, strict=True):
            slot.outcome = outcome

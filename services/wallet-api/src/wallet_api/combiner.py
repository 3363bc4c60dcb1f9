"""Per-process group commit of money movements.

Threads (or greenlets) of one worker would otherwise race each other on WATCH,
and each op would pay its own round trips and, with ``appendfsync always``, its
own fsync. Instead each request enqueues its op. One request at a time leads:
it commits everything queued so far (up to ``max_batch``) in one WATCH/MULTI,
wakes the requests whose ops were in the batch, and once its own op is done
hands the leadership to the oldest request still waiting. Contention left for
WATCH is only between processes and replicas, and it is paid per batch, not
per op.

Ops can be spread over ``shards`` independent queues by wallet (all ops of one
wallet share a queue, so there are no intra-process races on it) to keep
several batches in flight. Measured with ``make bench``: with gevent workers one
shard is best (bigger batches, fewer round trips per op); with gthread workers
four shards were (COMMIT_SHARDS).

A batch holds unrelated requests, so one op's trouble stays its own: the store
answers an op it could not carry out with a Failed outcome, and a batch that
runs out of WATCH attempts (one hot wallet elsewhere would keep failing it) is
committed again op by op, so only the contended op is answered 503. A failure
of the node itself (unreachable, full, read-only, outcome unknown) is every
op's answer, each op getting it as its own typed error.
"""

from __future__ import annotations

import threading
import zlib
from collections import deque
from dataclasses import dataclass, field

from wallet_api.domain.operations import Failed, Op, Outcome, Render
from wallet_api.store import ContentionExhausted, WalletStore


@dataclass
class _Slot:
    op: Op
    outcome: Outcome | None = None
    error: BaseException | None = None
    # Set when the outcome is ready, or when this slot is handed the leadership.
    wake: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.outcome is not None or self.error is not None


class _Shard:
    def __init__(self) -> None:
        self.pending: deque[_Slot] = deque()
        self.leading = False  # some request is committing this shard's batches
        self.mutex = threading.Lock()  # guards pending and leading, held briefly


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
        wallet_id = op.wallets[0].id
        shard = self._shards[zlib.crc32(wallet_id.encode()) % len(self._shards)]
        slot = _Slot(op)
        with shard.mutex:
            shard.pending.append(slot)
            leader = not shard.leading
            shard.leading = True
        if not leader:
            # Woken exactly once: with the outcome, or to take over as leader.
            # (No broadcast: waking every waiter per batch costs O(waiters).)
            try:
                slot.wake.wait()
            except BaseException:
                self._abandon(shard, slot)
                raise
        if not slot.done:
            self._lead(shard, slot)
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        return slot.outcome

    def _abandon(self, shard: _Shard, slot: _Slot) -> None:
        """A waiter was interrupted (its greenlet or thread killed, a timeout). Its op
        leaves the queue unless a batch already took it (then it commits, and a retry
        with the same Idempotency-Key finds it). If the leadership had just been handed
        to it, it is passed on: otherwise the shard would wait for a leader that never
        comes, and every later request on it would hang."""
        with shard.mutex:
            if slot not in shard.pending:
                return
            handed = slot.wake.is_set() and not slot.done
            shard.pending.remove(slot)
            if handed:
                if shard.pending:
                    shard.pending[0].wake.set()
                else:
                    shard.leading = False

    def _lead(self, shard: _Shard, own: _Slot) -> None:
        """Commit batches until our own op is done, then hand over or stand down."""
        try:
            while not own.done:
                with shard.mutex:
                    count = min(self.max_batch, len(shard.pending))
                    batch = [shard.pending.popleft() for _ in range(count)]
                try:
                    self._commit(batch)
                finally:
                    for slot in batch:
                        if slot is not own:
                            slot.wake.set()
        finally:
            with shard.mutex:
                if shard.pending:
                    shard.pending[0].wake.set()  # the oldest waiter leads next
                else:
                    shard.leading = False

    def _commit(self, batch: list[_Slot]) -> None:
        try:
            outcomes = self.store.commit([s.op for s in batch], self.render)
        except ContentionExhausted as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            # WATCH does not say which key changed: alone, each op only races on
            # its own wallets (nothing was written, so trying again is safe).
            for slot in batch:
                self._commit([slot])
            return
        except BaseException as exc:  # every waiter must learn the batch's fate
            for slot in batch:
                slot.error = exc
            if not isinstance(exc, Exception):
                raise  # e.g. the worker is shutting down
            return
        for slot, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Failed):
                slot.error = outcome.error
            else:
                slot.outcome = outcome

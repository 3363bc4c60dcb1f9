"""Per-process group commit of money movements.

Threads (or greenlets) of one worker would otherwise race each other on WATCH,
and each op would pay its own round trips and, with ``appendfsync always``, its
own fsync. Instead each request enqueues its op; whichever thread holds the
leader lock commits everything queued so far (up to ``max_batch``) in one
WATCH/MULTI, and the others find their outcome ready when they get the lock.
Contention left for WATCH is only between processes and replicas, and it is
paid per batch, not per op.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from wallet_api.store import Op, Outcome, Render, WalletStore


@dataclass
class _Slot:
    op: Op
    outcome: Outcome | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None or self.error is not None


class GroupCommitter:
    def __init__(self, store: WalletStore, render: Render, *, max_batch: int = 64) -> None:
        self.store = store
        self.render = render
        self.max_batch = max_batch
        self._pending: list[_Slot] = []
        self._mutex = threading.Lock()  # guards _pending only, held briefly
        self._leader = threading.Lock()  # held while a batch talks to Redis

    def submit(self, op: Op) -> Outcome:
        slot = _Slot(op)
        with self._mutex:
            self._pending.append(slot)
        while not slot.done:
            with self._leader:
                if slot.done:
                    break
                with self._mutex:
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
                self._commit(batch)
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

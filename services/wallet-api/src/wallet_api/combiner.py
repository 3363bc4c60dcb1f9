"""Per-process group commit for one wallet's deposits and withdrawals.

Threads (or greenlets) of one worker that hit the same wallet would only race
each other on WATCH. Instead, each enqueues its op; whoever holds the wallet's
lock commits everything queued so far in one WATCH/MULTI, and the others find
their result ready when they get the lock. Contention left for WATCH is only
between processes/replicas, and a hot wallet gets fewer, larger transactions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from wallet_api.store import MoneyOp, Outcome, Render, WalletStore


@dataclass
class _Slot:
    op: MoneyOp
    outcome: Outcome | None = None
    error: BaseException | None = None


@dataclass
class _WalletQueue:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[_Slot] = field(default_factory=list)
    users: int = 0


class GroupCommitter:
    def __init__(self, store: WalletStore, *, max_batch: int = 64) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queues: dict[str, _WalletQueue] = {}
        self._mutex = threading.Lock()

    def submit(self, op: MoneyOp, render: Render) -> Outcome:
        slot = _Slot(op)
        with self._mutex:
            queue = self._queues.get(op.wallet_id)
            if queue is None:
                queue = self._queues[op.wallet_id] = _WalletQueue()
            queue.users += 1
            queue.pending.append(slot)
        try:
            while slot.outcome is None and slot.error is None:
                with queue.lock:
                    if slot.outcome is not None or slot.error is not None:
                        break
                    with self._mutex:
                        batch = queue.pending[: self.max_batch]
                        del queue.pending[: self.max_batch]
                    self._commit(op.wallet_id, batch, render)
        finally:
            with self._mutex:
                queue.users -= 1
                if queue.users == 0:  # keep the map as small as the live traffic
                    del self._queues[op.wallet_id]
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        return slot.outcome

    def _commit(self, wallet_id: str, batch: list[_Slot], render: Render) -> None:
        try:
            outcomes = self.store.commit_batch(wallet_id, [s.op for s in batch], render)
        except Exception as exc:  # every waiter must learn the batch's fate
            for slot in batch:
                slot.error = exc
            return
        for slot, outcome in zip(batch, outcomes, strict=True):
            slot.outcome = outcome

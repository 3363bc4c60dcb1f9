"""What callers ask of the ledger (ops) and what came of it (outcomes).

Plain values, free of HTTP and Redis: the planner turns ops into outcomes, the
store persists what the planner decided, the service renders outcomes as
answers. An answer is rendered once, when the op is planned, so that a retry
with the same idempotency key gets the very same answer back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wallet_api.domain.ledger import DomainRefusal, EntryType, LedgerEntry


@dataclass(frozen=True)
class StoredResponse:
    """An answer (status and JSON body) kept for idempotent replay."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Idempotency:
    """An op's idempotency key (an opaque storage key, scoped by the caller) and
    the fingerprint of the request that first used it."""

    key: str
    fingerprint: str


@dataclass
class MoneyOp:
    """A deposit or withdrawal."""

    entry_type: EntryType
    wallet_id: str
    amount: int
    idempotency: Idempotency | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def operation(self) -> str:
        return self.entry_type.value

    @property
    def wallets(self) -> tuple[str, ...]:
        return (self.wallet_id,)


@dataclass
class TransferOp:
    source: str
    target: str
    amount: int
    idempotency: Idempotency | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    operation = "transfer"

    @property
    def wallets(self) -> tuple[str, ...]:
        return (self.source, self.target)


Op = MoneyOp | TransferOp


@dataclass(frozen=True)
class Applied:
    entry: LedgerEntry
    currency: str


@dataclass(frozen=True)
class TransferApplied:
    debit: LedgerEntry
    credit: LedgerEntry
    currency: str


@dataclass(frozen=True)
class Refused:
    refusal: DomainRefusal


@dataclass(frozen=True)
class Replayed:
    """The key was used before for this same request: here is the first answer."""

    response: StoredResponse


@dataclass(frozen=True)
class KeyInUse:
    """A concurrent request with the same key won; this one did nothing."""


@dataclass(frozen=True)
class KeyReused:
    """The key was used before for a different method, path or body."""


@dataclass(frozen=True)
class Failed:
    """This op alone could not be carried out; the others of its batch were.

    ``error`` is what its caller is told (the service raises it): a wallet whose
    stored data cannot be read, a bug met while planning it, or a store failure
    that concerns only this op. Nothing of the op was written unless the error
    says the outcome is unknown. A batch holds up to 64 unrelated requests, so
    one op's trouble must not become its neighbours' answer.
    """

    error: Exception


Outcome = Applied | TransferApplied | Refused | Replayed | KeyInUse | KeyReused | Failed
Render = Callable[[Op, Outcome], StoredResponse]

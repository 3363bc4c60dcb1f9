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
from typing import Any, NamedTuple

from wallet_api.domain.ledger import DomainRefusal, EntryType, LedgerEntry

# The tenant of WALLET_API_KEYS' development keys, and of the wallets created
# before there were tenants (store.py keeps their Redis keys unchanged).
DEFAULT_TENANT = "default"


class WalletRef(NamedTuple):
    """A wallet as the ledger addresses it. Wallet ids are unique per tenant, so
    a wallet is its tenant and its id: another tenant's wallet of the same id is
    simply another wallet, and one the caller cannot name."""

    tenant: str
    id: str


@dataclass(frozen=True)
class Actor:
    """Who asked for an op: the tenant whose wallets it may touch, and what
    every ledger entry it writes records for the audit trail (the API key's
    public id and the request id, never the key itself)."""

    tenant: str
    key_id: str
    request_id: str


@dataclass(frozen=True)
class StoredResponse:
    """An answer (status and JSON body) kept for idempotent replay."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Idempotency:
    """An op's idempotency key (an opaque storage key, scoped by the caller's
    tenant) and the fingerprint of the request that first used it.

    ``legacy_key``: where the same request's record lived before keys were
    scoped per tenant (per API key). It is read, never written (nor WATCHed:
    only the previous version writes it), so that a retry of a request answered
    before the upgrade still replays; records expire after
    IDEMPOTENCY_TTL_SECONDS, and so does the need for it."""

    key: str
    fingerprint: str
    legacy_key: str | None = None


@dataclass
class MoneyOp:
    """A deposit or withdrawal."""

    entry_type: EntryType
    wallet_id: str
    amount: int
    idempotency: Idempotency | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Keyword-only and required: an op without a tenant must not exist.
    actor: Actor = field(kw_only=True)
    # The wallets it posts to, in posting order; made once (read several times per op).
    wallets: tuple[WalletRef, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.wallets = (WalletRef(self.actor.tenant, self.wallet_id),)

    @property
    def operation(self) -> str:
        return self.entry_type.value


@dataclass
class TransferOp:
    """A transfer between two wallets of the actor's tenant (there is no other
    kind: the wallet ids are read within that tenant)."""

    source: str
    target: str
    amount: int
    idempotency: Idempotency | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    actor: Actor = field(kw_only=True)
    wallets: tuple[WalletRef, ...] = field(init=False, repr=False, compare=False)

    operation = "transfer"

    def __post_init__(self) -> None:
        tenant = self.actor.tenant
        self.wallets = (WalletRef(tenant, self.source), WalletRef(tenant, self.target))


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

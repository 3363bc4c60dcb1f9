"""Use cases of the wallet API, between the HTTP routes and the Redis store.

A money-moving call builds an op (with its idempotency key, if sent), hands it
to the per-process group committer, and turns the outcome into a response --
the same response a later replay of that key returns.

Every use case addresses wallets within the caller's tenant (WalletRef): a wallet
of another tenant is not found, with the very answer a missing wallet gets.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from wallet_api.combiner import GroupCommitter
from wallet_api.domain.ledger import EntryType, WalletNotFound
from wallet_api.domain.operations import (
    DEFAULT_TENANT,
    Actor,
    Applied,
    Idempotency,
    KeyInUse,
    KeyReused,
    MoneyOp,
    Op,
    Outcome,
    Refused,
    Replayed,
    StoredResponse,
    TransferApplied,
    TransferOp,
    WalletRef,
)
from wallet_api.keys import ApiKey
from wallet_api.problems import problem
from wallet_api.store import WalletStore, idempotency_key, legacy_idempotency_key


class OperationMetrics(Protocol):
    def operation(self, operation: str, outcome: str) -> None: ...


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who is calling (the API key, hence the tenant), in which request, and the
    idempotency key they sent, if any."""

    key: ApiKey
    request_id: str
    idempotency_key: str | None = None

    def wallet(self, wallet_id: str) -> WalletRef:
        return WalletRef(self.key.tenant, wallet_id)

    @property
    def actor(self) -> Actor:
        return Actor(self.key.tenant, self.key.id, self.request_id)


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """Which request first used an idempotency key: 128 bits of SHA-256 (stored in
    every record; telling one client's two requests under one key apart needs no
    more, and a record is read on every replay)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()[:32]


def render(op: Op, outcome: Outcome) -> StoredResponse:
    """The HTTP answer for an outcome; stored for replay when a key was sent."""
    if isinstance(outcome, Applied):
        entry = outcome.entry
        return StoredResponse(
            200,
            {
                "wallet_id": entry.wallet_id,
                "currency": outcome.currency,
                "balance": entry.balance_after,
                "transaction": entry.to_dict(),
            },
        )
    if isinstance(outcome, TransferApplied):
        assert isinstance(op, TransferOp)
        return StoredResponse(
            201,
            {
                # The transfer's own id, not the op's: a replay renders the first
                # request's outcome for a later op (idempotency records keep outcomes).
                "id": outcome.debit.transfer_id,
                "from": op.source,
                "to": op.target,
                "amount": op.amount,
                "currency": outcome.currency,
                "balance": outcome.debit.balance_after,
                "transaction": outcome.debit.to_dict(),
                "created_at": outcome.debit.created_at,
            },
        )
    if isinstance(outcome, Refused):
        r = outcome.refusal
        return StoredResponse(r.status, problem(r.status, r.slug, r.title, r.detail))
    if isinstance(outcome, Replayed):
        return outcome.response
    if isinstance(outcome, KeyInUse):
        return StoredResponse(
            409,
            problem(
                409,
                "idempotency-key-in-use",
                "Idempotency key in use",
                "a concurrent request with this Idempotency-Key won; "
                "retry with the same key to get its response",
            ),
        )
    assert isinstance(outcome, KeyReused)
    return StoredResponse(
        422,
        problem(
            422,
            "idempotency-key-reused",
            "Idempotency key reused",
            "this Idempotency-Key was used with a different request; use a new key",
        ),
    )


_OUTCOME_LABELS: dict[type, str] = {
    Applied: "ok",
    TransferApplied: "ok",
    Refused: "refused",
    Replayed: "replayed",
    KeyInUse: "key_in_use",
    KeyReused: "key_reused",
}


class WalletService:
    def __init__(
        self, store: WalletStore, metrics: OperationMetrics, *, commit_shards: int = 1
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.committer = GroupCommitter(store, render, shards=commit_shards)

    def create_wallet(self, caller: Caller, wallet_id: str | None, currency: str) -> ApiResponse:
        wallet = self.store.create_wallet(caller.wallet(wallet_id or uuid.uuid4().hex), currency)
        self.metrics.operation("create", "ok")
        return ApiResponse(201, wallet.to_dict(), {"Location": f"/wallets/{wallet.id}"})

    def get_wallet(self, caller: Caller, wallet_id: str) -> ApiResponse:
        wallet = self.store.get_wallet(caller.wallet(wallet_id))
        if wallet is None:
            raise WalletNotFound(f"wallet {wallet_id!r} does not exist")
        return ApiResponse(200, wallet.to_dict())

    def history(
        self, caller: Caller, wallet_id: str, cursor: int | None, limit: int
    ) -> ApiResponse:
        wallet = caller.wallet(wallet_id)
        if self.store.get_wallet(wallet) is None:
            raise WalletNotFound(f"wallet {wallet_id!r} does not exist")
        entries, next_seq = self.store.history(wallet, before_seq=cursor, limit=limit)
        return ApiResponse(
            200,
            {
                "wallet_id": wallet_id,
                "items": [e.to_dict() for e in entries],
                "next_cursor": str(next_seq) if next_seq is not None else None,
            },
        )

    def move_money(
        self, caller: Caller, entry_type: EntryType, wallet_id: str, amount: int, request_fp: str
    ) -> ApiResponse:
        idem = self._idempotency(caller, wallet_id, request_fp)
        return self._run(MoneyOp(entry_type, wallet_id, amount, idem, actor=caller.actor))

    def transfer(
        self, caller: Caller, source: str, target: str, amount: int, request_fp: str
    ) -> ApiResponse:
        idem = self._idempotency(caller, source, request_fp)
        return self._run(TransferOp(source, target, amount, idem, actor=caller.actor))

    def _run(self, op: Op) -> ApiResponse:
        outcome = self.committer.submit(op)
        label = _OUTCOME_LABELS[type(outcome)]
        if isinstance(outcome, Refused) and isinstance(outcome.refusal, WalletNotFound):
            label = "not_found"
        self.metrics.operation(op.operation, label)
        response = render(op, outcome)
        headers = {"Idempotent-Replayed": "true"} if isinstance(outcome, Replayed) else {}
        if isinstance(outcome, KeyInUse):
            headers["Retry-After"] = "1"
        return ApiResponse(response.status, response.body, headers)

    @staticmethod
    def _idempotency(caller: Caller, wallet_id: str, request_fp: str) -> Idempotency | None:
        """Keys are scoped per tenant, not per API key (a retry sent with a
        rotated key replays), and per (source) wallet; hashed to bound their length."""
        if caller.idempotency_key is None:
            return None
        digest = hashlib.sha256(caller.idempotency_key.encode()).hexdigest()[:32]
        wallet = caller.wallet(wallet_id)
        legacy = None
        if wallet.tenant == DEFAULT_TENANT:  # its wallets may hold records from before tenants
            legacy = legacy_idempotency_key(wallet, caller.key.legacy_scope, digest)
        return Idempotency(idempotency_key(wallet, digest), request_fp, legacy)

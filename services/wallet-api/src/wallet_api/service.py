"""Use cases of the wallet API, between the HTTP routes and the Redis store.

Each money-moving call: optional idempotency claim -> commit (grouped per
wallet) -> a response that is also what a replay of the same key returns.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from wallet_api.combiner import GroupCommitter
from wallet_api.domain.ledger import EntryType, WalletNotFound
from wallet_api.problems import problem
from wallet_api.store import (
    Applied,
    ClaimLost,
    IdempotencyClaim,
    KeyInUse,
    KeyReusedWithDifferentRequest,
    MoneyOp,
    Outcome,
    Refused,
    Replay,
    StoredResponse,
    TransferApplied,
    TransferOp,
    TransferOutcome,
    WalletStore,
    idempotency_key,
)


class OperationMetrics(Protocol):
    def operation(self, operation: str, outcome: str) -> None: ...


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who is calling (API key scope) and the idempotency key they sent, if any."""

    scope: str
    idempotency_key: str | None = None


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def _refusal_body(outcome: Refused) -> dict[str, Any]:
    r = outcome.refusal
    return problem(r.status, r.slug, r.title, r.detail)


_CLAIM_LOST = problem(
    409,
    "idempotency-key-in-use",
    "Idempotency key in use",
    "another request took over this Idempotency-Key; retry with the same key",
)


def render_money(op: MoneyOp, outcome: Outcome) -> StoredResponse:
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
    if isinstance(outcome, Refused):
        return StoredResponse(outcome.refusal.status, _refusal_body(outcome))
    return StoredResponse(409, _CLAIM_LOST)


def render_transfer(op: TransferOp, outcome: TransferOutcome) -> StoredResponse:
    if isinstance(outcome, TransferApplied):
        return StoredResponse(
            201,
            {
                "id": outcome.transfer_id,
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
        return StoredResponse(outcome.refusal.status, _refusal_body(outcome))
    return StoredResponse(409, _CLAIM_LOST)


def _outcome_label(status: int) -> str:
    return {200: "ok", 201: "ok", 404: "not_found", 409: "refused", 422: "refused"}.get(
        status, "error"
    )


class WalletService:
    def __init__(self, store: WalletStore, metrics: OperationMetrics) -> None:
        self.store = store
        self.metrics = metrics
        self.committer = GroupCommitter(store)

    def create_wallet(self, wallet_id: str | None, currency: str) -> ApiResponse:
        wallet = self.store.create_wallet(wallet_id or uuid.uuid4().hex, currency)
        self.metrics.operation("create", "ok")
        return ApiResponse(201, wallet.to_dict(), {"Location": f"/wallets/{wallet.id}"})

    def get_wallet(self, wallet_id: str) -> ApiResponse:
        wallet = self.store.get_wallet(wallet_id)
        if wallet is None:
            raise WalletNotFound(f"wallet {wallet_id!r} does not exist")
        return ApiResponse(200, wallet.to_dict())

    def history(self, wallet_id: str, cursor: int | None, limit: int) -> ApiResponse:
        wallet = self.store.get_wallet(wallet_id)
        if wallet is None:
            raise WalletNotFound(f"wallet {wallet_id!r} does not exist")
        entries, next_seq = self.store.history(wallet_id, before_seq=cursor, limit=limit)
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
        operation = entry_type.value
        decided = self._claim(caller, wallet_id, request_fp, operation)
        if isinstance(decided, ApiResponse):
            return decided
        op = MoneyOp(entry_type, wallet_id, amount, claim=decided)
        try:
            outcome = self.committer.submit(op, render_money)
        except Exception:
            self._release(decided)
            raise
        if (
            decided is not None
            and isinstance(outcome, Refused)
            and isinstance(outcome.refusal, WalletNotFound)
        ):
            self._release(decided)  # not recorded: the wallet may exist on retry
        return self._respond(operation, render_money(op, outcome), outcome)

    def transfer(
        self, caller: Caller, source: str, target: str, amount: int, request_fp: str
    ) -> ApiResponse:
        decided = self._claim(caller, source, request_fp, "transfer")
        if isinstance(decided, ApiResponse):
            return decided
        op = TransferOp(source, target, amount, claim=decided)
        try:
            outcome = self.store.transfer(op, render_transfer)
        except Exception:
            self._release(decided)
            raise
        if (
            decided is not None
            and isinstance(outcome, Refused)
            and isinstance(outcome.refusal, WalletNotFound)
        ):
            self._release(decided)
        return self._respond("transfer", render_transfer(op, outcome), outcome)

    def _respond(self, operation: str, stored: StoredResponse, outcome: object) -> ApiResponse:
        label = "claim_lost" if isinstance(outcome, ClaimLost) else _outcome_label(stored.status)
        self.metrics.operation(operation, label)
        return ApiResponse(stored.status, stored.body)

    def _claim(
        self, caller: Caller, wallet_id: str, request_fp: str, operation: str
    ) -> IdempotencyClaim | ApiResponse | None:
        """None: no key sent; a claim: proceed; an ApiResponse: answer with it."""
        if caller.idempotency_key is None:
            return None
        digest = hashlib.sha256(caller.idempotency_key.encode()).hexdigest()[:32]
        key = idempotency_key(wallet_id, caller.scope, digest)
        decision = self.store.claim_idempotency_key(key, request_fp)
        if isinstance(decision, IdempotencyClaim):
            return decision
        if isinstance(decision, Replay):
            self.metrics.operation(operation, "replayed")
            return ApiResponse(
                decision.response.status,
                decision.response.body,
                {"Idempotent-Replayed": "true"},
            )
        if isinstance(decision, KeyInUse):
            self.metrics.operation(operation, "key_in_use")
            return ApiResponse(
                409,
                problem(
                    409,
                    "idempotency-key-in-use",
                    "Idempotency key in use",
                    "a request with this Idempotency-Key is still in progress; retry later",
                ),
                {"Retry-After": "1"},
            )
        assert isinstance(decision, KeyReusedWithDifferentRequest)
        self.metrics.operation(operation, "key_reused")
        return ApiResponse(
            422,
            problem(
                422,
                "idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request; use a new key",
            ),
        )

    def _release(self, claim: IdempotencyClaim | None) -> None:
        if claim is not None:
            self.store.release_claim(claim)

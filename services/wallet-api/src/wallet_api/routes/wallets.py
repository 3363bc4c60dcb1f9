"""Wallets, deposits, withdrawals, transfers and history (Bearer API key).

What each operation accepts and answers is declared once, in @operation and the
models, with the scope its API key needs; the views only check what no schema
can say (a transfer between two different wallets, the server's MAX_AMOUNT)
and call the service, which works within the caller's tenant.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from wallet_api.context import wallet_context
from wallet_api.contract import REPLAYED, operation
from wallet_api.domain.ledger import EntryType
from wallet_api.keys import MONEY_MOVE, WALLETS_CREATE, WALLETS_READ
from wallet_api.models import (
    AmountRequest,
    CreateWalletRequest,
    MoneyResult,
    TransactionPage,
    TransactionsQuery,
    Transfer,
    TransferRequest,
    Wallet,
)
from wallet_api.problems import FieldError
from wallet_api.service import ApiResponse, Caller, fingerprint

bp = Blueprint("wallets", __name__)

LOCATION = {"Location": {"description": "The new wallet's URL", "schema": {"type": "string"}}}
_KEY_IN_USE = {
    "Retry-After": {
        "description": "Present when a concurrent request with this Idempotency-Key won",
        "schema": {"type": "string"},
    }
}
_MONEY: dict[str, Any] = {
    "problems": (404, 409, 422, 503),  # 422: balance limit, currency, key reused
    "idempotent": True,
    "scope": MONEY_MOVE,
    "headers": {200: REPLAYED, 201: REPLAYED, 409: {**REPLAYED, **_KEY_IN_USE}, 422: REPLAYED},
}


@bp.post("/wallets")
@operation(
    (201, Wallet, "Created"),
    problems=(409, 503),
    body=CreateWalletRequest,
    scope=WALLETS_CREATE,
    headers={201: LOCATION},
)
def create_wallet(caller: Caller, body: CreateWalletRequest, raw: dict[str, Any]) -> ApiResponse:
    """Create a wallet

    The wallet belongs to the API key's tenant. Ids are unique per tenant:
    supply `id` to make creation safe to retry (409 if your tenant has it).
    """
    return wallet_context().service.create_wallet(caller, body.id, body.currency)


@bp.get("/wallets/<wallet_id>")
@operation((200, Wallet, "The wallet"), problems=(503,), scope=WALLETS_READ)
def get_wallet(caller: Caller, wallet_id: str) -> ApiResponse:
    """A wallet and its balance"""
    return wallet_context().service.get_wallet(caller, wallet_id)


@bp.get("/wallets/<wallet_id>/transactions")
@operation(
    (200, TransactionPage, "A page of entries"),
    problems=(503,),
    query=TransactionsQuery,
    scope=WALLETS_READ,
)
def transactions(caller: Caller, query: TransactionsQuery, wallet_id: str) -> ApiResponse:
    """Ledger entries, newest first

    Each entry names the API key (`key_id`) and the request (`request_id`)
    that moved the money.
    """
    cursor = int(query.cursor) if query.cursor is not None else None
    return wallet_context().service.history(caller, wallet_id, cursor, query.limit)


@bp.post("/wallets/<wallet_id>/deposit")
@operation((200, MoneyResult, "Applied"), body=AmountRequest, **_MONEY)
def deposit(
    caller: Caller, body: AmountRequest, raw: dict[str, Any], wallet_id: str
) -> ApiResponse:
    """Add funds

    Credits the wallet.
    """
    return _move(caller, EntryType.DEPOSIT, wallet_id, body.amount, raw)


@bp.post("/wallets/<wallet_id>/withdraw")
@operation((200, MoneyResult, "Applied"), body=AmountRequest, **_MONEY)
def withdraw(
    caller: Caller, body: AmountRequest, raw: dict[str, Any], wallet_id: str
) -> ApiResponse:
    """Remove funds

    Debits the wallet; 409 insufficient-funds changes nothing.
    """
    return _move(caller, EntryType.WITHDRAWAL, wallet_id, body.amount, raw)


@bp.post("/transfers")
@operation((201, Transfer, "Transferred"), body=TransferRequest, **_MONEY)
def transfer(caller: Caller, body: TransferRequest, raw: dict[str, Any]) -> ApiResponse:
    """Move funds between two wallets atomically"""
    if body.source == body.target:
        raise FieldError("to", "must differ from 'from'")
    _within_max_amount(body.amount)
    fp = fingerprint(request.method, request.path, raw)
    service = wallet_context().service
    return service.transfer(caller, body.source, body.target, body.amount, fp)


def _move(
    caller: Caller, entry_type: EntryType, wallet_id: str, amount: int, raw: dict[str, Any]
) -> ApiResponse:
    _within_max_amount(amount)
    fp = fingerprint(request.method, request.path, raw)
    return wallet_context().service.move_money(caller, entry_type, wallet_id, amount, fp)


def _within_max_amount(amount: int) -> None:
    """MAX_AMOUNT is a server setting, so no static schema can carry it."""
    maximum = wallet_context().settings.max_amount
    if amount > maximum:
        raise FieldError("amount", f"must be at most {maximum}")

"""The API contract as typed models: the single source of the request rules,
of the response shapes and of /openapi.json.

Request models are strict (pydantic strict mode): an integer is a JSON integer,
never a bool, a float or a numeric string; unknown fields are refused; strings
must match their pattern as a whole. Patterns are run by pydantic's Rust regex
engine, where ``$`` is the end of the text (Python's ``re`` would also let it
match before a trailing newline: ``"abc\\n"`` passed ``^...$`` there), and
``[0-9]`` is ASCII only (``str.isdigit()`` also accepts ``"²"``). JSON Schema
reads these patterns with ECMA-262 semantics, which agree.

Each constrained field's description is written as the rule it enforces: a
refused value is answered with ``<field>: must be <description>`` (see
validation.py), so the documentation and the error message cannot drift apart.

Response models are the documented shape of every answer; in the test suites
each answer is validated against its model as it is sent (contract.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from wallet_api.domain.money import MAX_SAFE_BALANCE

MAX_PAGE = 100
_ASCII_INT = re.compile(r"[0-9]{1,9}")


def _reject_null(value: object) -> object:
    """Optional fields may be left out, but not sent as null."""
    if value is None:
        raise ValueError("null")
    return value


def _query_int(value: object) -> object:
    """A query-string integer: ASCII digits only (no sign, space, '_' or '²').

    Query values are always strings, so this is the one place a string becomes
    an integer; everything else in the request models is strict."""
    if isinstance(value, str) and _ASCII_INT.fullmatch(value):
        return int(value)
    raise ValueError("not an integer")


WalletId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
    ),
]
Currency = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{3}$",
        description="a three-letter upper-case ISO 4217 code, e.g. EUR",
        examples=["EUR"],
    ),
]
Amount = Annotated[
    int,
    Field(
        gt=0,
        le=MAX_SAFE_BALANCE,
        description="an integer number of minor units, e.g. 1250 for 12.50",
    ),
]
Balance = Annotated[int, Field(ge=0, le=MAX_SAFE_BALANCE, description="minor units")]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
IdempotencyKeyValue = Annotated[
    str,
    Field(
        pattern=r"^[\x21-\x7e]{1,255}$",
        description=(
            "1-255 visible ASCII characters. Makes the request safe to retry: the same "
            "key and body return the first response (with Idempotent-Replayed: true) "
            "without moving money again. Scoped per tenant (a retry sent with another "
            "API key of the same tenant replays) and per wallet (the `from` wallet for "
            "transfers); kept for IDEMPOTENCY_TTL_SECONDS (default 24 h)."
        ),
    ),
]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, regex_engine="rust-regex")


class _Response(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# -- requests ------------------------------------------------------------------


class CreateWalletRequest(_Request):
    """Supply `id` to make creation safe to retry (409 if it exists)."""

    currency: Currency
    id: Annotated[WalletId | SkipJsonSchema[None], BeforeValidator(_reject_null)] = None


class AmountRequest(_Request):
    """The amount may not exceed the server's MAX_AMOUNT setting either."""

    amount: Amount


class TransferRequest(_Request):
    """The amount may not exceed the server's MAX_AMOUNT setting either."""

    source: WalletId = Field(alias="from")
    target: WalletId = Field(alias="to")
    amount: Amount


class TransactionsQuery(_Request):
    limit: Annotated[
        int,
        Field(ge=1, le=MAX_PAGE, description=f"an integer from 1 to {MAX_PAGE}"),
        BeforeValidator(_query_int),
    ] = 20
    cursor: (
        Annotated[
            str,
            Field(pattern=r"^[0-9]{1,18}$", description="a next_cursor value from a previous page"),
        ]
        | SkipJsonSchema[None]
    ) = None  # absent: the first page


class IdempotencyHeaders(_Request):
    # Only this header is validated (the others are not the API's business).
    idempotency_key: IdempotencyKeyValue | SkipJsonSchema[None] = Field(
        default=None, alias="Idempotency-Key"
    )


# -- responses -----------------------------------------------------------------


class Health(_Response):
    status: str


class Status(_Response):
    service: str
    version: str
    status: Literal["ok", "degraded"]
    redis: Literal["ok", "unreachable"]
    replica: str
    hostname: str
    pid: int
    uptime_seconds: float


class Wallet(_Response):
    id: WalletId
    currency: Currency
    balance: Balance
    created_at: Timestamp


class Transaction(_Response):
    id: str
    wallet_id: WalletId
    seq: Annotated[int, Field(ge=1)]
    type: Literal["deposit", "withdrawal", "transfer_in", "transfer_out"]
    amount: Amount
    balance_after: Balance
    created_at: Timestamp
    # Present on the two entries of a transfer only.
    transfer_id: str | SkipJsonSchema[None] = None
    counterparty: WalletId | SkipJsonSchema[None] = None
    # The audit trail; absent only on entries written before it was recorded.
    key_id: str | SkipJsonSchema[None] = Field(
        default=None, description="public id of the API key that moved the money"
    )
    request_id: str | SkipJsonSchema[None] = Field(
        default=None, description="X-Request-ID of the request that moved the money"
    )


class MoneyResult(_Response):
    wallet_id: WalletId
    currency: Currency
    balance: Balance
    transaction: Transaction


class Transfer(_Response):
    id: str
    source: WalletId = Field(alias="from")
    target: WalletId = Field(alias="to")
    amount: Amount
    currency: Currency
    balance: Annotated[
        int,
        Field(ge=0, le=MAX_SAFE_BALANCE, description="Balance of `from` after the transfer"),
    ]
    transaction: Transaction
    created_at: Timestamp


class TransactionPage(_Response):
    wallet_id: WalletId
    items: list[Transaction]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class FieldProblem(_Response):
    field: str
    detail: str


class Problem(_Response):
    """An RFC 9457 problem document: every error this API returns has this shape."""

    type: Annotated[str, Field(json_schema_extra={"format": "uri"})]
    title: str
    status: Annotated[int, Field(ge=400, le=599)]
    detail: str
    instance: str = Field(description="the request's path")
    request_id: str = Field(description="also sent as the X-Request-ID header")
    errors: list[FieldProblem] | SkipJsonSchema[None] = Field(
        default=None, description="validation problems: one per refused field"
    )


# Every 503 this API answers, by problem type (app.py raises them, store.py
# types every Redis error as one of them): retry later, with Retry-After.
UnavailableType = Literal[
    "urn:wallet-stack:problem:redis-unavailable",
    "urn:wallet-stack:problem:storage-full",
    "urn:wallet-stack:problem:contention",
    "urn:wallet-stack:problem:outcome-unknown",
    "urn:wallet-stack:problem:wallet-unavailable",
]


class UnavailableProblem(Problem):
    """A 503 problem document; `type` says what happened and whether anything changed."""

    type: UnavailableType = Field(
        description=(
            "redis-unavailable: Redis is unreachable or cannot take writes (e.g. during a "
            "failover), nothing changed; storage-full: Redis is out of memory or disk, "
            "nothing changed, reads still work; contention: the wallet is too busy, nothing "
            "changed; outcome-unknown: the commit may have happened (or too few replicas "
            "confirmed it): retry with the same Idempotency-Key; wallet-unavailable: the "
            "wallet's stored data cannot be read, nothing changed"
        )
    )

"""Ledger rules: how an operation changes a balance, and what it records.

Pure functions over integers; the Redis store calls them inside its
WATCH/MULTI transaction so the rule and the write see the same balance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from wallet_api.domain.money import MAX_SAFE_BALANCE


class EntryType(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER_IN = "transfer_in"
    TRANSFER_OUT = "transfer_out"

    @property
    def credits(self) -> bool:
        return self in (EntryType.DEPOSIT, EntryType.TRANSFER_IN)


class DomainRefusal(Exception):
    """A request that is well formed but not allowed by the ledger rules."""

    status = 409
    slug = "refused"
    title = "Operation refused"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InsufficientFunds(DomainRefusal):
    slug = "insufficient-funds"
    title = "Insufficient funds"


class BalanceLimitExceeded(DomainRefusal):
    status = 422
    slug = "balance-limit"
    title = "Balance limit exceeded"


class CurrencyMismatch(DomainRefusal):
    status = 422
    slug = "currency-mismatch"
    title = "Currency mismatch"


class WalletNotFound(DomainRefusal):
    status = 404
    slug = "wallet-not-found"
    title = "Wallet not found"


class SameWallet(DomainRefusal):
    """A transfer from a wallet to itself: refused, never booked as two postings."""

    status = 422
    slug = "same-wallet"
    title = "Same wallet"


class WalletExists(DomainRefusal):
    slug = "wallet-exists"
    title = "Wallet already exists"


def apply_entry(balance: int, entry_type: EntryType, amount: int) -> int:
    """Return the balance after the entry, or raise a DomainRefusal.

    A refused entry changes nothing: callers apply the result only on success.
    """
    if amount <= 0:  # guarded at the edge too; the ledger never trusts callers
        raise ValueError("ledger amounts are positive")
    if entry_type.credits:
        after = balance + amount
        if after > MAX_SAFE_BALANCE:
            raise BalanceLimitExceeded(f"balance would exceed {MAX_SAFE_BALANCE} minor units")
        return after
    if amount > balance:
        raise InsufficientFunds(f"balance is {balance}, {amount} requested")
    return balance - amount


@dataclass(frozen=True)
class LedgerEntry:
    """One line of a wallet's history; `seq` orders a wallet's entries.

    `key_id` and `request_id` are the audit trail: which API key moved the
    money, in which request. Entries written before they were recorded have
    neither."""

    id: str
    wallet_id: str
    seq: int
    type: str
    amount: int
    balance_after: int
    created_at: str
    transfer_id: str | None = None
    counterparty: str | None = None
    key_id: str | None = None
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Hand-written, not dataclasses.asdict: this runs several times per
        # money movement and asdict's deep copy showed up in profiles.
        data: dict[str, Any] = {
            "id": self.id,
            "wallet_id": self.wallet_id,
            "seq": self.seq,
            "type": self.type,
            "amount": self.amount,
            "balance_after": self.balance_after,
            "created_at": self.created_at,
        }
        if self.transfer_id is not None:
            data["transfer_id"] = self.transfer_id
        if self.counterparty is not None:
            data["counterparty"] = self.counterparty
        if self.key_id is not None:
            data["key_id"] = self.key_id
        if self.request_id is not None:
            data["request_id"] = self.request_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        return cls(**data)


@dataclass(frozen=True)
class Wallet:
    id: str
    currency: str
    balance: int
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

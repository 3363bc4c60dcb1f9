"""Money is an integer count of minor units (cents) plus an ISO 4217 code.

Floats never represent money here: JSON floats, numeric strings and booleans are
refused at the edge, so arithmetic below is exact integer arithmetic.
"""

from __future__ import annotations

import re

# Balances stay within the integers a JavaScript client can hold exactly
# (Number.MAX_SAFE_INTEGER), so no consumer of the JSON silently rounds money.
MAX_SAFE_BALANCE = 2**53 - 1

_CURRENCY = re.compile(r"^[A-Z]{3}$")


class FieldError(ValueError):
    """A request field failed validation; `field` names it as the client sent it."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def parse_amount(value: object, *, maximum: int, field: str = "amount") -> int:
    """Return a positive integer amount of minor units or raise FieldError."""
    # bool is a subclass of int in Python: `true` must not mean 1 cent.
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, "must be an integer number of minor units, e.g. 1250 for 12.50")
    if value <= 0:
        raise FieldError(field, "must be greater than 0")
    if value > maximum:
        raise FieldError(field, f"must be at most {maximum}")
    return value


def parse_currency(value: object, *, field: str = "currency") -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise FieldError(field, "must be a three-letter upper-case ISO 4217 code, e.g. EUR")
    return value

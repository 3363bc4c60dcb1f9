import pytest

from wallet_api.domain.ledger import (
    BalanceLimitExceeded,
    EntryType,
    InsufficientFunds,
    apply_entry,
)
from wallet_api.domain.money import MAX_SAFE_BALANCE
from wallet_api.models import AmountRequest, CreateWalletRequest
from wallet_api.problems import FieldError
from wallet_api.validation import validate


def parse_amount(value: object) -> int:
    return validate(AmountRequest, {"amount": value}, unknown="is not a known field").amount


def parse_currency(value: object) -> str:
    return validate(CreateWalletRequest, {"currency": value}, unknown="-").currency


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "integer"),
        (False, "integer"),
        (12.5, "integer"),
        (12.0, "integer"),
        ("1250", "integer"),
        (None, "integer"),
        ([1], "integer"),
        (0, "greater than 0"),
        (-5, "greater than 0"),
        (MAX_SAFE_BALANCE + 1, f"at most {MAX_SAFE_BALANCE}"),
    ],
)
def test_parse_amount_refuses(value: object, reason: str) -> None:
    with pytest.raises(FieldError) as err:
        parse_amount(value)
    assert err.value.field == "amount"
    assert reason in err.value.detail


@pytest.mark.parametrize("value", [1, 999, 1000, MAX_SAFE_BALANCE])
def test_parse_amount_accepts_positive_integers(value: int) -> None:
    assert parse_amount(value) == value


@pytest.mark.parametrize(
    "value", ["eur", "EURO", "E1R", "", 978, None, "EUR\n", "\nEUR", "\uff25\uff35\uff32"]
)
def test_parse_currency_refuses(value: object) -> None:
    with pytest.raises(FieldError):
        parse_currency(value)


def test_credit_and_debit_are_exact() -> None:
    assert apply_entry(10, EntryType.DEPOSIT, 5) == 15
    assert apply_entry(15, EntryType.WITHDRAWAL, 15) == 0
    assert apply_entry(0, EntryType.TRANSFER_IN, 7) == 7
    assert apply_entry(7, EntryType.TRANSFER_OUT, 2) == 5


def test_overdraw_is_refused() -> None:
    with pytest.raises(InsufficientFunds, match="balance is 10, 11 requested"):
        apply_entry(10, EntryType.WITHDRAWAL, 11)


def test_balance_never_exceeds_the_json_safe_limit() -> None:
    assert apply_entry(MAX_SAFE_BALANCE - 1, EntryType.DEPOSIT, 1) == MAX_SAFE_BALANCE
    with pytest.raises(BalanceLimitExceeded):
        apply_entry(MAX_SAFE_BALANCE, EntryType.DEPOSIT, 1)


def test_ledger_rejects_non_positive_amounts_even_from_trusted_callers() -> None:
    with pytest.raises(ValueError):
        apply_entry(10, EntryType.DEPOSIT, 0)

"""Wallets, deposits, withdrawals, transfers and history (Bearer API key)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from wallet_api.context import wallet_context
from wallet_api.domain.ledger import EntryType
from wallet_api.domain.money import FieldError, parse_amount, parse_currency
from wallet_api.problems import ProblemError, field_problem, problem
from wallet_api.service import ApiResponse, Caller, fingerprint

bp = Blueprint("wallets", __name__)

WALLET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_PAGE = 100


def _json(resp: ApiResponse) -> Response:
    response = Response(json.dumps(resp.body), status=resp.status, mimetype="application/json")
    if resp.status >= 400:
        response.mimetype = "application/problem+json"
    for name, value in resp.headers.items():
        response.headers[name] = value
    return response


def _caller(*, idempotent: bool = False, query: frozenset[str] = frozenset()) -> Caller:
    """Authenticate; also refuse query parameters the endpoint does not know
    (a typo such as ?limt=5 must not be silently ignored)."""
    ctx = wallet_context()
    scope = ctx.api_keys.authenticate(request.headers.get("Authorization"))
    key = request.headers.get("Idempotency-Key") if idempotent else None
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise ProblemError(
            field_problem("Idempotency-Key", "must be 1-255 visible ASCII characters")
        )
    unknown = sorted(set(request.args) - query)
    if unknown:
        raise FieldError(unknown[0], "is not a known query parameter")
    return Caller(scope, key)


def _wallet_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not WALLET_ID.match(value):
        raise FieldError(field, "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise FieldError(key, "appears more than once")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> None:
    raise FieldError("body", f"{name} is not valid JSON")


def _body(allowed: set[str], required: set[str]) -> dict[str, Any]:
    """The request's JSON object, or a problem naming what is wrong."""
    if request.mimetype != "application/json":
        raise ProblemError(
            problem(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as Content-Type: application/json",
            )
        )
    raw = request.get_data(cache=True)
    try:
        body = json.loads(
            raw, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except FieldError:
        raise
    except (ValueError, RecursionError):
        raise ProblemError(
            problem(400, "malformed-json", "Malformed JSON", "the body is not valid JSON")
        ) from None
    if not isinstance(body, dict):
        raise ProblemError(
            problem(400, "malformed-json", "Malformed JSON", "the body must be a JSON object")
        )
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise FieldError(unknown[0], "is not a known field")
    missing = sorted(required - set(body))
    if missing:
        raise FieldError(missing[0], "is required")
    return body


def _path_wallet(wallet_id: str) -> str:
    if not WALLET_ID.match(wallet_id):
        raise ProblemError(
            problem(404, "wallet-not-found", "Wallet not found", "no wallet has this id")
        )
    return wallet_id


@bp.post("/wallets")
def create_wallet() -> Response:
    _caller()
    body = _body({"currency", "id"}, {"currency"})
    currency = parse_currency(body["currency"])
    wallet_id = _wallet_id(body["id"], "id") if "id" in body else None
    return _json(wallet_context().service.create_wallet(wallet_id, currency))


@bp.get("/wallets/<wallet_id>")
def get_wallet(wallet_id: str) -> Response:
    _caller()
    return _json(wallet_context().service.get_wallet(_path_wallet(wallet_id)))


@bp.get("/wallets/<wallet_id>/transactions")
def transactions(wallet_id: str) -> Response:
    _caller(query=frozenset({"limit", "cursor"}))
    limit_raw = request.args.get("limit", "20")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_PAGE:
        raise FieldError("limit", f"must be an integer from 1 to {MAX_PAGE}")
    cursor_raw = request.args.get("cursor")
    if cursor_raw is not None and not (cursor_raw.isdigit() and len(cursor_raw) <= 18):
        raise FieldError("cursor", "must be a next_cursor value from a previous page")
    cursor = int(cursor_raw) if cursor_raw is not None else None
    return _json(wallet_context().service.history(_path_wallet(wallet_id), cursor, int(limit_raw)))


def _money_route(entry_type: EntryType) -> Callable[[str], Response]:
    def handler(wallet_id: str) -> Response:
        caller = _caller(idempotent=True)
        body = _body({"amount"}, {"amount"})
        amount = parse_amount(body["amount"], maximum=wallet_context().settings.max_amount)
        wallet_id = _path_wallet(wallet_id)
        fp = fingerprint(request.method, request.path, body)
        return _json(wallet_context().service.move_money(caller, entry_type, wallet_id, amount, fp))

    handler.__name__ = entry_type.value
    return handler


bp.add_url_rule(
    "/wallets/<wallet_id>/deposit", view_func=_money_route(EntryType.DEPOSIT), methods=["POST"]
)
bp.add_url_rule(
    "/wallets/<wallet_id>/withdraw", view_func=_money_route(EntryType.WITHDRAWAL), methods=["POST"]
)


@bp.post("/transfers")
def transfer() -> Response:
    caller = _caller(idempotent=True)
    body = _body({"from", "to", "amount"}, {"from", "to", "amount"})
    source = _wallet_id(body["from"], "from")
    target = _wallet_id(body["to"], "to")
    if source == target:
        raise FieldError("to", "must differ from 'from'")
    amount = parse_amount(body["amount"], maximum=wallet_context().settings.max_amount)
    fp = fingerprint(request.method, request.path, body)
    return _json(wallet_context().service.transfer(caller, source, target, amount, fp))

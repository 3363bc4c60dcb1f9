"""The OpenAPI 3.1 description of this API (tests check responses against it)."""

from __future__ import annotations

from functools import cache
from typing import Any

from wallet_api import __version__
from wallet_api.domain.money import MAX_SAFE_BALANCE

PROBLEM = {"$ref": "#/components/responses/Problem"}
AUTH: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _json(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): PROBLEM for s in statuses}


WALLET_ID_PARAM = {
    "name": "wallet_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}
IDEMPOTENCY_PARAM = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes the request safe to retry: the same key and body return the first "
        "response (with Idempotent-Replayed: true) without moving money again. "
        "Scoped per API key and per wallet (the `from` wallet for transfers); "
        "kept for IDEMPOTENCY_TTL_SECONDS (default 24 h)."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "Present (true) when this is a stored response to an earlier request",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def _money(summary: str, description: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": description,
            "security": AUTH,
            "parameters": [WALLET_ID_PARAM, IDEMPOTENCY_PARAM],
            "requestBody": _body("AmountRequest"),
            "responses": {
                "200": _json("MoneyResult", "Applied", REPLAYED_HEADER),
                **_problems(400, 401, 404, 409, 413, 415, 422, 503),
            },
        }
    }


@cache
def build_spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wallet-api",
            "version": __version__,
            "description": (
                "Exact, concurrency-safe wallets on Redis. Amounts are positive integers "
                "in minor units (cents). Errors are RFC 9457 problem documents "
                "(application/problem+json). Insufficient funds is 409; validation "
                "errors are 422 and name the field."
            ),
        },
        "paths": {
            "/status": {
                "get": {
                    "summary": "Service status for humans and dashboards",
                    "responses": {"200": _json("Status", "Status")},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (does not touch Redis)",
                    "responses": {"200": _json("Health", "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness (Redis PING)",
                    "responses": {"200": _json("Health", "Ready"), **_problems(503)},
                }
            },
            "/wallets": {
                "post": {
                    "summary": "Create a wallet",
                    "description": "Supply `id` to make creation safe to retry (409 if it exists).",
                    "security": AUTH,
                    "requestBody": _body("CreateWalletRequest"),
                    "responses": {
                        "201": _json("Wallet", "Created"),
                        **_problems(400, 401, 409, 413, 415, 422, 503),
                    },
                }
            },
            "/wallets/{wallet_id}": {
                "get": {
                    "summary": "A wallet and its balance",
                    "security": AUTH,
                    "parameters": [WALLET_ID_PARAM],
                    "responses": {"200": _json("Wallet", "The wallet"), **_problems(401, 404, 503)},
                }
            },
            "/wallets/{wallet_id}/deposit": _money("Add funds", "Credits the wallet."),
            "/wallets/{wallet_id}/withdraw": _money(
                "Remove funds", "Debits the wallet; 409 insufficient-funds changes nothing."
            ),
            "/wallets/{wallet_id}/transactions": {
                "get": {
                    "summary": "Ledger entries, newest first",
                    "security": AUTH,
                    "parameters": [
                        WALLET_ID_PARAM,
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 100,
                                "default": 20,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "`next_cursor` of the previous page",
                            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        },
                    ],
                    "responses": {
                        "200": _json("TransactionPage", "A page of entries"),
                        **_problems(401, 404, 422, 503),
                    },
                }
            },
            "/transfers": {
                "post": {
                    "summary": "Move funds between two wallets atomically",
                    "security": AUTH,
                    "parameters": [IDEMPOTENCY_PARAM],
                    "requestBody": _body("TransferRequest"),
                    "responses": {
                        "201": _json("Transfer", "Transferred", REPLAYED_HEADER),
                        **_problems(400, 401, 404, 409, 413, 415, 422, 503),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "An RFC 9457 problem document",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
            },
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    amount = {"type": "integer", "minimum": 1, "description": "Minor units, e.g. 1250 = 12.50"}
    balance = {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_BALANCE}
    wallet_id = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
    entry = {
        "type": "object",
        "required": ["id", "wallet_id", "seq", "type", "amount", "balance_after", "created_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "wallet_id": wallet_id,
            "seq": {"type": "integer", "minimum": 1},
            "type": {"enum": ["deposit", "withdrawal", "transfer_in", "transfer_out"]},
            "amount": amount,
            "balance_after": balance,
            "created_at": {"type": "string", "format": "date-time"},
            "transfer_id": {"type": "string"},
            "counterparty": wallet_id,
        },
    }
    return {
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
        "Status": {
            "type": "object",
            "required": ["service", "version", "status", "redis", "replica", "uptime_seconds"],
            "properties": {
                "service": {"type": "string"},
                "version": {"type": "string"},
                "status": {"enum": ["ok", "degraded"]},
                "redis": {"enum": ["ok", "unreachable"]},
                "replica": {"type": "string"},
                "hostname": {"type": "string"},
                "pid": {"type": "integer"},
                "uptime_seconds": {"type": "number"},
            },
        },
        "CreateWalletRequest": {
            "type": "object",
            "required": ["currency"],
            "additionalProperties": False,
            "properties": {
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["EUR"]},
                "id": wallet_id,
            },
        },
        "AmountRequest": {
            "type": "object",
            "required": ["amount"],
            "additionalProperties": False,
            "properties": {"amount": amount},
        },
        "TransferRequest": {
            "type": "object",
            "required": ["from", "to", "amount"],
            "additionalProperties": False,
            "properties": {"from": wallet_id, "to": wallet_id, "amount": amount},
        },
        "Wallet": {
            "type": "object",
            "required": ["id", "currency", "balance", "created_at"],
            "additionalProperties": False,
            "properties": {
                "id": wallet_id,
                "currency": {"type": "string"},
                "balance": balance,
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "Transaction": entry,
        "MoneyResult": {
            "type": "object",
            "required": ["wallet_id", "currency", "balance", "transaction"],
            "additionalProperties": False,
            "properties": {
                "wallet_id": wallet_id,
                "currency": {"type": "string"},
                "balance": balance,
                "transaction": {"$ref": "#/components/schemas/Transaction"},
            },
        },
        "Transfer": {
            "type": "object",
            "required": ["id", "from", "to", "amount", "currency", "balance", "transaction"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string"},
                "from": wallet_id,
                "to": wallet_id,
                "amount": amount,
                "currency": {"type": "string"},
                "balance": {**balance, "description": "Balance of `from` after the transfer"},
                "transaction": {"$ref": "#/components/schemas/Transaction"},
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "TransactionPage": {
            "type": "object",
            "required": ["wallet_id", "items", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "wallet_id": wallet_id,
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Transaction"}},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "request_id": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "detail"],
                        "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
                    },
                },
            },
        },
    }

"""Turning an HTTP request into the typed models of models.py, or a problem.

The models hold the rules; this module only feeds them the request's parts
and turns pydantic's errors into the API's 422 problem, naming each refused
field as the client spelled it. What the models cannot see is checked here:
the media type (415), JSON syntax (400), and duplicate keys, which a JSON
parser would otherwise silently resolve to the last value.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, TypeAdapter, ValidationError

from wallet_api.models import IdempotencyHeaders, IdempotencyKeyValue, WalletId
from wallet_api.problems import FieldError, ProblemError, problem

M = TypeVar("M", bound=BaseModel)

IDEMPOTENCY_KEY = "Idempotency-Key"
WALLET_ID: TypeAdapter[str] = TypeAdapter(WalletId)
_IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKeyValue)
_RANGE = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
}


def json_body(model: type[M]) -> tuple[M, dict[str, Any]]:
    """The request's JSON object validated by `model`, and the object as sent."""
    if request.mimetype != "application/json":
        raise ProblemError(
            problem(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as Content-Type: application/json",
            )
        )
    raw = request.get_data(cache=True)  # beyond MAX_CONTENT_LENGTH: 413
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
    return validate(model, body, unknown="is not a known field"), body


def query(model: type[M] | None) -> M | None:
    """The query string validated by `model`; without a model, none is accepted
    (a typo such as ?limt=5 must not be silently ignored). A repeated
    parameter counts with its first value."""
    if not request.query_string:  # the common case: no MultiDict to build
        return validate(model, {}, unknown="") if model is not None else None
    if model is None:
        if request.args:  # "?&" has a query string but no parameter
            raise FieldError(min(request.args), "is not a known query parameter")
        return None
    return validate(model, request.args.to_dict(), unknown="is not a known query parameter")


def idempotency_key() -> str | None:
    """The Idempotency-Key header, validated by the type IdempotencyHeaders
    declares for it (through its adapter: no model instance per request)."""
    value = request.headers.get(IDEMPOTENCY_KEY)
    if value is None:
        return None
    try:
        return _IDEMPOTENCY_KEY.validate_python(value)
    except ValidationError:
        raise FieldError(
            IDEMPOTENCY_KEY, "must be " + _rules(IdempotencyHeaders)[IDEMPOTENCY_KEY]
        ) from None


def wallet_id(value: str) -> str:
    """A wallet id from the path: one that cannot exist is simply not found."""
    try:
        return WALLET_ID.validate_python(value)
    except ValidationError:
        raise ProblemError(
            problem(404, "wallet-not-found", "Wallet not found", "no wallet has this id")
        ) from None


def validate(model: type[M], data: dict[str, Any], *, unknown: str) -> M:
    try:
        # The compiled validator itself: model_validate() adds a Python-level
        # wrapper that costs more than validating these small inputs.
        result: M = model.__pydantic_validator__.validate_python(data)
    except ValidationError as exc:
        raise _field_errors(model, exc, unknown) from None
    return result


def _field_errors(model: type[BaseModel], exc: ValidationError, unknown: str) -> FieldError:
    rules = _rules(model)
    found: dict[str, str] = {}  # one error per field: a union reports one per branch
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else "body"
        if field in found:
            continue
        kind = error["type"]
        if kind == "missing":
            found[field] = "is required"
        elif kind == "extra_forbidden":
            found[field] = unknown
        elif kind in _RANGE:
            found[field] = _RANGE[kind].format(**error.get("ctx", {}))
        else:
            found[field] = "must be " + rules.get(field, "valid")
    (first, detail), *more = found.items()
    return FieldError(first, detail, *more)


@cache
def _rules(model: type[BaseModel]) -> dict[str, str]:
    """Field (as sent) -> the rule it must follow: its documented description."""
    properties = model.model_json_schema()["properties"]
    return {name: p["description"] for name, p in properties.items() if "description" in p}


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise FieldError(key, "appears more than once")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> None:
    raise FieldError("body", f"{name} is not valid JSON")

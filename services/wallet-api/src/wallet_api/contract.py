"""Declaring an operation once: what it accepts, what it may answer.

``@operation(...)`` on a view

* validates the request against the declared models (validation.py), in the
  order the API has always checked: API key (401), then its scope (403, before
  anything else is read, so a key without the scope learns nothing),
  Idempotency-Key, query string, body (415, 400, 413, 422), path ids (404);
* answers only with a status the operation declares (any other is a bug: 500),
  and, with ``Settings.validate_responses`` (the test suites turn it on),
  validates the body against the model declared for that status and
  serialises it through that model, so a body cannot drift from the document
  unnoticed. In production the body is serialised with json.dumps: measured
  side by side under gunicorn, validating and serialising our own answers with
  pydantic cost about 25 us CPU per deposit (about 4 %), json.dumps about 3;
* registers the same declarations with spectree (openapi.py), together with
  the statuses the checks above can produce, so /openapi.json lists every
  answer an operation gives.

The declarations are read once, at import; a request costs the validation and
one serialisation, no schema building.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Response, g, request
from pydantic import BaseModel, TypeAdapter
from spectree import Response as SpecResponse

from wallet_api import validation
from wallet_api.auth import require_scope
from wallet_api.context import wallet_context
from wallet_api.models import IdempotencyHeaders, Problem, UnavailableProblem
from wallet_api.openapi import BEARER, spec_tree
from wallet_api.problems import problem_response
from wallet_api.service import ApiResponse, Caller

# Every path parameter of the API, by name: validated (validation.wallet_id), and
# documented (openapi.py), as this type.
PATH_PARAMETERS: dict[str, TypeAdapter[Any]] = {"wallet_id": validation.WALLET_ID}
_INJECTED = {"caller", "query", "body", "raw"}  # what handler() passes besides path ids

REPLAYED = {
    "Idempotent-Replayed": {
        "description": "Present (true) when this is a stored response to an earlier request",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
_RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "Bearer challenge", "schema": {"type": "string"}}},
    403: {
        "WWW-Authenticate": {
            "description": 'Bearer challenge with error="insufficient_scope" and the scope needed',
            "schema": {"type": "string"},
        }
    },
    503: {"Retry-After": _RETRY_AFTER},
}

View = Callable[..., ApiResponse]


@dataclass(frozen=True)
class Contract:
    """What an operation answers: a model per status, and response headers."""

    responses: dict[int, type[BaseModel]]
    headers: dict[int, dict[str, Any]] = field(default_factory=dict)
    scope: str | None = None  # what the API key needs (keys.SCOPES); None: no key


def operation(
    ok: tuple[int, type[BaseModel], str],
    *,
    problems: tuple[int, ...] = (),
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    idempotent: bool = False,
    auth: bool = True,
    scope: str | None = None,
    headers: dict[int, dict[str, Any]] | None = None,
) -> Callable[[View], Callable[..., Response]]:
    """Declare a view's inputs and answers; see the module docstring.

    ``ok`` is (status, model, description) of the success answer; ``problems``
    the problem statuses the view itself may answer with. With ``auth`` the
    operation takes an API key, which must have ``scope`` (keys.SCOPES).
    Those the request checks produce are added here: 401 and 403 with
    ``auth``, 404 with a path id, 400/413/415/422 with a ``body``, 422 for a
    bad query string or Idempotency-Key.
    """
    if auth != (scope is not None):  # no operation forgets its scope
        raise TypeError("an operation with auth needs a scope, and only one with auth")
    success, model, description = ok
    statuses = set(problems)
    if auth:
        statuses |= {401, 403, 422}  # 422: an unknown query parameter
    if body is not None:
        statuses |= {400, 413, 415, 422}
    if query is not None or idempotent:
        statuses.add(422)
    header_model = IdempotencyHeaders if idempotent else None

    def decorate(view: View) -> Callable[..., Response]:
        path_ids = set(inspect.signature(view).parameters) - _INJECTED
        unknown = path_ids - PATH_PARAMETERS.keys()
        if unknown:  # a new path parameter needs its type in PATH_PARAMETERS
            raise TypeError(f"{view.__name__}: path parameters without a type: {unknown}")
        all_statuses = statuses | ({404} if path_ids else set())
        responses: dict[int, type[BaseModel]] = {success: model}
        responses.update(
            {s: UnavailableProblem if s == 503 else Problem for s in sorted(all_statuses)}
        )
        response_headers = {s: h for s, h in _HEADERS.items() if s in responses}
        for status, extra in (headers or {}).items():
            if status in responses:
                response_headers[status] = {**response_headers.get(status, {}), **extra}
        contract = Contract(responses, response_headers, scope)
        documented = spec_tree.validate(
            query=query,
            json=body,
            headers=header_model,
            resp=SpecResponse(
                **{
                    f"HTTP_{status}": (m, description) if status == success else m
                    for status, m in responses.items()
                }
            ),
            # OpenAPI 3.1: a non-OAuth scheme may list the roles it needs.
            security={BEARER: [scope]} if scope is not None else None,
            skip_validation=True,  # validated below, against the same models
        )(view)

        @functools.wraps(documented)  # spectree finds its declarations via __wrapped__
        def handler(**path: str) -> Response:
            kwargs: dict[str, Any] = {}
            if auth:
                assert scope is not None
                key = wallet_context().api_keys.authenticate(request.headers.get("Authorization"))
                g.key_id, g.tenant = key.id, key.tenant  # the access log's audit fields
                require_scope(key, scope)
                idempotency_key = validation.idempotency_key() if idempotent else None
                kwargs["caller"] = Caller(key, g.request_id, idempotency_key)
                parsed_query = validation.query(query)
                if parsed_query is not None:
                    kwargs["query"] = parsed_query
            if body is not None:
                kwargs["body"], kwargs["raw"] = validation.json_body(body)
            for name, value in path.items():
                kwargs[name] = validation.wallet_id(value)
            return _answer(view(**kwargs), contract)

        handler.contract = contract  # type: ignore[attr-defined]
        return handler

    return decorate


class UndocumentedAnswer(RuntimeError):
    """A view answered with a status its operation does not declare: a bug."""


def _answer(answer: ApiResponse, contract: Contract) -> Response:
    model = contract.responses.get(answer.status)
    if model is None:
        raise UndocumentedAnswer(f"{request.method} {request.path}: {answer.status}")
    if issubclass(model, Problem):
        return problem_response(answer.body, answer.headers)
    payload: str | bytes
    if wallet_context().settings.validate_responses:
        # The compiled validator and serializer: model_validate() and
        # model_dump_json() add Python-level wrappers (measured).
        document = model.__pydantic_validator__.validate_python(answer.body)
        payload = model.__pydantic_serializer__.to_json(document, by_alias=True, exclude_unset=True)
    else:
        payload = json.dumps(answer.body)
    response = Response(payload, status=answer.status, mimetype="application/json")
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response

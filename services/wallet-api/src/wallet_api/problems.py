"""RFC 9457 problem details: every error this API returns has this shape."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Response, g, request
from pydantic_core import PydanticSerializationError

from wallet_api.models import Problem, UnavailableProblem

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:wallet-stack:problem:"


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + slug if slug != "about:blank" else slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return body


def validation_problem(errors: list[tuple[str, str]]) -> dict[str, Any]:
    return problem(
        422,
        "validation",
        "Request validation failed",
        "; ".join(f"{field}: {detail}" for field, detail in errors),
        errors=[{"field": field, "detail": detail} for field, detail in errors],
    )


class FieldError(ValueError):
    """Request fields failed validation; each is named as the client sent it."""

    def __init__(self, field: str, detail: str, *more: tuple[str, str]) -> None:
        self.errors = [(field, detail), *more]
        self.field, self.detail = field, detail  # the first
        super().__init__("; ".join(f"{f}: {d}" for f, d in self.errors))


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("detail", ""))
        self.body = body
        self.headers = headers or {}


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """The one way a problem leaves the API, whether raised now, rendered from a
    ledger outcome or replayed from an idempotency record: each answer carries
    this request's path and id, never those of the request first answered."""
    request_id = getattr(g, "request_id", None)
    if request_id is None:  # only if the request-id hook did not run
        request_id = g.request_id = uuid.uuid4().hex
    # A 503 must carry one of the documented 503 types (models.UnavailableProblem).
    model = UnavailableProblem if body.get("status") == 503 else Problem
    document = model.model_validate({**body, "instance": request.path, "request_id": request_id})
    try:
        text = document.model_dump_json(exclude_unset=True)
    except PydanticSerializationError:
        # Text from the request that UTF-8 cannot carry: a lone surrogate ("\\ud800" in
        # a JSON key), which json.loads accepts and a field error repeats. json.dumps
        # writes it as the same escape instead of failing (a 500).
        text = json.dumps(document.model_dump(mode="json", exclude_unset=True))
    response = Response(text, status=document.status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response

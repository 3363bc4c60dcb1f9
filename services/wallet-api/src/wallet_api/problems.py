"""RFC 9457 problem details: every error this API returns has this shape."""

from __future__ import annotations

from typing import Any

from flask import Response, g, json, request

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


def field_problem(field: str, detail: str) -> dict[str, Any]:
    return problem(
        422,
        "validation",
        "Request validation failed",
        f"{field}: {detail}",
        errors=[{"field": field, "detail": detail}],
    )


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("detail", ""))
        self.body = body
        self.headers = headers or {}


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    body = dict(body)
    body.setdefault("instance", request.path)
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=body["status"], mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response

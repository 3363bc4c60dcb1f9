"""The OpenAPI document and a self-contained docs page (no CDN)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app

from wallet_api.openapi import build_spec

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return build_spec()


@bp.get("/docs")
def docs() -> Response:
    return current_app.send_static_file("docs.html")

"""HTTP blueprints: health/status, wallets and transfers, API docs."""

from __future__ import annotations

from flask import Blueprint

from wallet_api.routes import docs, health, wallets

# The blueprints whose operations /openapi.json documents.
API_BLUEPRINTS: tuple[Blueprint, ...] = (health.bp, wallets.bp)
ALL_BLUEPRINTS: tuple[Blueprint, ...] = (*API_BLUEPRINTS, docs.bp)

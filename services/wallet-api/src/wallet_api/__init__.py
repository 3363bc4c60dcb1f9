"""wallet-api: a stateless Flask wallet service on Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "1.0.0"

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    # Imported lazily: gunicorn.conf.py imports wallet_api.config before the
    # app, and prometheus_client must not be imported before it sets
    # PROMETHEUS_MULTIPROC_DIR.
    from wallet_api.app import create_app as factory

    return factory(*args, **kwargs)

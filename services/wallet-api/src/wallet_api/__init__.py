"""wallet-api: a stateless Flask wallet service on Redis."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

# One version source: the package metadata, i.e. pyproject.toml's [project]
# version (helm/wallet-stack/Chart.yaml's appVersion is tested against it).
try:
    __version__ = version("wallet-api")
except PackageNotFoundError:  # pragma: no cover - a source tree never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    # Imported lazily: gunicorn.conf.py imports wallet_api.config before the
    # app, and prometheus_client must not be imported before it sets
    # PROMETHEUS_MULTIPROC_DIR.
    from wallet_api.app import create_app as factory

    return factory(*args, **kwargs)

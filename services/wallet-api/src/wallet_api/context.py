"""What the routes need from the app, kept on ``app.extensions``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import current_app

from wallet_api.auth import ApiKeys
from wallet_api.config import Settings
from wallet_api.service import WalletService
from wallet_api.store import WalletStore

EXTENSION = "wallet_api"


@dataclass
class WalletContext:
    settings: Settings
    store: WalletStore
    service: WalletService
    api_keys: ApiKeys
    started_at: float = field(default_factory=time.monotonic)


def wallet_context() -> WalletContext:
    ctx: WalletContext = current_app.extensions[EXTENSION]
    return ctx

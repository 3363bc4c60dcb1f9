"""Settings from environment variables only (12-factor), validated at start-up.

A bad value stops the process with one line naming the variable, e.g.
``configuration error: MAX_AMOUNT: must be an integer, got 'ten'``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

from wallet_api.domain.money import MAX_SAFE_BALANCE

T = TypeVar("T")

MIN_API_KEY_LENGTH = 16


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    redis_url: str
    api_keys: tuple[str, ...]
    idempotency_ttl: int = 86_400
    max_amount: int = 10_000_000_000
    watch_max_attempts: int = 12
    commit_shards: int = 1
    redis_timeout: float = 2.0
    max_body_bytes: int = 16_384
    log_level: str = "INFO"
    replica_id: str = "local"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, parse: Callable[[str], T], default: T) -> T:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None

        return cls(
            redis_url=get("REDIS_URL", _redis_url, "redis://127.0.0.1:6379/0"),
            api_keys=_api_keys(env.get("WALLET_API_KEYS", "")),
            idempotency_ttl=get("IDEMPOTENCY_TTL_SECONDS", _int_between(60, 30 * 86_400), 86_400),
            max_amount=get("MAX_AMOUNT", _int_between(1, MAX_SAFE_BALANCE), 10_000_000_000),
            watch_max_attempts=get("WATCH_MAX_ATTEMPTS", _int_between(1, 100), 12),
            commit_shards=get("COMMIT_SHARDS", _int_between(1, 64), 1),
            redis_timeout=get("REDIS_TIMEOUT_SECONDS", _float_between(0.05, 60.0), 2.0),
            max_body_bytes=get("MAX_BODY_BYTES", _int_between(256, 1_048_576), 16_384),
            log_level=get("LOG_LEVEL", _log_level, "INFO"),
            replica_id=get("REPLICA_ID", str, socket.gethostname()),
        )


def _redis_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in ("redis", "rediss", "unix") or not (parsed.hostname or parsed.path):
        raise ValueError("must look like redis://[:password@]host:6379/0")
    return raw


def _api_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not keys:
        raise ConfigError("WALLET_API_KEYS: set at least one bearer token (comma-separated)")
    short = [i for i, k in enumerate(keys) if len(k) < MIN_API_KEY_LENGTH]
    if short:
        raise ConfigError(
            f"WALLET_API_KEYS: key #{short[0] + 1} is shorter than {MIN_API_KEY_LENGTH} characters"
        )
    return keys


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level

"""Redis clients from the settings: straight to REDIS_URL, or through Sentinel.

With REDIS_SENTINELS set, redis-py's Sentinel finds the primary named
REDIS_MASTER_NAME: every new connection asks the Sentinels, a connection that
meets READONLY (its node was demoted) drops and asks again, and idle pooled
connections are dropped when the answer changes. REDIS_URL then supplies only
what the data nodes share: password (user), database and TLS; its host is not
used. The store's own retries, not redis-py's, decide when to answer 503.

Also the start-up check gunicorn.conf.py runs: only ``noeviction`` keeps the
idempotency records (they carry a TTL, so every ``volatile-*`` policy evicts
them first) and the ledgers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from wallet_api.config import Settings
from wallet_api.store import eviction_risk

# The health client answers probes: a fast "no" within the probe's timeout.
HEALTH_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Clients:
    main: redis.Redis
    health: redis.Redis


def _retry(attempts: int) -> Retry:
    # redis-py's default retries back off for seconds; our store retries itself
    # and must answer 503 quickly when Redis is down.
    return (
        Retry(ExponentialBackoff(cap=0.05, base=0.005), attempts)
        if attempts
        else (Retry(NoBackoff(), 0))
    )


def connect(settings: Settings) -> Clients:
    fast = min(settings.redis_timeout, HEALTH_TIMEOUT_S)
    main_kw: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "health_check_interval": 30,
        "retry": _retry(1),
    }
    health_kw: dict[str, Any] = {
        "socket_timeout": fast,
        "socket_connect_timeout": fast,
        "retry": _retry(0),
    }
    if not settings.redis_sentinels:
        return Clients(
            redis.Redis.from_url(settings.redis_url, **main_kw),
            redis.Redis.from_url(settings.redis_url, **health_kw),
        )
    url: dict[str, Any] = dict(parse_url(settings.redis_url))  # type: ignore[no-untyped-call]
    node: dict[str, Any] = {k: url[k] for k in ("username", "password", "db") if k in url}
    if settings.redis_url.startswith("rediss://"):
        node["ssl"] = True  # SentinelConnectionPool picks its SSL connection class
    sentinel_auth = settings.redis_sentinel_password or node.get("password")
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(settings.redis_sentinels),
        sentinel_kwargs={**health_kw, "password": sentinel_auth},
    )
    name = settings.redis_master_name
    return Clients(
        sentinel.master_for(name, **main_kw, **node),  # type: ignore[no-untyped-call]
        sentinel.master_for(name, **health_kw, **node),  # type: ignore[no-untyped-call]
    )


def startup_check(settings: Settings) -> str | None:
    """The reason to refuse to start, or None. Redis not reachable yet is not
    one: /readyz stays 503 until it is, and checks the policy on every probe."""
    clients = connect(settings)
    try:
        return eviction_risk(clients.health)
    except redis.RedisError:
        return None
    finally:
        clients.main.close()
        clients.health.close()


def main() -> int:
    """`python -m wallet_api.redis_clients`: gunicorn.conf.py's start-up check, in a
    child process. Exit 2 with one line on stderr when the start must be refused."""
    import sys

    problem = startup_check(Settings.from_env())
    if problem is None:
        return 0
    sys.stderr.write(f"wallet-api: configuration error: {problem}\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

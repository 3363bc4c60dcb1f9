"""How the Redis clients are built from the settings (no server needed: redis-py
connects lazily), and the start-up check's exit."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from tests.helpers import FakeRedis
from wallet_api import redis_clients
from wallet_api.config import Settings
from wallet_api.store import eviction_risk

KEYS = {"WALLET_API_KEYS": "k" * 16}


def test_standalone_clients_talk_to_redis_url() -> None:
    settings = Settings.from_env({**KEYS, "REDIS_URL": "redis://:pw@db:6380/3"})
    clients = redis_clients.connect(settings)
    for client in (clients.main, clients.health):
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
            "db",
            6380,
            3,
            "pw",
        )
    assert clients.health.connection_pool.connection_kwargs["socket_timeout"] == 0.5


def test_sentinel_clients_ask_the_sentinels_with_the_url_password() -> None:
    settings = Settings.from_env(
        {
            **KEYS,
            "REDIS_URL": "rediss://:secret@ignored:6379/2",
            "REDIS_SENTINELS": "s1:26379,s2:26380",
            "REDIS_MASTER_NAME": "wallet",
        }
    )
    clients = redis_clients.connect(settings)
    for client in (clients.main, clients.health):
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "wallet" and pool.is_master
        assert pool.connection_kwargs["password"] == "secret"
        assert pool.connection_kwargs["db"] == 2
        assert "SSL" in pool.connection_class.__name__  # rediss:// -> TLS to the nodes
        sentinels = pool.sentinel_manager.sentinels
        addresses = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ]
        assert addresses == [("s1", 26379), ("s2", 26380)]
        assert sentinels[0].connection_pool.connection_kwargs["password"] == "secret"


def test_a_sentinel_password_of_its_own() -> None:
    settings = Settings.from_env(
        {**KEYS, "REDIS_SENTINELS": "s1:26379", "REDIS_SENTINEL_PASSWORD": "other"}
    )
    pool = redis_clients.connect(settings).main.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert (
        pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["password"] == "other"
    )


@pytest.mark.parametrize(
    ("policy", "refused"),
    [("noeviction", False), ("volatile-lru", True), ("allkeys-lfu", True), ("volatile-ttl", True)],
)
def test_only_noeviction_is_safe(policy: str, refused: bool) -> None:
    client = FakeRedis()
    client.maxmemory_policy = policy
    risk = eviction_risk(client)
    assert (risk is not None) == refused
    if risk:
        assert policy in risk and "\n" not in risk


def test_main_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WALLET_API_KEYS", "k" * 16)
    monkeypatch.setattr(redis_clients, "startup_check", lambda settings: "it may evict")
    assert redis_clients.main() == 2
    assert capsys.readouterr().err == "wallet-api: configuration error: it may evict\n"
    monkeypatch.setattr(redis_clients, "startup_check", lambda settings: None)
    assert redis_clients.main() == 0


def test_an_unreachable_redis_is_no_reason_to_refuse() -> None:
    settings = Settings.from_env({**KEYS, "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert redis_clients.startup_check(settings) is None

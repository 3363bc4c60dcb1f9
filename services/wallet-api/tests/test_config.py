import pytest

from wallet_api.config import ConfigError, Settings

KEYS = {"WALLET_API_KEYS": "k" * 16}


def test_defaults() -> None:
    s = Settings.from_env({**KEYS, "REPLICA_ID": "r1"})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.idempotency_ttl == 86_400
    assert s.api_keys == ("k" * 16,)
    assert s.replica_id == "r1"


def test_numbers_in_range_are_read() -> None:
    s = Settings.from_env(
        {**KEYS, "MAX_AMOUNT": "500", "REDIS_TIMEOUT_SECONDS": "0.25", "COMMIT_SHARDS": "+4"}
    )
    assert (s.max_amount, s.redis_timeout, s.commit_shards) == (500, 0.25, 4)
    assert Settings.from_env({**KEYS, "REDIS_TIMEOUT_SECONDS": "1e1"}).redis_timeout == 10.0


def test_sentinel_settings_and_the_replica_acknowledgement_default() -> None:
    standalone = Settings.from_env(KEYS)
    assert standalone.redis_sentinels == () and standalone.min_replicas_ack == 0
    ha = Settings.from_env(
        {**KEYS, "REDIS_SENTINELS": "sentinel-1:26379, sentinel-2:26380,", "REDIS_MASTER_NAME": "w"}
    )
    assert ha.redis_sentinels == (("sentinel-1", 26379), ("sentinel-2", 26380))
    assert ha.redis_master_name == "w"
    assert ha.min_replicas_ack == 1  # a failover promotes a replica: it must have the money
    explicit = Settings.from_env({**KEYS, "REDIS_SENTINELS": "s:1", "REDIS_MIN_REPLICAS_ACK": "0"})
    assert explicit.min_replicas_ack == 0
    assert Settings.from_env({**KEYS, "REDIS_MIN_REPLICAS_ACK": "2"}).min_replicas_ack == 2
    # WAIT's timeout only matters when something waits.
    assert Settings.from_env({**KEYS, "REDIS_WAIT_TIMEOUT_MS": "5000"}).min_replicas_ack == 0


def test_comma_separated_keys() -> None:
    s = Settings.from_env({"WALLET_API_KEYS": f" {'a' * 16} ,{'b' * 20},"})
    assert s.api_keys == ("a" * 16, "b" * 20)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WALLET_API_KEYS: set at least one bearer token"),
        ({"WALLET_API_KEYS": "short"}, "WALLET_API_KEYS: key #1 is shorter than 16"),
        ({**KEYS, "MAX_AMOUNT": "ten"}, "MAX_AMOUNT: must be an integer, got 'ten'"),
        ({**KEYS, "MAX_AMOUNT": "0"}, "MAX_AMOUNT: must be between 1 and"),
        ({**KEYS, "REDIS_URL": "http://x"}, "REDIS_URL: must look like redis://"),
        ({**KEYS, "IDEMPOTENCY_TTL_SECONDS": "5"}, "IDEMPOTENCY_TTL_SECONDS: must be between 60"),
        ({**KEYS, "LOG_LEVEL": "loud"}, "LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR"),
        ({**KEYS, "REDIS_TIMEOUT_SECONDS": "x"}, "REDIS_TIMEOUT_SECONDS: must be a number"),
        # int() and float() would take these: Unicode digits, '_', spaces, nan.
        ({**KEYS, "MAX_AMOUNT": "\u0661\u0660"}, "MAX_AMOUNT: must be an integer, got"),
        ({**KEYS, "MAX_AMOUNT": "1_000"}, "MAX_AMOUNT: must be an integer, got '1_000'"),
        ({**KEYS, "COMMIT_SHARDS": " 2"}, "COMMIT_SHARDS: must be an integer, got ' 2'"),
        ({**KEYS, "REDIS_TIMEOUT_SECONDS": "nan"}, "REDIS_TIMEOUT_SECONDS: must be a number"),
        ({**KEYS, "REDIS_TIMEOUT_SECONDS": "61"}, "REDIS_TIMEOUT_SECONDS: must be between"),
        ({**KEYS, "REDIS_SENTINELS": "s1"}, "REDIS_SENTINELS: must be host:port[,host:port...]"),
        ({**KEYS, "REDIS_SENTINELS": "s1:0"}, "REDIS_SENTINELS: must be host:port"),
        ({**KEYS, "REDIS_SENTINELS": "s1:26379,:1"}, "REDIS_SENTINELS: must be host:port"),
        ({**KEYS, "REDIS_MASTER_NAME": "a b"}, "REDIS_MASTER_NAME: must be 1-64 characters"),
        ({**KEYS, "REDIS_MIN_REPLICAS_ACK": "-1"}, "REDIS_MIN_REPLICAS_ACK: must be between 0"),
        ({**KEYS, "REDIS_WAIT_TIMEOUT_MS": "0"}, "REDIS_WAIT_TIMEOUT_MS: must be between 1"),
        (
            {**KEYS, "REDIS_MIN_REPLICAS_ACK": "1", "REDIS_WAIT_TIMEOUT_MS": "2000"},
            "REDIS_WAIT_TIMEOUT_MS: must be below REDIS_TIMEOUT_SECONDS (2000 ms), got 2000",
        ),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_gunicorn_refuses_to_start_with_a_one_line_reason() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    conf = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
    env = {**os.environ, "WALLET_API_KEYS": "k" * 16, "MAX_AMOUNT": "ten"}
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(conf), "--check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr
        == "wallet-api: configuration error: MAX_AMOUNT: must be an integer, got 'ten'\n"
    )

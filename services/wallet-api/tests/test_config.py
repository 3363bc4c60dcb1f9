import hashlib
import json
from pathlib import Path

import pytest

from wallet_api.config import (
    ConfigError,
    ServerSettings,
    Settings,
    available_cpus,
    default_workers,
)
from wallet_api.keys import development_key

KEYS = {"WALLET_API_KEYS": "k" * 16}


def test_defaults() -> None:
    s = Settings.from_env({**KEYS, "REPLICA_ID": "r1"})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.idempotency_ttl == 86_400
    assert s.api_keys == (development_key("k" * 16),)
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
    assert s.api_keys == (development_key("a" * 16), development_key("b" * 20))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WALLET_API_KEYS_FILE: set it to the key definitions file"),
        ({"WALLET_API_KEYS": " , "}, "WALLET_API_KEYS: set at least one bearer token"),
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


# App settings and gunicorn's own (ServerSettings). Not WEB_CONCURRENCY: gunicorn itself
# int()s it on import, before any configuration file is read.
@pytest.mark.parametrize(
    ("variable", "value"),
    [("MAX_AMOUNT", "ten"), ("GUNICORN_TIMEOUT", "2x"), ("GUNICORN_THREADS", "2x")],
)
def test_gunicorn_refuses_to_start_with_a_one_line_reason(variable: str, value: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    conf = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
    env = {**os.environ, "WALLET_API_KEYS": "k" * 16, variable: value}
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(conf), "--check-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        f"wallet-api: configuration error: {variable}: must be an integer, got '{value}'\n"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY: must be between 1 and 256, got 0"),
        ({"GUNICORN_WORKER_CLASS": "eventlet"}, "GUNICORN_WORKER_CLASS: must be one of gevent"),
        ({"GUNICORN_KEEPALIVE": "5s"}, "GUNICORN_KEEPALIVE: must be an integer, got '5s'"),
    ],
)
def test_bad_gunicorn_settings_fail_with_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ServerSettings.from_env(env)
    assert str(err.value).startswith(message)


def test_workers_default_to_the_cpus_of_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    import wallet_api.config as config

    monkeypatch.setattr(config, "default_workers", lambda: 3)
    assert ServerSettings.from_env({}).worker_count == 3
    assert ServerSettings.from_env({"WEB_CONCURRENCY": "5"}).worker_count == 5


V2_POD = "0::/kubepods/pod1/ctr\n"


@pytest.mark.parametrize(
    ("own", "files", "workers", "cpus"),
    [
        # No cgroup files: no quota. The host's cores are no guide (a 64-core node):
        # the old fixed default, while available_cpus() is the affinity.
        ("", {}, 2, 4),
        ("0::/\n", {"cpu.max": "max 100000\n"}, 2, 4),  # v2, no quota
        ("0::/\n", {"cpu.max": "100000 100000\n"}, 1, 1),  # compose cpus: 1, limits.cpu "1"
        ("0::/\n", {"cpu.max": "250000 100000\n"}, 2, 2),  # 2.5 CPUs: rounded down
        ("0::/\n", {"cpu.max": "300000 100000\n"}, 3, 3),  # a quota may exceed 2
        ("0::/\n", {"cpu.max": "50000 100000\n"}, 1, 1),  # 500m: at least one
        ("0::/\n", {"cpu.max": "800000 100000\n"}, 4, 4),  # more than the cores: the cores
        ("0::/\n", {"cpu.max": "100000 0\n"}, 2, 4),  # a period of 0: no quota
        # Host cgroup namespace: the container's cgroup is below the mount, and the
        # pod's limit is on its parent.
        (
            V2_POD,
            {
                "kubepods/pod1/ctr/cpu.max": "max 100000\n",
                "kubepods/pod1/cpu.max": "200000 100000\n",
            },
            2,
            2,
        ),
        (
            V2_POD,
            {"kubepods/pod1/ctr/cpu.max": "100000 100000\n", "cpu.max": "300000 100000\n"},
            1,
            1,
        ),
        # cgroup v1, mounted as cpu or as cpu,cpuacct.
        ("", {"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3, 3),
        ("", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2, 4),
        (
            "4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            1,
            1,
        ),
    ],
)
def test_workers_follow_the_affinity_and_the_nearest_cgroup_quota(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    own: str,
    files: dict[str, str],
    workers: int,
    cpus: int,
) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    if own:
        proc.write_text(own)
    assert default_workers(root, proc) == workers
    assert available_cpus(root, proc) == cpus


# -- WALLET_API_KEYS_FILE ----------------------------------------------------------------

DIGEST = "sha256:" + hashlib.sha256(b"acme-token-0123456789abcdef").hexdigest()
YAML_KEYS = f"""\
# written by stackctl keys create
keys:
  - id: key_3f9a1c0e5b7d2a64
    tenant: acme
    scopes: [wallets:read, money:move]
    digest: {DIGEST}
    description: payments backend
  - id: key_reporting01
    tenant: acme
    scopes:
      - wallets:read
    digest: sha256:{"0" * 64}
"""


def _file(tmp_path: Path, text: str, name: str = "keys.yaml") -> dict[str, str]:
    path = tmp_path / name
    path.write_text(text)
    return {"WALLET_API_KEYS_FILE": str(path)}


def test_key_definitions_from_a_yaml_file(tmp_path: Path) -> None:
    keys = Settings.from_env(_file(tmp_path, YAML_KEYS)).api_keys
    assert [(k.id, k.tenant, sorted(k.scopes)) for k in keys] == [
        ("key_3f9a1c0e5b7d2a64", "acme", ["money:move", "wallets:read"]),
        ("key_reporting01", "acme", ["wallets:read"]),
    ]
    assert keys[0].digest == hashlib.sha256(b"acme-token-0123456789abcdef").digest()


def test_key_definitions_from_a_json_file(tmp_path: Path) -> None:
    document = {
        "keys": [
            {
                "id": "key_json0001",
                "tenant": "globex",
                "scopes": ["wallets:create"],
                "digest": DIGEST,
            }
        ]
    }
    keys = Settings.from_env(_file(tmp_path, json.dumps(document), "keys.json")).api_keys
    assert [(k.id, k.tenant, k.scopes) for k in keys] == [
        ("key_json0001", "globex", frozenset({"wallets:create"}))
    ]


def _defs(**override: object) -> str:
    key = {"id": "key_a0000001", "tenant": "acme", "scopes": ["money:move"], "digest": DIGEST}
    key.update(override)
    return json.dumps({"keys": [key]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "document: Input should be a valid dictionary"),
        ("keys: []", "keys: List should have at least 1 item"),
        ("keys: [", "not valid JSON or YAML"),
        ('{"keys": ', "not valid JSON or YAML"),
        (_defs(scopes=["money:steal"]), "keys[0].scopes[0]: Input should be"),
        (_defs(scopes=[]), "keys[0].scopes: List should have at least 1 item"),
        (_defs(tenant="a:b"), "keys[0].tenant: String should match pattern"),
        (_defs(tenant=7), "keys[0].tenant: Input should be a valid string"),
        (_defs(id="abc"), "keys[0].id: String should match pattern"),
        (_defs(digest="plaintext-token-0123456789"), "keys[0].digest: String should match"),
        (_defs(token="x"), "keys[0].token: Extra inputs are not permitted"),
        (
            json.dumps({"keys": [json.loads(_defs())["keys"][0]] * 2}),
            "key id key_a0000001 is defined twice",
        ),
        (
            json.dumps(
                {
                    "keys": [
                        json.loads(_defs())["keys"][0],
                        json.loads(_defs(id="key_b0000002"))["keys"][0],
                    ]
                }
            ),
            "key key_b0000002 has the same token (digest) as another key",
        ),
    ],
)
def test_bad_key_files_fail_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    env = _file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert str(err.value).startswith(f"WALLET_API_KEYS_FILE: {env['WALLET_API_KEYS_FILE']}: ")
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_key_file_and_both_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^WALLET_API_KEYS_FILE: cannot read .*/nope.yaml"):
        Settings.from_env({"WALLET_API_KEYS_FILE": str(tmp_path / "nope.yaml")})
    both = {**_file(tmp_path, YAML_KEYS), **KEYS}
    with pytest.raises(ConfigError, match="both set: use the key file only"):
        Settings.from_env(both)


def test_the_file_schema_knows_every_scope() -> None:
    from typing import get_args

    from wallet_api.keys import SCOPES, KeyDefinition

    (literal,) = get_args(KeyDefinition.model_fields["scopes"].annotation)
    assert set(get_args(literal)) == set(SCOPES)

"""Render-level tests of the chart's Redis high availability (redis.sentinel.enabled),
bounded Redis memory, and the wallet routes' retries (issue 11)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import CHART, EXAMPLES, ROOT

API = "wallet-stack-wallet-api"
REDIS = "wallet-stack-redis"
SENTINEL = "wallet-stack-sentinel"
NS_SUFFIX = "wallet.svc"
SCRIPTS_DIR = "/usr/local/etc/wallet-redis"


def _container(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]["containers"][0]


def _env(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.fixture(scope="module")
def ha(helm):
    return helm.render(EXAMPLES / "redis-sentinel.yaml")


def test_redis_scripts_are_the_ones_compose_runs(default):
    chart = {p.name: p.read_bytes() for p in sorted((CHART / "files" / "redis").glob("*.sh"))}
    compose = {p.name: p.read_bytes() for p in sorted((ROOT / "infra" / "redis").glob("*.sh"))}
    assert set(chart) == {"redis-server.sh", "sentinel.sh", "data-file.sh"}
    assert chart == compose, (
        "helm/wallet-stack/files/redis/ must hold byte-identical copies of infra/redis/*.sh "
        "(cp infra/redis/*.sh helm/wallet-stack/files/redis/)"
    )
    cm = default.get("ConfigMap", "wallet-stack-redis-scripts")
    assert {k: v.encode() for k, v in cm["data"].items()} == chart


def test_standalone_redis_is_bounded_and_never_evicts(default):
    sts = default.get("StatefulSet", REDIS)
    c = _container(sts)
    assert sts["spec"]["replicas"] == 1
    assert c["command"] == ["sh", f"{SCRIPTS_DIR}/redis-server.sh"]
    assert _flag(c["args"], "--maxmemory-policy") == "noeviction"
    # maxmemory is derived at start from the limit the script finds in its cgroup.
    assert _env(c)["REDIS_MAXMEMORY_PERCENT"] == "75"
    assert c["resources"]["limits"]["memory"] == "256Mi"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["scripts"]["mountPath"] == SCRIPTS_DIR and mounts["scripts"]["readOnly"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["scripts"]["configMap"]["name"] == "wallet-stack-redis-scripts"
    assert "checksum/scripts" in sts["spec"]["template"]["metadata"]["annotations"]
    assert "--replica-announce-ip" not in c["args"]
    assert not default.has("StatefulSet", SENTINEL)
    env = _env(_container(default.get("Deployment", API)))
    assert not {"REDIS_SENTINELS", "REDIS_MASTER_NAME", "REDIS_MIN_REPLICAS_ACK"} & set(env)


def test_sentinel_topology(ha):
    sts = ha.get("StatefulSet", REDIS)
    c = _container(sts)
    assert sts["spec"]["replicas"] == 3  # a primary and 2 replicas
    args = c["args"]
    assert _flag(args, "--appendfsync") == "always"  # replicas too
    assert _flag(args, "--maxmemory-policy") == "noeviction"
    # replication as the ACL user `ops`: the app's user may not PSYNC
    assert _flag(args, "--masteruser") == "ops"
    assert _flag(args, "--masterauth") == "$(REDIS_ADMIN_PASSWORD)"
    assert _flag(args, "--min-replicas-to-write") == "1"
    assert _flag(args, "--min-replicas-max-lag") == "5"
    assert _flag(args, "--replica-announce-ip") == "$(REDIS_HA_HOST)"
    env = _env(c)
    assert env["REDIS_HA_HOST"] == f"$(POD_NAME).{REDIS}.{NS_SUFFIX}"
    assert env["REDIS_HA_PRIMARY"] == f"{REDIS}-0.{REDIS}.{NS_SUFFIX}"
    sentinels = ",".join(f"{SENTINEL}-{i}.{SENTINEL}.{NS_SUFFIX}:26379" for i in range(3))
    assert env["REDIS_HA_SENTINELS"] == sentinels
    names = [e["name"] for e in c["env"]]
    assert names.index("POD_NAME") < names.index("REDIS_HA_HOST")  # $(POD_NAME) expands
    ready = " ".join(c["readinessProbe"]["exec"]["command"])
    assert "role:master" in ready and "master_link_status:up" in ready
    svc = ha.get("Service", REDIS)
    assert svc["spec"]["publishNotReadyAddresses"] is True

    sen = ha.get("StatefulSet", SENTINEL)
    sc = _container(sen)
    assert sen["spec"]["replicas"] == 3 and sen["spec"]["serviceName"] == SENTINEL
    assert sc["command"] == ["sh", f"{SCRIPTS_DIR}/sentinel.sh"]
    senv = _env(sc)
    assert senv["SENTINEL_HOST"] == f"$(POD_NAME).{SENTINEL}.{NS_SUFFIX}"
    assert senv["SENTINEL_PEERS"] == sentinels
    assert senv["SENTINEL_PRIMARY"] == env["REDIS_HA_PRIMARY"]
    assert (senv["SENTINEL_MASTER_NAME"], senv["SENTINEL_QUORUM"]) == ("wallet", "2")
    assert senv["SENTINEL_DOWN_AFTER_MS"] == "3000"
    assert senv["SENTINEL_AUTH_USER"] == "ops"  # REPLICAOF, CONFIG REWRITE on the nodes
    assert senv["REDIS_ADMIN_PASSWORD"] == {
        "secretKeyRef": {"name": "wallet-stack-redis-auth", "key": "admin-password"}
    }
    assert sc["securityContext"]["readOnlyRootFilesystem"] is True
    assert ha.get("Service", SENTINEL)["spec"]["clusterIP"] == "None"

    api = _env(_container(ha.get("Deployment", API)))
    assert api["REDIS_SENTINELS"] == sentinels
    assert api["REDIS_MASTER_NAME"] == "wallet"
    assert api["REDIS_MIN_REPLICAS_ACK"] == "1"


def test_sentinel_network_policies_open_only_the_ha_paths(ha):
    names = {d["metadata"]["name"] for d in ha.of_kind("NetworkPolicy")}
    assert {"wallet-stack-redis-ha", SENTINEL, "wallet-stack-wallet-api-sentinel"} <= names
    api = ha.get("NetworkPolicy", "wallet-stack-wallet-api-sentinel")["spec"]
    assert api["policyTypes"] == ["Egress"]
    assert api["egress"][0]["ports"] == [{"port": 26379, "protocol": "TCP"}]
    redis = ha.get("NetworkPolicy", "wallet-stack-redis-ha")["spec"]
    components = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in redis["ingress"][0]["from"]
    }
    assert components == {"redis", "sentinel"}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("redis.sentinel.enabled=true", "redis.enabled=false",
          "externalRedis.url=redis://x:6379/0"), "needs the built-in Redis"),
        (("redis.sentinel.enabled=true", "wallet.env.REDIS_MIN_REPLICAS_ACK=2"),
         "remove it from wallet.env"),
        (("redis.sentinel.enabled=true", "redis.sentinel.quorum=4"), "cannot exceed"),
        (("redis.sentinel.enabled=true", "redis.sentinel.minReplicasAck=3"),
         "no commit could ever be acknowledged"),
        (("redis.sentinel.enabled=true", "redis.sentinel.minReplicasToWrite=3"),
         "the primary would refuse every write"),
    ],
)  # fmt: skip
def test_invalid_sentinel_settings_fail(helm, sets, message):
    proc = helm.template_raw(sets=sets, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "bad",
    [
        "redis.maxmemoryPercent=100",
        "redis.sentinel.sentinels=2",
        "redis.sentinel.masterName=a b",
        "ingress.wallet.retry.attempts=1",
        "ingress.wallet.upstreamDialTimeout=0s",
        "ingress.wallet.retry.maxRequestBodyBytes=0",
        "ingress.wallet.retry.maxRequestBodyBytes=2097152",
    ],
)
def test_schema_rejects_wrong_ha_values(helm, bad):
    proc = helm.template_raw(sets=(bad,), check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr, proc.stderr


def test_wallet_routes_retry(default):
    ir = default.get("IngressRoute", API)
    keyed, plain = ir["spec"]["routes"]
    assert keyed["match"] == plain["match"] + " && HeaderRegexp(`Idempotency-Key`, `.+`)"
    # after the edge middlewares (test_chart.py), the retry: last, nearest the pods
    assert keyed["middlewares"][-1] == {"name": "wallet-stack-retry-keyed"}
    assert plain["middlewares"][-1] == {"name": "wallet-stack-retry"}
    assert keyed["middlewares"][:-1] == plain["middlewares"][:-1]
    retry = default.get("Middleware", "wallet-stack-retry")["spec"]["retry"]
    # maxRequestBodyBytes: Traefik's per-request copy of the body, the API's MAX_BODY_BYTES
    # (its default was ~1.5 MiB per request and got Traefik OOM-killed: README "Performance")
    assert retry == {
        "attempts": 4,
        "initialInterval": "100ms",
        "status": ["502"],
        "maxRequestBodyBytes": 16384,
    }
    keyed_retry = default.get("Middleware", "wallet-stack-retry-keyed")["spec"]["retry"]
    assert keyed_retry == {**retry, "retryNonIdempotentMethod": True}
    st = default.get("ServersTransport", API)["spec"]["forwardingTimeouts"]
    assert st["dialTimeout"] == "1s"
    # A pod that fails a connection is skipped, also by retries already under way.
    for r in (keyed, plain):
        assert r["services"][0]["passiveHealthCheck"] == {
            "failureWindow": "5s",
            "maxFailedAttempts": 1,
        }


def test_retry_can_be_switched_off(helm):
    m = helm.render(sets=("ingress.wallet.retry.enabled=false",))
    (route,) = m.get("IngressRoute", API)["spec"]["routes"]
    names = [mw["name"] for mw in route["middlewares"]]
    assert not [n for n in names if "retry" in n]
    assert not [mw for mw in m.of_kind("Middleware") if "retry" in mw["metadata"]["name"]]
    assert "passiveHealthCheck" not in route["services"][0]


def test_crd_objects_of_the_ha_example_check_out(ha):
    spec = importlib.util.spec_from_file_location(
        "wallet_stack_crd_check", Path(__file__).with_name("crd_check.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    n, errors = mod.check_documents(list(ha))
    # IngressRoute, 2 retry + 3 edge Middlewares, ServersTransport, TLSOption
    assert n == 8 and not errors, errors

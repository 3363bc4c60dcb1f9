"""Compose and the Helm chart describe the same wallet-stack.

The checker (parity_check.py) turns `docker compose config` (+ the Dockerfile and
the files compose mounts) and `helm template` into observations per aspect;
every aspect must agree. The mutation tests at the end prove the checker
reports a difference when one side changes (it is not vacuous).

Alert rules are byte-compared by tests/helm/test_chart.py; that test is reused
here, not duplicated.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import parity_check as pc
import pytest
import yaml

ROOT = pc.ROOT

EXPECTED_ASPECTS = [
    "api.image.repository",
    "api.port",
    "api.run_as",
    "api.no_new_privileges",
    "api.read_only_rootfs",
    "api.capabilities_dropped",
    "api.limits",
    "api.writable_mounts",
    "api.keys_file",
    "api.replicas",
    "api.termination_grace_seconds",
    "api.env.required",
    "api.env.optional",
    "api.env.chart_managed",
    "api.probe.liveness.path",
    "api.probe.readiness.path",
    "api.redis_url.shape",
    "api.redis_url.host_is_redis_service",
    "api.redis_url.password_is_redis_requirepass",
    "api.metrics.path",
    "api.metrics.interval",
    "api.metrics.timeout",
    "api.metrics.replica_label",
    "basic_auth.user",
    "routing.routes",
    "routing.hosts",
    "routing.api.unrouted_prefixes",
    "whoami.image",
    "whoami.health.path",
    "redis.image",
    "redis.persistence",
    "redis.tuning",
    "redis.port",
    "redis.data_dir",
    "prometheus.global",
    "prometheus.jobs",
    "prometheus.rule_files",
    "prometheus.api_job.discovers",
    "prometheus.api_job.name",
    "traefik.metrics.entrypoint",
    "traefik.tls_options",
    "redis.acl",
    "redis.exporter.user",
    "traefik.api_service_label_prefix",
    "traefik.api_upstream_idle_timeout",
    "traefik.api_upstream_idle_below_keepalive",
    "traefik.api_upstream_dial_timeout",
    "traefik.api_passive_health_check",
    "redis.eviction_policy",
    "redis.memory_limit",
    "redis.maxmemory_percent",
    "redis.start_script",
]


def _for(aspect: str, diffs: list[str]) -> list[str]:
    return [d for d in diffs if d.split(":", 1)[0] == aspect]


@pytest.fixture(scope="module")
def diffs(compose_obs, chart_obs) -> list[str]:
    return pc.differences(compose_obs, chart_obs)


def test_every_aspect_is_observed_on_both_sides(compose_obs, chart_obs):
    assert sorted(compose_obs.items) == sorted(EXPECTED_ASPECTS)
    assert sorted(chart_obs.items) == sorted(EXPECTED_ASPECTS)


@pytest.mark.parametrize("aspect", EXPECTED_ASPECTS)
def test_aspect_agrees(aspect, diffs):
    found = _for(aspect, diffs)
    assert not found, "\n".join(found)


def test_no_difference_at_all(diffs):
    """Catch-all (an aspect added to the checker but not to EXPECTED_ASPECTS)."""
    assert not diffs, "\n\n".join(diffs)


def test_api_limits_are_set_on_both_sides(compose_obs, chart_obs):
    """api.limits would also agree if both sides dropped their limits; the replicas need
    them: the CPU limit sizes gunicorn's workers, the memory limit bounds them."""
    for obs in (compose_obs, chart_obs):
        for source, (cpu, memory) in obs.items["api.limits"]:
            assert cpu > 0 and memory > 0, f"{source}: cpu {cpu}, memory {memory} bytes"


# ---------------------------------------------------------------- images


def test_api_image_tag_mapping(compose_cfg, helm):
    """Repository is equal (aspect api.image.repository); the tag differs by design:
    compose builds `:dev` locally, the chart pins appVersion. Setting image.tag to the
    compose tag must give exactly the compose image, and the README must say so."""
    compose_image = compose_cfg["services"]["wallet-api"]["image"]
    _, tag = pc.split_image(compose_image)
    dep = helm.render(set_strings=(f"image.tag={tag}",)).get(
        "Deployment", "wallet-stack-wallet-api"
    )
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == compose_image
    assert f"image.tag={tag}" in (pc.CHART / "README.md").read_text()
    airgap = yaml.safe_load((pc.EXAMPLES / "airgap.yaml").read_text())
    assert airgap["image"]["tag"] == tag, "examples/airgap.yaml runs the image compose builds"


def test_airgap_images_match(compose_env_file, helm):
    """Air-gapped mode: compose with .airgap.env vs the chart with examples/airgap.yaml."""
    airgap_env = ROOT / ".airgap.env"
    if not airgap_env.exists():
        pytest.skip(".airgap.env not present (scripts/airgap.sh writes it)")
    cfg = pc.compose_config(compose_env_file, extra_env=pc.read_dotenv(airgap_env))
    chart = list(helm.render(pc.EXAMPLES / "airgap.yaml"))
    found = pc.differences(pc.observe_compose_images(cfg), pc.observe_chart_images(chart))
    assert not found, "\n".join(found)


# ---------------------------------------------------------------- routing


def test_ingress_mode_routes_what_compose_routes(compose_obs, helm):
    """Plain-Ingress mode cannot negate a path, so it lists prefixes instead: it must
    route every API path compose routes and none of the prefixes compose keeps unrouted."""
    (_, unrouted), *_ = compose_obs.items["routing.api.unrouted_prefixes"]
    m = helm.render(pc.EXAMPLES / "ingress.yaml")
    paths = [
        p["path"]
        for p in m.get("Ingress", "wallet-stack-wallet-api")["spec"]["rules"][0]["http"]["paths"]
    ]

    def routed(path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in paths)

    for prefix in unrouted:
        assert not routed(prefix), f"ingress mode routes {prefix}, compose does not"
        assert not any(p.startswith(prefix) for p in paths), f"ingress mode routes under {prefix}"
    from wallet_api import openapi  # the project venv (source virtual.sh) has it

    app_paths = set(openapi.build_spec()["paths"]) | {"/openapi.json", "/docs"}
    missing = sorted(
        p for p in app_paths if not any(p.startswith(x) for x in unrouted) and not routed(p)
    )
    assert not missing, f"compose routes {missing} but ingress.wallet.ingressPaths does not"


# ---------------------------------------------------------------- alert rules (reused)


def _helm_chart_tests():
    spec = importlib.util.spec_from_file_location(
        "wallet_stack_helm_test_chart", ROOT / "tests" / "helm" / "test_chart.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_alert_rules_shared_with_compose(helm, default):
    """Reuses tests/helm/test_chart.py::test_rules_files_shared_with_compose (byte compare of
    infra/prometheus/rules/*.yml with the chart's files/rules, ConfigMap and PrometheusRule)."""
    _helm_chart_tests().test_rules_files_shared_with_compose(helm, default)


# ---------------------------------------------------------------- the checker can fail

CHART_MUTATIONS = [
    pytest.param({"probes": {"readiness": {"path": "/ready"}}}, "api.probe.readiness.path", "/ready", id="readiness-path"),
    pytest.param({"probes": {"liveness": {"path": "/live"}}}, "api.probe.liveness.path", "/live", id="liveness-path"),
    pytest.param({"wallet": {"containerPort": 8080}}, "api.port", "8080", id="container-port"),
    pytest.param({"wallet": {"extraEnv": [{"name": "FEATURE_X", "value": "1"}]}}, "api.env.required", "FEATURE_X", id="extra-env"),
    pytest.param({"wallet": {"env": {"LOG_LEVEL": "DEBUG"}}}, "api.env.required", "LOG_LEVEL", id="env-default"),
    pytest.param({"basicAuth": {"user": "ops"}}, "basic_auth.user", "ops", id="basic-auth-user"),
    pytest.param({"ingress": {"hosts": {"wallet": "api.localhost"}}}, "routing.hosts", "api.localhost", id="wallet-host"),
    pytest.param({"ingress": {"wallet": {"excludePathPrefixes": []}}}, "routing.api.unrouted_prefixes", "()", id="metrics-routed"),
    pytest.param({"metrics": {"path": "/prom"}}, "api.metrics.path", "/prom", id="metrics-path"),
    pytest.param({"metrics": {"prometheusConfig": {"traefik": {"portName": "web"}}}}, "traefik.metrics.entrypoint", "web", id="traefik-port"),
    pytest.param({"redis": {"appendfsync": "everysec"}}, "redis.persistence", "everysec", id="appendfsync"),
    pytest.param({"wallet": {"securityContext": {"capabilities": {"drop": []}}}}, "api.capabilities_dropped", "ALL", id="caps-kept"),
    pytest.param({"replicaCount": 3}, "api.replicas", "3", id="replicas"),
    pytest.param({"wallet": {"resources": {"limits": {"cpu": "500m"}}}}, "api.limits", "(0.5,", id="api-cpu"),
    pytest.param({"wallet": {"resources": {"limits": {"memory": "1Gi"}}}}, "api.limits", "1073741824", id="api-memory"),
    pytest.param({"ingress": {"wallet": {"upstreamIdleTimeout": "90s"}}}, "traefik.api_upstream_idle_below_keepalive", "False", id="idle-timeout-90s"),
    pytest.param({"ingress": {"wallet": {"upstreamIdleTimeout": "90s"}}}, "traefik.api_upstream_idle_timeout", "90.0", id="idle-timeout-value"),
    pytest.param({"wallet": {"env": {"GUNICORN_KEEPALIVE": "2"}}}, "traefik.api_upstream_idle_below_keepalive", "keep-alive (2s) = False", id="keepalive-2s"),
    pytest.param({"ingress": {"edge": {"walletRateLimit": {"average": 50}}}}, "routing.routes", "50", id="wallet-rate-limit"),
    pytest.param({"ingress": {"edge": {"securityHeaders": False}}}, "routing.routes", "routes", id="no-security-headers"),
    pytest.param({"ingress": {"edge": {"tlsOptions": {"sniStrict": False}}}}, "traefik.tls_options", "False", id="sni-strict-off"),
    pytest.param({"redis": {"acl": {"app": "~* &* +@all"}}}, "redis.acl", "default", id="app-user-may-flushall"),
    pytest.param({"redis": {"exporter": {"enabled": False}}}, "redis.exporter.user", "None", id="no-exporter"),
    pytest.param({"ingress": {"wallet": {"retry": {"enabled": False}}}}, "routing.routes", "HeaderRegexp", id="no-retry"),
    pytest.param({"ingress": {"wallet": {"retry": {"attempts": 2}}}}, "routing.routes", "('attempts', 2)", id="retry-attempts"),
    pytest.param({"ingress": {"wallet": {"retry": {"maxRequestBodyBytes": 1048576}}}}, "routing.routes", "1048576", id="retry-body-copy"),
    pytest.param({"ingress": {"wallet": {"upstreamDialTimeout": "30s"}}}, "traefik.api_upstream_dial_timeout", "30.0", id="dial-timeout"),
    pytest.param({"ingress": {"wallet": {"retry": {"passiveFailureWindow": "30s"}}}}, "traefik.api_passive_health_check", "30.0", id="passive-window"),
    pytest.param({"redis": {"maxmemoryPercent": 90}}, "redis.maxmemory_percent", "90", id="maxmemory-percent"),
    pytest.param({"redis": {"resources": {"limits": {"memory": "1Gi"}}}}, "redis.memory_limit", "1073741824", id="memory-limit"),
    pytest.param({"redis": {"extraArgs": ["--maxmemory-policy", "allkeys-lru"]}}, "redis.eviction_policy", "allkeys-lru", id="eviction-policy"),
    pytest.param({"redis": {"extraArgs": ["--zset-max-listpack-value", "64"]}}, "redis.tuning", "'64'", id="listpack-value"),
]  # fmt: skip

COMPOSE_MUTATIONS = [
    pytest.param({"services": {"traefik": {"environment": {"WALLET_MAX_IN_FLIGHT": "7"}}}},
                 "routing.routes", "7", id="wallet-in-flight"),
    pytest.param({"services": {"wallet-api": {"labels": {"traefik.http.routers.wallet.middlewares": "wallet-in-flight@file"}}}},
                 "routing.routes", "routes", id="wallet-rate-limit-dropped"),
    pytest.param({"services": {"wallet-api": {"labels": {"traefik.http.routers.wallet.rule": "Host(`wallet2.localhost`) && !PathPrefix(`/metrics`)"}}}},
                 "routing.hosts", "wallet2.localhost", id="wallet-host"),
    pytest.param({"services": {"wallet-api": {"labels": {"traefik.http.routers.wallet.rule": "Host(`wallet.localhost`)"}}}},
                 "routing.api.unrouted_prefixes", "()", id="metrics-routed"),
    pytest.param({"services": {"wallet-api": {"labels": {"traefik.http.services.wallet.loadbalancer.healthcheck.path": "/healthz"}}}},
                 "api.probe.readiness.path", "/healthz", id="readiness-path"),
    pytest.param({"services": {"wallet-api": {"environment": {"PORT": "8001"}}}}, "api.port", "8001", id="port"),
    pytest.param({"services": {"wallet-api": {"environment": {"LOG_LEVEL": "${LOG_LEVEL:-INFO}"}}}},
                 "api.env.optional", "LOG_LEVEL", id="env-default"),
    pytest.param({"services": {"redis": {"command": ["sh", "-c", 'exec docker-entrypoint.sh redis-server --appendonly yes --appendfsync everysec --requirepass "$$REDISCLI_AUTH"']}}},
                 "redis.persistence", "everysec", id="appendfsync"),
    pytest.param({"services": {"whoami": {"image": "traefik/whoami:v1.10.0"}}}, "whoami.image", "v1.10.0", id="whoami-image"),
    pytest.param({"services": {"wallet-api": {"read_only": False}}}, "api.read_only_rootfs", "False", id="writable-rootfs"),
    pytest.param({"services": {"wallet-api": {"cpus": 2}}}, "api.limits", "(2.0,", id="api-cpus"),
    pytest.param({"services": {"wallet-api": {"mem_limit": "1g"}}}, "api.limits", "1073741824", id="api-mem-limit"),
    pytest.param({"services": {"wallet-api": {"environment": {"GUNICORN_KEEPALIVE": "2"}}}},
                 "traefik.api_upstream_idle_below_keepalive", "keep-alive (2s) = False", id="keepalive-2s"),
    pytest.param({"services": {"wallet-api": {"labels": {"traefik.http.routers.wallet.middlewares": ""}}}},
                 "routing.routes", "retry", id="no-retry"),
    pytest.param({"services": {"wallet-api": {"labels": {"traefik.http.routers.wallet-keyed.middlewares": "wallet-retry@file"}}}},
                 "routing.routes", "HeaderRegexp", id="keyed-route-without-post-retry"),
    pytest.param({"services": {"wallet-api": {"labels": {"traefik.http.services.wallet.loadbalancer.passivehealthcheck.failurewindow": "1s"}}}},
                 "traefik.api_passive_health_check", "1.0", id="passive-window"),
    pytest.param({"services": {"redis": {"environment": {"REDIS_MAXMEMORY_PERCENT": "90"}}}}, "redis.maxmemory_percent", "90", id="maxmemory-percent"),
    pytest.param({"services": {"redis": {"deploy": {"resources": {"limits": {"memory": "1g"}}}}}}, "redis.memory_limit", "1073741824", id="memory-limit"),
    pytest.param({"services": {"redis": {"command": ["sh", "-c", 'exec sh /usr/local/etc/wallet-redis/redis-server.sh --appendonly yes --appendfsync always --maxmemory-policy volatile-lru --requirepass "$$REDISCLI_AUTH"']}}},
                 "redis.eviction_policy", "volatile-lru", id="eviction-policy"),
]  # fmt: skip


def _assert_reported(found: list[str], aspect: str, needle: str) -> None:
    hits = _for(aspect, found)
    assert hits, f"the checker did not report {aspect}; it reported:\n" + "\n".join(found)
    assert any(needle in h for h in hits), hits


@pytest.mark.parametrize(("overlay", "aspect", "needle"), CHART_MUTATIONS)
def test_checker_reports_chart_change(
    overlay, aspect, needle, compose_obs, helm_binary, tmp_path: Path
):
    values = tmp_path / "mutated-values.yaml"
    values.write_text(yaml.safe_dump(overlay))
    mutated = pc.observe_chart(pc.Chart(helm_binary, values_files=[values]))
    _assert_reported(pc.differences(compose_obs, mutated), aspect, needle)


@pytest.mark.parametrize(("override", "aspect", "needle"), COMPOSE_MUTATIONS)
def test_checker_reports_compose_change(
    override, aspect, needle, compose_env_file, chart_obs, tmp_path: Path
):
    path = tmp_path / "docker-compose.override.yml"
    path.write_text(yaml.safe_dump(override))
    cfg = pc.compose_config(compose_env_file, files=(*pc.COMPOSE_FILES, path))
    _assert_reported(pc.differences(pc.observe_compose(cfg), chart_obs), aspect, needle)


def test_checker_reports_traefik_idle_timeout_change(compose_env_file, chart_obs, tmp_path: Path):
    """Compose's timeout is a Traefik flag: an override without it (Traefik's 90s
    default) must be reported."""
    cfg = pc.compose_config(compose_env_file)
    command = [a for a in cfg["services"]["traefik"]["command"] if "idleConnTimeout" not in a]
    assert len(command) == len(cfg["services"]["traefik"]["command"]) - 1
    override = tmp_path / "docker-compose.override.yml"
    # Compose replaces (does not merge) a service's command in an override file.
    override.write_text(
        "services:\n  traefik:\n    command:\n"
        + "".join(f"      - {json.dumps(a)}\n" for a in command)
    )
    cfg = pc.compose_config(compose_env_file, files=(*pc.COMPOSE_FILES, override))
    found = pc.differences(pc.observe_compose(cfg), chart_obs)
    _assert_reported(found, "traefik.api_upstream_idle_below_keepalive", "False")
    _assert_reported(found, "traefik.api_upstream_idle_timeout", "90.0")


def test_upstream_idle_timeout_relation_holds(compose_obs, chart_obs):
    """Not only equal on both sides: the relation itself is true (3s < 5s)."""
    for obs in (compose_obs, chart_obs):
        values = obs.items["traefik.api_upstream_idle_below_keepalive"]
        assert values and all(v is True for _, v in values), values
        assert all(v == 3.0 for _, v in obs.items["traefik.api_upstream_idle_timeout"])
    assert pc.gunicorn_keepalive_default() == 5


def test_checker_reports_one_sided_aspect(compose_obs, chart_obs):
    """An aspect a collector forgot on one side is a difference, not a pass."""
    lopsided = pc.Observations("chart")
    lopsided.items = {k: v for k, v in chart_obs.items.items() if k != "redis.persistence"}
    _assert_reported(
        pc.differences(compose_obs, lopsided),
        "redis.persistence",
        "not observed on the chart side",
    )


# ---------------------------------------------------------------- Redis HA (issue 11)

EXPECTED_HA_ASPECTS = [
    "redis_ha.topology",
    "redis_ha.node_flags",
    "redis_ha.acl",
    "redis_ha.node_replicates_as",
    "redis_ha.sentinel_auth",
    "redis_ha.node_announces_own_name",
    "redis_ha.start_script",
    "redis_ha.first_primary_is_a_node",
    "redis_ha.master_name",
    "redis_ha.nodes_ask_every_sentinel",
    "redis_ha.sentinel",
    "redis_ha.sentinel_announces_own_name",
    "redis_ha.sentinel_peers_are_the_sentinels",
    "redis_ha.sentinel_script",
    "redis_ha.api_min_replicas_ack",
    "redis_ha.api_asks_every_sentinel",
]


@pytest.fixture(scope="module")
def compose_ha_obs(compose_env_file):
    return pc.observe_compose_ha(pc.compose_config(compose_env_file, files=pc.HA_COMPOSE_FILES))


@pytest.fixture(scope="module")
def chart_ha_obs(chart):
    return pc.observe_chart_ha(chart)


def test_ha_overlay_and_sentinel_chart_agree(compose_ha_obs, chart_ha_obs):
    """docker-compose.ha.yml against the chart with examples/redis-sentinel.yaml."""
    assert sorted(compose_ha_obs.items) == sorted(EXPECTED_HA_ASPECTS)
    assert sorted(chart_ha_obs.items) == sorted(EXPECTED_HA_ASPECTS)
    found = pc.differences(compose_ha_obs, chart_ha_obs)
    assert not found, "\n\n".join(found)
    # The relations hold (not merely equal on both sides): every check is True.
    for obs in (compose_ha_obs, chart_ha_obs):
        for aspect, values in obs.items.items():
            if aspect.endswith(("_is_a_node", "_own_name", "_every_sentinel", "_the_sentinels")):
                assert all(v is True for _, v in values), (aspect, values)
        assert all(v == ("ops", True) for _, v in obs.items["redis_ha.node_replicates_as"])
        assert all(v == ("ops", True) for _, v in obs.items["redis_ha.sentinel_auth"])
        (_, topology), *_ = obs.items["redis_ha.topology"]
        assert topology == (3, 3)
        (_, ack), *_ = obs.items["redis_ha.api_min_replicas_ack"]
        assert ack == "1"


HA_CHART_MUTATIONS = [
    pytest.param({"redis": {"sentinel": {"replicas": 1}}}, "redis_ha.topology", "(2, 3)", id="one-replica"),
    pytest.param({"redis": {"sentinel": {"minReplicasAck": 0}}}, "redis_ha.api_min_replicas_ack", "'0'", id="no-ack"),
    pytest.param({"redis": {"sentinel": {"downAfterMilliseconds": 30000}}}, "redis_ha.sentinel", "30000", id="down-after"),
    pytest.param({"redis": {"sentinel": {"minReplicasToWrite": 0}}}, "redis_ha.node_flags", "'min-replicas-to-write', '0'", id="min-replicas"),
    pytest.param({"redis": {"appendfsync": "everysec"}}, "redis_ha.node_flags", "everysec", id="replica-fsync"),
    pytest.param({"redis": {"acl": {"app": "~* &* +@all"}}}, "redis_ha.acl", "default", id="ha-app-user-may-flushall"),
]  # fmt: skip

HA_COMPOSE_MUTATIONS = [
    pytest.param({"services": {"wallet-api": {"environment": {"REDIS_MIN_REPLICAS_ACK": "0"}}}},
                 "redis_ha.api_min_replicas_ack", "'0'", id="no-ack"),
    pytest.param({"services": {"wallet-api": {"environment": {"REDIS_SENTINELS": "sentinel-1:26379"}}}},
                 "redis_ha.api_asks_every_sentinel", "False", id="one-sentinel"),
    pytest.param({"services": {"sentinel-2": {"environment": {"SENTINEL_QUORUM": "1"}}}},
                 "redis_ha.sentinel", "'SENTINEL_QUORUM', '1'", id="quorum"),
    pytest.param({"services": {"redis-replica-2": {"environment": {"REDIS_HA_HOST": "redis-replica-1"}}}},
                 "redis_ha.node_announces_own_name", "False", id="wrong-announce"),
    pytest.param({"services": {"sentinel-3": {"environment": {"SENTINEL_AUTH_USER": "default"}}}},
                 "redis_ha.sentinel_auth", "default", id="sentinel-as-app-user"),
]  # fmt: skip


@pytest.mark.parametrize(("overlay", "aspect", "needle"), HA_CHART_MUTATIONS)
def test_ha_checker_reports_chart_change(
    overlay, aspect, needle, compose_ha_obs, helm_binary, tmp_path
):
    values = tmp_path / "mutated-values.yaml"
    values.write_text(yaml.safe_dump(overlay))
    mutated = pc.observe_chart_ha(pc.Chart(helm_binary, values_files=[values]))
    _assert_reported(pc.differences(compose_ha_obs, mutated), aspect, needle)


@pytest.mark.parametrize(("override", "aspect", "needle"), HA_COMPOSE_MUTATIONS)
def test_ha_checker_reports_compose_change(
    override, aspect, needle, compose_env_file, chart_ha_obs, tmp_path
):
    path = tmp_path / "docker-compose.override.yml"
    path.write_text(yaml.safe_dump(override))
    cfg = pc.compose_config(compose_env_file, files=(*pc.HA_COMPOSE_FILES, path))
    _assert_reported(pc.differences(pc.observe_compose_ha(cfg), chart_ha_obs), aspect, needle)

"""Render-level tests of helm/wallet-stack (helm template, no cluster)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "wallet-stack"
EXAMPLES = ROOT / "helm" / "examples"
API = "wallet-stack-wallet-api"
REDIS = "wallet-stack-redis"
API_SELECTOR = {
    "app.kubernetes.io/name": "wallet-stack",
    "app.kubernetes.io/instance": "wallet-stack",
    "app.kubernetes.io/component": "wallet-api",
}


def _load_crd_check():
    spec = importlib.util.spec_from_file_location(
        "wallet_stack_crd_check", Path(__file__).with_name("crd_check.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def b64(secret: dict, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def container(doc: dict, name: str | None = None) -> dict:
    cs = (
        doc["spec"]["template"]["spec"]["containers"]
        if "template" in doc["spec"]
        else doc["spec"]["containers"]
    )
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


def env_of(c: dict) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


SERVICE_SRC = ROOT / "services" / "wallet-api" / "src"


def app_keys(secret: dict, tmp_path: Path, key: str = "api-keys.yaml") -> list[tuple]:
    """The Secret's key definitions file as wallet-api reads it at start (its own loader)."""
    path = tmp_path / key
    path.write_text(b64(secret, key))
    code = (
        "import sys; from wallet_api.keys import load_file\n"
        "for k in load_file(sys.argv[1]):\n"
        "    print(k.id, k.tenant, ','.join(sorted(k.scopes)), k.digest.hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env={**os.environ, "PYTHONPATH": str(SERVICE_SRC)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [tuple(line.split()) for line in out.splitlines()]


def dev_key(token: str) -> tuple:
    """A development token as the chart defines it: what wallet-api derives for it."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    return (f"key_{digest[:16]}", "default", "money:move,wallets:create,wallets:read", digest)


DEFINITION = {
    "id": "key_payments01",
    "tenant": "acme",
    "scopes": ["wallets:read", "money:move"],
    "digest": "sha256:" + hashlib.sha256(b"acme-token-0123456789").hexdigest(),
    "description": "payments backend",
}


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize(
    "bad",
    [
        "replicaCount=abc",
        "image.pullPolicy=Sometimes",
        "redis.port=notaport",
        "ingress.mode=nginx",
        "probes.readiness.path=readyz",
        "replicaCont=2",  # typo: additionalProperties false
        "wallet.env.REDIS_URL=redis://x",  # chart-managed env var
        "autoscaling.targetCPUUtilizationPercentage=150",
        "redis.appendfsync=sometimes",
        "wallet.apiKeys.keys={tooshort}",  # the app requires >= 16 characters
        "wallet.env.WALLET_API_KEYS=x",  # keys come from wallet.apiKeys
        "wallet.env.WALLET_API_KEYS_FILE=/x",  # chart-managed
        "wallet.apiKeys.definitions[0].id=key_x1234",  # tenant, scopes, digest missing
        "ingress.wallet.upstreamIdleTimeout=soon",  # not a duration
        "ingress.wallet.upstreamIdleTimeout=3",  # unitless: an int, and ambiguous
        "ingress.wallet.upstreamIdleTimeout=1.5s",  # the CRD's pattern has no fractions
        "ingress.wallet.upstreamIdleTimeout=0s",  # 0 = never close idle connections
        "ingress.wallet.serversTransportCRD=maybe",
        "networkPolicy.dns.enabled=false",  # no such switch: the rule would stay
        "networkPolicy.ingressController.enabled=false",
    ],
)
def test_schema_rejects_wrong_values(helm, bad):
    proc = helm.template_raw(sets=(bad,), check=False)
    assert proc.returncode != 0, f"--set {bad} was accepted"
    assert "schema" in proc.stderr, proc.stderr


def test_schema_rejects_string_for_boolean(helm):
    proc = helm.template_raw(set_strings=("redis.persistence.enabled=yes",), check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr


def test_lint_strict_default(helm):
    helm.run("lint", "--strict", str(CHART))


# ---------------------------------------------------------------- wallet-api


def test_deployment_shape(default):
    dep = default.get("Deployment", API)
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert spec["selector"]["matchLabels"] == API_SELECTOR
    pod = spec["template"]["spec"]
    tsc = pod["topologySpreadConstraints"][0]
    assert tsc["topologyKey"] == "kubernetes.io/hostname"
    assert tsc["labelSelector"]["matchLabels"] == API_SELECTOR
    c = container(dep)
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    ann = spec["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= set(ann)
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == "8000"
    assert ann["prometheus.io/path"] == "/metrics"


def test_probes(default):
    c = container(default.get("Deployment", API))
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_probe_paths_follow_values(helm):
    c = container(helm.render(sets=("probes.readiness.path=/ready",)).get("Deployment", API))
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_security_context(default):
    dep = default.get("Deployment", API)
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    sc = container(dep)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    # writable /tmp for PROMETHEUS_MULTIPROC_DIR and gunicorn
    mounts = {m["mountPath"]: m["name"] for m in container(dep)["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]

    sa = default.get("ServiceAccount", API)
    assert sa["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == API


def test_env_and_redis_url(default):
    env_list = container(default.get("Deployment", API))["env"]
    env = env_of(container(default.get("Deployment", API)))
    names = [e["name"] for e in env_list]
    assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL"), "dependent var must come after"
    assert env["REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{REDIS}:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "wallet-stack-redis-auth",
        "key": "redis-password",
    }
    # The keys: a definitions file from the Secret, read-only; never a token in the env.
    assert env["WALLET_API_KEYS_FILE"]["value"] == "/etc/wallet-api/keys/api-keys.yaml"
    assert "WALLET_API_KEYS" not in env
    dep = default.get("Deployment", API)
    mount = next(m for m in container(dep)["volumeMounts"] if m["name"] == "api-keys")
    assert mount == {"name": "api-keys", "mountPath": "/etc/wallet-api/keys", "readOnly": True}
    volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys")
    assert volume["secret"] == {
        "secretName": "wallet-stack-api-keys",
        "items": [{"key": "api-keys.yaml", "path": "api-keys.yaml"}],
    }
    assert env["PORT"]["value"] == "8000"
    assert env["REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # like compose: the tuning keys are passed only when set (empty = app default)
    for key in (
        "LOG_LEVEL",
        "IDEMPOTENCY_TTL_SECONDS",
        "MAX_AMOUNT",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
    ):
        assert key not in env


def test_wallet_env_passthrough(helm):
    m = helm.render(
        sets=(
            "wallet.env.LOG_LEVEL=DEBUG",
            "wallet.env.GUNICORN_THREADS=8",
            "wallet.env.WATCH_MAX_ATTEMPTS=20",
        )
    )
    env = env_of(container(m.get("Deployment", API)))
    assert env["LOG_LEVEL"]["value"] == "DEBUG"
    assert env["GUNICORN_THREADS"]["value"] == "8"
    assert env["WATCH_MAX_ATTEMPTS"]["value"] == "20"
    assert "MAX_AMOUNT" not in env


def test_numbers_from_a_values_file_reach_the_app_written_out(helm, tmp_path):
    """A values file's numbers are floats to Helm: 1000000 must not become "1e+06",
    which the app refuses (MAX_AMOUNT must be an integer) and so would not start."""
    values = tmp_path / "values.yaml"
    values.write_text(
        "wallet:\n  env:\n    MAX_AMOUNT: 1000000\n    WATCH_MAX_ATTEMPTS: 20\n"
        "    REDIS_TIMEOUT_SECONDS: 0.5\n"
        "redis:\n  extraArgs: [--hz, 20, --lazyfree-lazy-user-del, 'yes']\n"
    )
    m = helm.render(values)
    env = env_of(container(m.get("Deployment", API)))
    assert env["MAX_AMOUNT"]["value"] == "1000000"
    assert env["WATCH_MAX_ATTEMPTS"]["value"] == "20"
    assert env["REDIS_TIMEOUT_SECONDS"]["value"] == "0.5"
    args = container(m.get("StatefulSet", "wallet-stack-redis"))["args"]
    assert args[-4:] == ["--hz", "20", "--lazyfree-lazy-user-del", "yes"]


def test_service_and_pdb(default):
    svc = default.get("Service", API)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == API_SELECTOR
    pdb = default.get("PodDisruptionBudget", API)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == API_SELECTOR


@pytest.mark.parametrize(
    ("sets", "rendered"),
    [
        (("replicaCount=1",), False),
        (("autoscaling.enabled=true", "autoscaling.minReplicas=1"), False),
        (("replicaCount=3", "podDisruptionBudget.minAvailable=3"), False),
        (("replicaCount=3", "podDisruptionBudget.minAvailable=2"), True),
        (("autoscaling.enabled=true", "autoscaling.minReplicas=2"), True),
    ],
)
def test_no_pdb_that_would_block_every_drain(helm, sets, rendered):
    """minAvailable 1 with one pod: `kubectl drain` would wait for ever."""
    assert helm.render(sets=sets).has("PodDisruptionBudget", API) == rendered


def test_hpa(helm):
    m = helm.render(EXAMPLES / "hpa-networkpolicy.yaml")
    hpa = m.get("HorizontalPodAutoscaler", API)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": API,
    }
    assert "replicas" not in m.get("Deployment", API)["spec"], "HPA owns the replica count"
    assert not helm.render().of_kind("HorizontalPodAutoscaler")


def test_checksums_are_deterministic(helm, default):
    again = helm.render()
    a = default.get("Deployment", API)["spec"]["template"]["metadata"]["annotations"]
    b = again.get("Deployment", API)["spec"]["template"]["metadata"]["annotations"]
    assert a == b
    changed = helm.render(sets=("wallet.env.LOG_LEVEL=DEBUG",))
    c = changed.get("Deployment", API)["spec"]["template"]["metadata"]["annotations"]
    assert c["checksum/config"] != a["checksum/config"]


@pytest.mark.parametrize(
    "sets",
    [
        ("wallet.apiKeys.keys={key-one-0123456789}",),
        (
            "wallet.apiKeys.definitions[0].id=key_new00001",
            "wallet.apiKeys.definitions[0].tenant=acme",
            "wallet.apiKeys.definitions[0].scopes={money:move}",
            "wallet.apiKeys.definitions[0].digest=sha256:" + "a" * 64,
        ),
    ],
)
def test_changing_the_keys_rolls_the_pods(helm, default, sets):
    """wallet-api reads its keys at start: a key added to (or retired from) the
    chart's Secret must reach new pods, so the pod template changes with it."""
    before = default.get("Deployment", API)["spec"]["template"]["metadata"]["annotations"]
    after = helm.render(sets=sets).get("Deployment", API)["spec"]["template"]["metadata"]
    assert after["annotations"]["checksum/secret"] != before["checksum/secret"]


# ---------------------------------------------------------------- secrets

SECRETISH = re.compile(
    r"(password|passwd|secret|token|apikey|api_key|keys|users|url|htpasswd)$", re.I
)


def _walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    else:
        yield path, node


def test_no_secret_values_in_default_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path, value in _walk(values):
        leaf = path[-1]
        if leaf.lower().endswith(("existingsecretkey", "secretname", "existingsecret")):
            assert value in ("", "api-keys.yaml", "redis-password", "redis-url"), (path, value)
            continue
        if SECRETISH.search(leaf) and not isinstance(value, bool):
            assert value in ("", [], None), f"{'.'.join(path)} has a default: {value!r}"
    text = (CHART / "values.yaml").read_text()
    assert "$2y$" not in text and "$apr1$" not in text and "$2a$" not in text


def test_generated_secrets_present_when_not_supplied(helm, tmp_path):
    m = helm.render(sets=("whoami.enabled=true",))
    api_keys = m.get("Secret", "wallet-stack-api-keys")
    keys = b64(api_keys, "api-keys")
    assert re.fullmatch(r"[A-Za-z0-9]{40}", keys)
    # The pods get its digest only (tenant default, every scope), as wallet-api reads it.
    assert app_keys(api_keys, tmp_path) == [dev_key(keys)]
    assert keys not in b64(api_keys, "api-keys.yaml")
    pw = b64(m.get("Secret", "wallet-stack-redis-auth"), "redis-password")
    assert re.fullmatch(r"[A-Za-z0-9]{32}", pw)
    ba = m.get("Secret", "wallet-stack-basic-auth")
    assert b64(ba, "username") == "admin"
    password = b64(ba, "password")
    assert re.fullmatch(r"[A-Za-z0-9]{24}", password)
    users = b64(ba, "users")
    assert re.fullmatch(r"admin:\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}\n", users), users
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        crypt = None
    if crypt is not None:
        hashed = users.strip().split(":", 1)[1]
        check = crypt.crypt(password, hashed)
        if check:  # libxcrypt with bcrypt support
            assert check == hashed, "generated htpasswd line does not match the generated password"
    # the Middleware points at that Secret
    mw = m.get("Middleware", "wallet-stack-basic-auth")
    assert mw["spec"]["basicAuth"]["secret"] == "wallet-stack-basic-auth"
    # self-signed TLS for every routed host
    tls = m.get("Secret", "wallet-stack-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert b64(tls, "tls.crt").startswith("-----BEGIN CERTIFICATE-----")


def test_the_alertmanager_route_alone_gets_its_auth_and_certificate(helm):
    """Its IngressRoute names the basic-auth middlewares: they, their Secret and a
    certificate for its host must be rendered even when it is the only such route."""
    from cryptography import x509

    m = helm.render(
        sets=(
            "alertmanager.enabled=true",
            "alertmanager.webhookUrl=http://receiver:9000/",
            "ingress.routes.alertmanager.enabled=true",
        )
    )
    route = m.get("IngressRoute", "wallet-stack-alertmanager")
    for ref in route["spec"]["routes"][0]["middlewares"]:
        assert m.has("Middleware", ref["name"]), ref
    mw = m.get("Middleware", "wallet-stack-basic-auth")
    assert m.has("Secret", mw["spec"]["basicAuth"]["secret"])
    cert = x509.load_pem_x509_certificate(
        b64(m.get("Secret", "wallet-stack-tls"), "tls.crt").encode()
    )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "alertmanager.localhost" in names.get_values_for_type(x509.DNSName)


def test_supplied_secrets_are_used(helm, tmp_path):
    m = helm.render(
        sets=(
            "redis.auth.password=s3cr3t",
            "wallet.apiKeys.keys={key-one-0123456789,key-two-0123456789}",
            "whoami.enabled=true",
            "basicAuth.users={ops:$apr1$abc$def}",
        )
    )
    assert b64(m.get("Secret", "wallet-stack-redis-auth"), "redis-password") == "s3cr3t"
    api_keys = m.get("Secret", "wallet-stack-api-keys")
    assert b64(api_keys, "api-keys") == "key-one-0123456789,key-two-0123456789"
    assert app_keys(api_keys, tmp_path) == [
        dev_key("key-one-0123456789"),
        dev_key("key-two-0123456789"),
    ]
    ba = m.get("Secret", "wallet-stack-basic-auth")
    assert b64(ba, "users") == "ops:$apr1$abc$def\n"
    assert "password" not in ba["data"]


def test_key_definitions_go_to_the_file_and_no_token_is_generated(helm, tmp_path):
    values = tmp_path / "keys.yaml"
    values.write_text(yaml.safe_dump({"wallet": {"apiKeys": {"definitions": [DEFINITION]}}}))
    m = helm.render(values)
    api_keys = m.get("Secret", "wallet-stack-api-keys")
    assert set(api_keys["data"]) == {"api-keys.yaml"}, "no development token next to definitions"
    assert app_keys(api_keys, tmp_path) == [
        ("key_payments01", "acme", "money:move,wallets:read", DEFINITION["digest"][7:])
    ]
    # Both: the definitions and the development tokens' digests.
    both = helm.render(values, sets=("wallet.apiKeys.keys={dev-token-0123456789}",))
    got = app_keys(both.get("Secret", "wallet-stack-api-keys"), tmp_path)
    assert [g[0] for g in got] == ["key_payments01", dev_key("dev-token-0123456789")[0]]
    proc = helm.template_raw(values, sets=("wallet.apiKeys.existingSecret=x",), check=False)
    assert proc.returncode != 0 and "excludes" in proc.stderr


def test_existing_secrets_render_no_secret(helm):
    m = helm.render(
        sets=(
            "redis.auth.existingSecret=my-redis",
            "wallet.apiKeys.existingSecret=my-keys",
            "wallet.apiKeys.existingSecretKey=tokens",
            "basicAuth.existingSecret=my-htpasswd",
            "whoami.enabled=true",
            "ingress.tls.secretName=my-tls",
        )
    )
    assert not m.of_kind("Secret")
    env = env_of(container(m.get("Deployment", API)))
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-redis",
        "key": "redis-password",
    }
    volumes = m.get("Deployment", API)["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "api-keys")["secret"] == {
        "secretName": "my-keys",
        "items": [{"key": "tokens", "path": "api-keys.yaml"}],
    }
    assert (
        m.get("Middleware", "wallet-stack-basic-auth")["spec"]["basicAuth"]["secret"]
        == "my-htpasswd"
    )
    assert m.get("IngressRoute", API)["spec"]["tls"] == {
        "secretName": "my-tls",
        "options": {"name": "wallet-stack-tls-options"},
    }


def test_notes_print_password_retrieval(helm):
    out = helm.run(
        "install",
        "wallet-stack",
        str(CHART),
        "--dry-run=client",
        "-n",
        "wallet",
        "--set",
        "whoami.enabled=true",
    ).stdout
    assert "get secret wallet-stack-basic-auth -o jsonpath='{.data.password}'" in out
    assert "get secret wallet-stack-api-keys" in out


# ---------------------------------------------------------------- redis


def _acl_users(args: list) -> dict:
    """redis-server `--user NAME RULE...` arguments -> {NAME: (RULE, ...)}."""
    users, i = {}, 0
    while i < len(args):
        if args[i] == "--user":
            j = i + 2
            while j < len(args) and not str(args[j]).startswith("--"):
                j += 1
            users[args[i + 1]] = tuple(args[i + 2 : j])
            i = j
        else:
            i += 1
    return users


def test_builtin_redis(default):
    sts = default.get("StatefulSet", REDIS)
    c = container(sts)
    args = c["args"]
    # files/redis/redis-server.sh sets maxmemory from the memory limit, then runs redis-server.
    assert c["command"] == ["sh", "/usr/local/etc/wallet-redis/redis-server.sh"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    users = _acl_users(args)
    assert users == {
        "default": (
            "on",
            ">$(REDIS_PASSWORD)",
            "~*",
            "&*",
            "+@all",
            "-@dangerous",
            "+info",
            "+config|get",
        ),
        "ops": ("on", ">$(REDIS_ADMIN_PASSWORD)", "~*", "&*", "+@all"),
        "exporter": (
            "on",
            ">$(REDIS_EXPORTER_PASSWORD)",
            "-@all",
            "+@connection",
            "+info",
            "+config|get",
            "+client|list",
            "+slowlog|get",
            "+slowlog|len",
            "+latency|latest",
            "+dbsize",
            "+cluster|info",
            "+memory|stats",
        ),
    }, "the app's user never runs @dangerous commands"
    assert "--requirepass" not in args
    env = env_of(c)
    for var, key in (
        ("REDIS_PASSWORD", "redis-password"),
        ("REDIS_ADMIN_PASSWORD", "admin-password"),
        ("REDIS_EXPORTER_PASSWORD", "exporter-password"),
    ):
        assert env[var]["valueFrom"]["secretKeyRef"] == {
            "name": "wallet-stack-redis-auth",
            "key": key,
        }
    secret = default.get("Secret", "wallet-stack-redis-auth")["data"]
    assert set(secret) == {"redis-password", "admin-password", "exporter-password"}
    assert len(set(secret.values())) == 3, "three different generated passwords"
    assert env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == "wallet-stack-redis-auth"
    for probe in ("livenessProbe", "readinessProbe"):
        cmd = " ".join(c[probe]["exec"]["command"])
        assert "redis-cli" in cmd and "ping" in cmd and "-a " not in cmd
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000, "a high UID no host account has"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["runAsUser"] >= 10000
    exporter = next(x for x in pod["containers"] if x["name"] == "exporter")
    assert env_of(exporter)["REDIS_USER"]["value"] == "exporter"
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}]
    assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
    vct = sts["spec"]["volumeClaimTemplates"][0]
    assert vct["metadata"]["name"] == "data"
    assert vct["spec"]["resources"]["requests"]["storage"] == "1Gi"
    svc = default.get("Service", REDIS)
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == REDIS


def test_external_redis(helm):
    m = helm.render(EXAMPLES / "external-redis.yaml")
    assert not m.of_kind("StatefulSet")
    env = env_of(container(m.get("Deployment", API)))
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "wallet-redis",
        "key": "redis-url",
    }
    assert "REDIS_PASSWORD" not in env
    m2 = helm.render(
        sets=("redis.enabled=false", "externalRedis.url=rediss://:pw@redis.example:6380/0")
    )
    s = m2.get("Secret", "wallet-stack-external-redis")
    assert b64(s, "redis-url") == "rediss://:pw@redis.example:6380/0"
    env2 = env_of(container(m2.get("Deployment", API)))
    assert env2["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "wallet-stack-external-redis"


def test_external_sentinels_are_reachable_through_the_network_policy(helm):
    """The API asks the Sentinels of REDIS_SENTINELS for the primary: their ports are
    opened besides the Redis port (only 6379 was: no connection could be made)."""

    def ports(*sets: str) -> list[int]:
        m = helm.render(sets=("redis.enabled=false", "externalRedis.url=redis://r:6379/0", *sets))
        egress = m.get("NetworkPolicy", API)["spec"]["egress"]
        return [p["port"] for rule in egress[1:] for p in rule["ports"]]

    assert ports() == [6379]
    sentinels = "wallet.env.REDIS_SENTINELS=s1:26379\\,s2:26380\\,s3:26379"
    assert ports(sentinels) == [6379, 26379, 26380]


@pytest.mark.parametrize(
    "sets, message",
    [
        (("redis.enabled=false",), "requires externalRedis"),
        (("externalRedis.url=redis://x:6379/0",), "mutually exclusive"),
        (("ingress.mode=ingress", "ingress.routes.dashboard.enabled=true"), "api@internal"),
        (("alertmanager.enabled=true",), "alertmanager.webhookUrl or alertmanager.receivers"),
        (("ingress.routes.alertmanager.enabled=true",), "needs alertmanager.enabled"),
        (("redis.auth.existingSecret=mine", "redis.auth.adminPassword=x"), "excludes"),
        (
            ("backup.enabled=true", "redis.enabled=false", "externalRedis.url=redis://x:6379/0"),
            "external Redis",
        ),
    ],
)
def test_invalid_combinations_fail(helm, sets, message):
    proc = helm.template_raw(sets=sets, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


# ---------------------------------------------------------------- routing


def test_ingressroute_wallet(default):
    ir = default.get("IngressRoute", API)
    assert ir["apiVersion"] == "traefik.io/v1alpha1"
    assert ir["spec"]["entryPoints"] == ["websecure"]
    keyed, route = ir["spec"]["routes"]  # test_chart_ha.py: the keyed route and the retries
    assert route["match"] == "Host(`wallet.localhost`) && !PathPrefix(`/metrics`)"
    assert (
        route["services"]
        == keyed["services"]
        == [
            {
                "kind": "Service",
                "name": API,
                "port": 8000,
                "serversTransport": API,
                "passiveHealthCheck": {"failureWindow": "5s", "maxFailedAttempts": 1},
            }
        ]
    )
    # The API has its own Bearer auth: the edge protection, as compose orders it (the
    # entrypoint's security headers, then the router's rate limit and in-flight cap),
    # then the route's retry.
    edge = [
        {"name": "wallet-stack-security-headers"},
        {"name": "wallet-stack-wallet-rate-limit"},
        {"name": "wallet-stack-wallet-in-flight"},
    ]
    assert route["middlewares"] == [*edge, {"name": "wallet-stack-retry"}]
    assert keyed["middlewares"] == [*edge, {"name": "wallet-stack-retry-keyed"}]
    assert ir["spec"]["tls"] == {
        "secretName": "wallet-stack-tls",
        "options": {"name": "wallet-stack-tls-options"},
    }
    assert not default.of_kind("Ingress")
    assert {m["metadata"]["name"] for m in default.of_kind("Middleware")} == {
        "wallet-stack-security-headers",
        "wallet-stack-wallet-rate-limit",
        "wallet-stack-wallet-in-flight",
        "wallet-stack-retry",
        "wallet-stack-retry-keyed",
    }, "no basic-auth middleware without a basic-auth route"


def test_edge_middlewares_and_tls_options_carry_the_values(helm):
    m = helm.render(sets=(
        "ingress.edge.walletRateLimit.average=7", "ingress.edge.walletRateLimit.burst=9",
        "ingress.edge.walletMaxInFlight=3", "ingress.edge.tlsOptions.minVersion=VersionTLS13",
    ))  # fmt: skip
    assert m.get("Middleware", "wallet-stack-wallet-rate-limit")["spec"] == {
        "rateLimit": {"average": 7, "burst": 9, "period": "1s"}
    }
    assert m.get("Middleware", "wallet-stack-wallet-in-flight")["spec"] == {
        "inFlightReq": {"amount": 3}
    }
    tls = m.get("TLSOption", "wallet-stack-tls-options")["spec"]
    assert tls["minVersion"] == "VersionTLS13" and tls["sniStrict"] is True
    assert all(s.startswith("TLS_ECDHE_") for s in tls["cipherSuites"])
    off = helm.render(
        sets=("ingress.edge.securityHeaders=false", "ingress.edge.tlsOptions.enabled=false")
    )
    assert not off.has("Middleware", "wallet-stack-security-headers")
    assert not off.of_kind("TLSOption")
    for route in off.get("IngressRoute", API)["spec"]["routes"]:
        assert {"name": "wallet-stack-security-headers"} not in route["middlewares"]
    assert off.get("IngressRoute", API)["spec"]["tls"] == {"secretName": "wallet-stack-tls"}


def test_all_routes(helm):
    m = helm.render(EXAMPLES / "all-routes-monitoring.yaml")
    dash = m.get("IngressRoute", "wallet-stack-dashboard")["spec"]["routes"][0]
    assert (
        dash["match"]
        == "Host(`traefik.localhost`) && (PathPrefix(`/api`) || PathPrefix(`/dashboard`))"
    )
    assert dash["services"] == [{"kind": "TraefikService", "name": "api@internal"}]
    assert dash["middlewares"] == [
        {"name": "wallet-stack-security-headers"},
        {"name": "wallet-stack-auth-rate-limit"},
        {"name": "wallet-stack-basic-auth"},
    ], "rate limit before the bcrypt check"
    prom = m.get("IngressRoute", "wallet-stack-prometheus")["spec"]["routes"][0]
    assert prom["match"] == "Host(`prometheus.localhost`)"
    assert prom["services"][0]["name"] == "prometheus-operated"
    who = m.get("IngressRoute", "wallet-stack-whoami")["spec"]["routes"][0]
    assert who["services"] == [{"kind": "Service", "name": "wallet-stack-whoami", "port": 80}]
    assert (
        container(m.get("Deployment", "wallet-stack-whoami"))["image"] == "traefik/whoami:v1.11.0"
    )
    for ir in m.of_kind("IngressRoute"):
        assert ir["spec"]["tls"] == {
            "certResolver": "letsencrypt",
            "options": {"name": "wallet-stack-tls-options"},
        }
    assert not m.has("Secret", "wallet-stack-tls"), "no self-signed cert with a certResolver"
    root = m.get("IngressRoute", "wallet-stack-dashboard")["spec"]["routes"][1]
    assert root["match"] == "Host(`traefik.localhost`) && Path(`/`)"
    assert root["services"] == [{"kind": "TraefikService", "name": "noop@internal"}]
    redirect = m.get("Middleware", "wallet-stack-dashboard-redirect")["spec"]["redirectRegex"]
    assert redirect["replacement"] == "${1}/dashboard/"
    n, errors = _load_crd_check().check_documents(list(m))
    # + the Alertmanager IngressRoute, the redis ServiceMonitor, the two retry Middlewares
    assert n == 18 and not errors, errors


def test_ingress_mode_without_the_crds_renders_and_references_none(helm):
    """The example ingress.yaml is for clusters without Traefik's CRDs: one traefik.io
    object or @kubernetescrd reference and `helm install` fails there."""
    m = helm.render(EXAMPLES / "ingress.yaml")
    assert [d["kind"] for d in m if d["apiVersion"].startswith("traefik.io/")] == []
    for doc in m:
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            assert "kubernetescrd" not in value, (doc["kind"], key, value)
    ann = m.get("Ingress", API)["metadata"]["annotations"]
    assert ann["traefik.ingress.kubernetes.io/router.tls"] == "true"
    for bad, message in (
        (("ingress.traefikCRDs=false",), "needs ingress.mode=ingress"),
        (("whoami.enabled=true",), "need the Middleware CRD"),
        (("ingress.wallet.serversTransportCRD=true",), "needs the Traefik CRDs"),
    ):
        values = () if bad[0] == "ingress.traefikCRDs=false" else (EXAMPLES / "ingress.yaml",)
        proc = helm.template_raw(*values, sets=bad, check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_plain_ingress_mode(helm):
    m = helm.render(
        EXAMPLES / "ingress.yaml", sets=("whoami.enabled=true", "ingress.traefikCRDs=true")
    )
    assert not m.of_kind("IngressRoute")
    ing = m.get("Ingress", API)
    assert ing["spec"]["ingressClassName"] == "traefik"
    ann = ing["metadata"]["annotations"]
    assert ann["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
    assert ann["traefik.ingress.kubernetes.io/router.tls"] == "true"
    assert ann["traefik.ingress.kubernetes.io/router.middlewares"] == (
        "wallet-wallet-stack-security-headers@kubernetescrd,"
        "wallet-wallet-stack-wallet-rate-limit@kubernetescrd,"
        "wallet-wallet-stack-wallet-in-flight@kubernetescrd"
    )
    assert ann["traefik.ingress.kubernetes.io/router.tls.options"] == (
        "wallet-wallet-stack-tls-options@kubernetescrd"
    )
    paths = [p["path"] for p in ing["spec"]["rules"][0]["http"]["paths"]]
    assert "/wallets" in paths and "/status" in paths
    assert not any(p == "/" or p.startswith("/metrics") for p in paths), (
        "/metrics must not be routed"
    )
    prot = m.get("Ingress", "wallet-stack-protected")
    assert (
        prot["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"]
        == "wallet-wallet-stack-security-headers@kubernetescrd,"
        "wallet-wallet-stack-auth-rate-limit@kubernetescrd,"
        "wallet-wallet-stack-basic-auth@kubernetescrd"
    )
    n, errors = _load_crd_check().check_documents(list(m))
    assert n == 6 and not errors, errors  # 5 Middlewares, TLSOption


# ---------------------------------------------------------------- upstream keep-alive

SERVER_SETTINGS = ROOT / "services" / "wallet-api" / "src" / "wallet_api" / "config.py"
SERVERSTRANSPORT_ANNOTATION = "traefik.ingress.kubernetes.io/service.serverstransport"


def _gunicorn_keepalive_default() -> int:
    m = re.search(
        r'"GUNICORN_KEEPALIVE", _number\(int, \d+, \d+\), default=(\d+)\)',
        SERVER_SETTINGS.read_text(),
    )
    assert m, f"no GUNICORN_KEEPALIVE default in {SERVER_SETTINGS}"
    return int(m.group(1))


def _api_keepalive(m) -> int:
    """gunicorn's keep-alive in the rendered API pods: GUNICORN_KEEPALIVE if the chart
    passes it (wallet.env), else the default of config.ServerSettings."""
    env = env_of(container(m.get("Deployment", API)))
    if "GUNICORN_KEEPALIVE" in env:
        return int(env["GUNICORN_KEEPALIVE"]["value"])
    return _gunicorn_keepalive_default()


def _seconds(duration) -> float:
    """Go duration as the ServersTransport CRD accepts it (int = seconds)."""
    if isinstance(duration, int):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+)(ms|us|µs|ns|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, f"duration {duration!r}"
    return sum(int(n) * units[u] for n, u in parts)


def _wallet_idle_timeout_problems(m) -> list[str]:
    """Why the wallet route's upstream idle timeout is not shorter than the API's keep-alive."""
    routes = m.get("IngressRoute", API)["spec"]["routes"]  # with its Idempotency-Key twin
    refs = {svc.get("serversTransport") for route in routes for svc in route["services"]}
    assert len(refs) == 1, refs
    (ref,) = refs
    if not ref:
        return ["the wallet IngressRoute service has no serversTransport (Traefik default: 90s)"]
    if not m.has("ServersTransport", ref):
        return [f"serversTransport {ref!r} is not rendered"]
    st = m.get("ServersTransport", ref)
    idle = st["spec"].get("forwardingTimeouts", {}).get("idleConnTimeout")
    if idle is None:
        return [f"ServersTransport/{ref} sets no idleConnTimeout (Traefik default: 90s)"]
    keepalive = _api_keepalive(m)
    if not 0 < _seconds(idle) < keepalive:
        return [f"idleConnTimeout {idle} is not below the API's keep-alive of {keepalive}s"]
    return []


@pytest.mark.parametrize(
    "values",
    [None, *sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name != "ingress.yaml")],
)
def test_wallet_route_closes_idle_connections_before_gunicorn(helm, values):
    m = helm.render(*([EXAMPLES / values] if values else []))
    assert not _wallet_idle_timeout_problems(m), _wallet_idle_timeout_problems(m)
    st = m.get("ServersTransport", API)
    assert st["apiVersion"] == "traefik.io/v1alpha1"
    assert st["metadata"]["namespace"] == "wallet"
    assert st["spec"] == {"forwardingTimeouts": {"idleConnTimeout": "3s", "dialTimeout": "1s"}}
    # IngressRoute mode: the Service needs no annotation (and the CRD provider ignores it)
    svc_ann = m.get("Service", API)["metadata"].get("annotations") or {}
    assert SERVERSTRANSPORT_ANNOTATION not in svc_ann


def test_gunicorn_keepalive_default_is_read():
    assert _gunicorn_keepalive_default() == 5


def test_wallet_env_keepalive_is_honoured(helm):
    """A GUNICORN_KEEPALIVE passed through wallet.env is the keep-alive compared with."""
    ok = helm.render(set_strings=("wallet.env.GUNICORN_KEEPALIVE=95",))
    assert _api_keepalive(ok) == 95 and not _wallet_idle_timeout_problems(ok)
    short = helm.render(set_strings=("wallet.env.GUNICORN_KEEPALIVE=2",))
    assert _api_keepalive(short) == 2
    assert "not below the API's keep-alive of 2s" in "".join(_wallet_idle_timeout_problems(short))


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (("ingress.wallet.upstreamIdleTimeout=90s",), "idleConnTimeout 90s is not below"),
        (("ingress.wallet.upstreamIdleTimeout=5s",), "idleConnTimeout 5s is not below"),
        (("ingress.wallet.upstreamIdleTimeout=4500ms",), None),
        (("ingress.wallet.upstreamIdleTimeout=1m",), "idleConnTimeout 1m is not below"),
    ],
)
def test_wallet_idle_timeout_check_is_not_vacuous(helm, sets, needle):
    problems = "".join(_wallet_idle_timeout_problems(helm.render(set_strings=sets)))
    assert (needle in problems) if needle else not problems, problems


def test_ingress_mode_without_crds_renders_no_serverstransport(helm):
    out = helm.run(
        "install", "wallet-stack", str(CHART), "--dry-run=client", "-n", "wallet",
        "-f", str(EXAMPLES / "ingress.yaml"),
    ).stdout  # fmt: skip
    m = helm.render(EXAMPLES / "ingress.yaml")
    assert not m.of_kind("ServersTransport")
    assert SERVERSTRANSPORT_ANNOTATION not in (
        m.get("Service", API)["metadata"].get("annotations") or {}
    )
    # the operator is told what to do instead (README "Upstream keep-alive")
    assert "--serversTransport.forwardingTimeouts.idleConnTimeout=3s" in out
    readme = (CHART / "README.md").read_text()
    assert "--serversTransport.forwardingTimeouts.idleConnTimeout=3s" in readme
    assert "wallet.env.GUNICORN_KEEPALIVE" in readme


def test_ingress_mode_with_crds_annotates_the_service(helm):
    m = helm.render(
        EXAMPLES / "ingress.yaml",
        sets=("ingress.wallet.serversTransportCRD=true", "ingress.traefikCRDs=true"),
    )
    st = m.get("ServersTransport", API)
    assert st["spec"]["forwardingTimeouts"]["idleConnTimeout"] == "3s"
    ann = m.get("Service", API)["metadata"]["annotations"]
    assert ann == {SERVERSTRANSPORT_ANNOTATION: f"wallet-{API}@kubernetescrd"}
    n, errors = _load_crd_check().check_documents(list(m))
    assert n == 5 and not errors, errors  # ServersTransport, 3 edge Middlewares, TLSOption
    # service.annotations are kept and win (safeNaming: namespace_name@kubernetescrd)
    m = helm.render(
        EXAMPLES / "ingress.yaml",
        sets=("ingress.wallet.serversTransportCRD=true", "ingress.traefikCRDs=true",
              "service.annotations.team=payments"),
        set_strings=(f"service.annotations.traefik\\.ingress\\.kubernetes\\.io/service\\.serverstransport=wallet_{API}@kubernetescrd",),
    )  # fmt: skip
    ann = m.get("Service", API)["metadata"]["annotations"]
    assert ann == {"team": "payments", SERVERSTRANSPORT_ANNOTATION: f"wallet_{API}@kubernetescrd"}


def test_no_serverstransport_without_routes(helm):
    assert not helm.render(sets=("ingress.enabled=false",)).of_kind("ServersTransport")


# ---------------------------------------------------------------- network policy


def test_networkpolicy_on_by_default(default):
    assert {n["metadata"]["name"] for n in default.of_kind("NetworkPolicy")} == {API, REDIS}


def test_networkpolicy_can_be_switched_off(helm):
    assert not helm.render(sets=("networkPolicy.enabled=false",)).of_kind("NetworkPolicy")


def test_networkpolicy_shape(helm):
    m = helm.render(sets=("networkPolicy.enabled=true",))
    api = m.get("NetworkPolicy", API)["spec"]
    assert api["podSelector"]["matchLabels"] == API_SELECTOR
    assert set(api["policyTypes"]) == {"Ingress", "Egress"}
    first = api["ingress"][0]
    assert first["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert first["from"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
    }
    for rule in api["ingress"]:
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}], (
            "only the API port is reachable"
        )
    dns = api["egress"][0]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    redis_egress = api["egress"][1]
    assert redis_egress["ports"] == [{"port": 6379, "protocol": "TCP"}]
    assert (
        redis_egress["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "redis"
    )
    assert len(api["egress"]) == 2

    redis = m.get("NetworkPolicy", REDIS)["spec"]
    assert redis["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": API_SELECTOR}}],
            "ports": [{"port": 6379, "protocol": "TCP"}],
        },
        {  # Prometheus, on the exporter's port only
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    },
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        },
    ]
    assert redis["egress"] == []
    with_backup = helm.render(sets=("backup.enabled=true",)).get("NetworkPolicy", REDIS)["spec"]
    backup_peer = {
        "podSelector": {"matchLabels": {**API_SELECTOR, "app.kubernetes.io/component": "backup"}}
    }
    assert backup_peer in with_backup["ingress"][0]["from"], "the backup job reaches Redis"


def test_networkpolicy_selectors_configurable(helm):
    m = helm.render(EXAMPLES / "hpa-networkpolicy.yaml")
    api = m.get("NetworkPolicy", API)["spec"]
    assert api["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    metrics_from = api["ingress"][1]["from"][0]
    assert "podSelector" not in metrics_from, "null podSelector drops the key"
    ext = helm.render(EXAMPLES / "external-redis.yaml").get("NetworkPolicy", API)["spec"]
    assert ext["egress"][1] == {
        "ports": [{"port": 6380, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
    }


# ---------------------------------------------------------------- monitoring


def test_servicemonitor(helm, default):
    assert not default.of_kind("ServiceMonitor") and not default.of_kind("PrometheusRule")
    m = helm.render(EXAMPLES / "all-routes-monitoring.yaml")
    sm = m.get("ServiceMonitor", API)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"] == API_SELECTOR
    svc_labels = m.get("Service", API)["metadata"]["labels"]
    assert API_SELECTOR.items() <= svc_labels.items()
    ep = sm["spec"]["endpoints"][0]
    assert ep["port"] == "http" and ep["path"] == "/metrics"
    assert {
        "action": "replace",
        "sourceLabels": ["__meta_kubernetes_pod_name"],
        "targetLabel": "replica",
    } in ep["relabelings"]


def test_prometheus_configmap(default):
    cm = default.get("ConfigMap", "wallet-stack-prometheus")
    cfg = yaml.safe_load(cm["data"]["prometheus.yml"])
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    api = jobs["wallet-api"]
    sd = api["kubernetes_sd_configs"][0]
    assert sd["role"] == "pod" and sd["namespaces"]["names"] == ["wallet"]
    assert "app.kubernetes.io/component=wallet-api" in sd["selectors"][0]["label"]
    relabel = {
        (tuple(r.get("source_labels", [])), r.get("target_label"), r.get("action"))
        for r in api["relabel_configs"]
    }
    assert (("__meta_kubernetes_pod_name",), "replica", None) in relabel
    assert (("__meta_kubernetes_pod_container_port_name",), None, "keep") in relabel
    assert set(jobs) == {"prometheus", "traefik", "wallet-api", "redis"}, (
        "same jobs as infra/prometheus/prometheus.yml"
    )
    assert cfg["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert cfg["global"]["external_labels"] == {"stack": "wallet-stack"}
    # Traefik's Kubernetes service names are renamed to compose's wallet@<provider>
    mr = jobs["traefik"]["metric_relabel_configs"][0]
    assert mr["source_labels"] == ["service"] and mr["target_label"] == "service"
    regex = re.compile(mr["regex"])  # Prometheus anchors the regex: fullmatch
    for name, provider in (
        ("wallet-wallet-stack-wallet-api-8000@kubernetescrd", "kubernetescrd"),
        ("wallet-wallet-stack-wallet-api-http@kubernetes", "kubernetes"),
        ("wallet-wallet-stack-wallet-api-0123456789abcdef0123@kubernetescrd", "kubernetescrd"),
    ):
        match = regex.fullmatch(name)
        assert match, name
        assert mr["replacement"].replace("${1}", match.group(1)) == f"wallet@{provider}"
        assert re.fullmatch("wallet@.*", f"wallet@{provider}")
    for other in (
        "wallet-wallet-stack-whoami-80@kubernetescrd",
        "other-wallet-stack-wallet-api-8000@kubernetescrd",
    ):
        assert not regex.fullmatch(other)


def test_rules_files_shared_with_compose(helm, default):
    chart_rules = {
        p.name: p.read_bytes() for p in sorted((CHART / "files" / "rules").glob("*.yml"))
    }
    assert chart_rules, "files/rules/*.yml is empty"
    rules_cm = default.get("ConfigMap", "wallet-stack-prometheus-rules")
    assert {k: v.encode() for k, v in rules_cm["data"].items()} == chart_rules
    pr = helm.render(sets=("metrics.prometheusRule.enabled=true",)).get("PrometheusRule", API)
    expected = [g for body in chart_rules.values() for g in yaml.safe_load(body)["groups"]]
    assert pr["spec"]["groups"] == expected
    compose_dir = ROOT / "infra" / "prometheus" / "rules"
    compose_rules = {p.name: p.read_bytes() for p in sorted(compose_dir.glob("*.yml"))}
    assert compose_rules == chart_rules, (
        "helm/wallet-stack/files/rules/ must hold byte-identical copies of "
        "infra/prometheus/rules/*.yml (rm helm/wallet-stack/files/rules/*.yml && "
        "cp infra/prometheus/rules/*.yml helm/wallet-stack/files/rules/)"
    )


# ---------------------------------------------------------------- helm test / images


def test_helm_test_pod(default):
    pod = default.get("Pod", "wallet-stack-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = container(pod)
    assert c["image"] == container(default.get("Deployment", API))["image"]
    script = " ".join(c["args"])
    assert "/status" in script and "/readyz" in script and f"http://{API}:8000" in script
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def _api_keys_ref(doc: dict) -> dict:
    return env_of(container(doc))["WALLET_API_KEYS"]["valueFrom"]["secretKeyRef"]


@pytest.mark.parametrize(
    "sets",
    [(), ("wallet.apiKeys.existingSecret=my-keys", "wallet.apiKeys.existingSecretKey=defs")],
)
def test_helm_test_pod_reads_the_development_token_of_the_deployments_secret(helm, sets):
    """The pods read the definitions of that Secret; the test pod its development
    token, if the chart made one (optional: definitions alone hold no token)."""
    m = helm.render(sets=sets)
    ref = _api_keys_ref(m.get("Pod", "wallet-stack-test"))
    volumes = m.get("Deployment", API)["spec"]["template"]["spec"]["volumes"]
    secret = next(v for v in volumes if v["name"] == "api-keys")["secret"]["secretName"]
    assert ref == {"name": secret, "key": "api-keys", "optional": True}


class _FakeApi(http.server.BaseHTTPRequestHandler):
    """The API's answers the helm test relies on; `require_auth` False = a broken API."""

    require_auth = True
    key = "helm-test-key-0123456789"

    def do_GET(self):
        if self.path in ("/status", "/readyz"):
            code, body = 200, {"replica": "fake"}
        elif self.path.startswith("/wallets/"):
            authed = self.headers.get("Authorization") == f"Bearer {self.key}"
            code = 404 if authed or not self.require_auth else 401
            body = {"status": code}
        else:
            code, body = 404, {}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _run_helm_test_script(
    default, require_auth: bool, token: str | None = f"{_FakeApi.key},second-key"
) -> subprocess.CompletedProcess:
    """The helm test Pod's script, as rendered, against a local fake of the API."""
    handler = type("Api", (_FakeApi,), {"require_auth": require_auth})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = container(default.get("Pod", "wallet-stack-test"))
        assert c["command"] == ["python", "-c"]
        script = c["args"][0].replace(
            f"http://{API}:8000", f"http://127.0.0.1:{server.server_address[1]}"
        )
        env = {"PATH": os.environ["PATH"]}
        if token is not None:  # the secretKeyRef is optional: no variable without the key
            env["WALLET_API_KEYS"] = token
        return subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
        server.server_close()


def test_helm_test_script_authenticates_with_the_bearer_key(default):
    ok = _run_helm_test_script(default, require_auth=True)
    assert ok.returncode == 0, ok.stderr
    assert "bearer auth works" in ok.stdout
    # An API that lets anyone in must fail the helm test.
    broken = _run_helm_test_script(default, require_auth=False)
    assert broken.returncode != 0
    assert "without a key" in broken.stderr
    # No development token in the chart: the 401 is still checked, the rest says so.
    no_token = _run_helm_test_script(default, require_auth=True, token=None)
    assert no_token.returncode == 0, no_token.stderr
    assert "NOT RUN" in no_token.stdout and "bearer auth works" not in no_token.stdout
    assert _run_helm_test_script(default, require_auth=False, token=None).returncode != 0


def _containers(node, where=""):
    """Every container spec below a rendered object (Deployments, StatefulSets, CronJobs)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from ((where, c) for c in value)
            else:
                yield from _containers(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item, where)


def test_every_image_is_a_value(helm):
    m = helm.render(EXAMPLES / "airgap.yaml")
    images = {
        f"{d['kind']}/{d['metadata']['name']}/{c['name']}": c["image"]
        for d in m
        for _, c in _containers(d.get("spec", {}))
    }
    assert {
        "StatefulSet/wallet-stack-redis/exporter",
        "CronJob/wallet-stack-backup/backup",
        "Deployment/wallet-stack-alertmanager/alertmanager",
    } <= set(images), sorted(images)
    for where, image in images.items():
        assert image.startswith(("wallet-stack-local/", "wallet-stack/")), (where, image)
        assert ":" in image


def test_image_tag_defaults_to_app_version(default):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] and chart["appVersion"] != "latest"
    assert (
        container(default.get("Deployment", API))["image"]
        == f"wallet-stack/wallet-api:{chart['appVersion']}"
    )


def test_values_schema_is_valid_json():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["replicaCount"]["type"] == "integer"


def _readme_value_keys(readme: str) -> set:
    """Keys of the README values table; `a.b.c` / `d` in one cell means a.b.c and a.b.d."""
    keys = set()
    section = readme.split("## Values", 1)[1]
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        tokens = re.findall(r"`([^`]+)`", line.split("|")[1])
        first = tokens[0].rstrip(".*")
        keys.add(first)
        parent = first.rsplit(".", 1)[0] + "." if "." in first else ""
        keys.update(parent + t.rstrip(".*") for t in tokens[1:])
    return keys


def test_readme_documents_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = _readme_value_keys((CHART / "README.md").read_text())
    missing = []
    for top, sub in values.items():
        if not any(k == top or k.startswith(top + ".") for k in keys):
            missing.append(top)
        if isinstance(sub, dict):
            for key in sub:
                path = f"{top}.{key}"
                if not any(k == path or k.startswith(path + ".") for k in keys):
                    missing.append(path)
    assert not missing, f"README values table lacks {missing}"


def test_crd_check_catches_broken_objects(default):
    check = _load_crd_check().check_documents
    ir = json.loads(json.dumps(default.get("IngressRoute", API)))
    ir["spec"]["routes"][0].pop("match")
    ir["spec"]["routes"][0]["middlewares"] = [{"name": "missing-mw"}]
    ir["spec"]["tlss"] = {}
    mw = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "Middleware",
        "metadata": {"name": "x"},
        "spec": {"basicAuth": {"users": ["a:b"]}},
    }
    sm = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "s"},
        "spec": {"endpoints": [{"path": "/metrics", "relabelings": [{"action": "rename"}]}]},
    }
    pr = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "record": "b", "expr": "up"}]}]},
    }
    odd = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRouteTCP",
        "metadata": {"name": "t"},
        "spec": {},
    }
    ir["spec"]["routes"][0]["services"][0]["serversTransport"] = "missing-st"
    st = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "ServersTransport",
        "metadata": {"name": "st", "namespace": "wallet"},
        "spec": {"forwardingTimeout": {}, "forwardingTimeouts": {"idleConnTimeout": "3 s"}},
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "svc",
            "annotations": {
                "traefik.ingress.kubernetes.io/service.serverstransport": "wallet-nope@kubernetescrd"
            },
        },
    }
    n, errors = check([ir, mw, sm, pr, odd, st, svc])
    text = "\n".join(errors)
    assert n == 6
    for needle in (
        ".match: must be a non-empty string",
        "unknown field(s) ['tlss']",
        "Middleware/missing-mw",
        "basicAuth: unknown field(s) ['users']",
        "selector: required",
        "port or targetPort required",
        "action: invalid 'rename'",
        "exactly one of alert/record",
        "has no checker",
        "ServersTransport/missing-st which is not rendered",
        "unknown field(s) ['forwardingTimeout']",
        "idleConnTimeout: '3 s' is not a duration",
        "wallet-nope@kubernetescrd names no rendered ServersTransport",
    ):
        assert needle in text, (needle, text)


# ---------------------------------------------------------------- operating (issue 12)


def test_alertmanager_option_routes_like_compose_to_your_receiver(helm):
    m = helm.render(sets=("alertmanager.enabled=true", "alertmanager.webhookUrl=http://hook:9/x"))
    cfg = yaml.safe_load(
        m.get("ConfigMap", "wallet-stack-alertmanager")["data"]["alertmanager.yml"]
    )
    compose = yaml.safe_load((ROOT / "infra" / "alertmanager" / "alertmanager.yml").read_text())
    assert cfg["route"] == compose["route"] and cfg["inhibit_rules"] == compose["inhibit_rules"]
    assert cfg["receivers"] == [
        {"name": "team", "webhook_configs": [{"url": "http://hook:9/x", "send_resolved": True}]}
    ]
    prom = yaml.safe_load(m.get("ConfigMap", "wallet-stack-prometheus")["data"]["prometheus.yml"])
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "wallet-stack-alertmanager:9093"
    ]
    c = container(m.get("Deployment", "wallet-stack-alertmanager"))
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_backup_cronjob_writes_checked_snapshots_to_a_kept_pvc(helm):
    m = helm.render(sets=("backup.enabled=true", "backup.keep=3"))
    cron = m.get("CronJob", "wallet-stack-backup")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    script = c["args"][0]
    assert "--user ops" in script and "--rdb" in script and "sha256sum" in script
    assert env_of(c)["KEEP"]["value"] == "3"
    assert env_of(c)["REDIS_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "admin-password"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    pvc = m.get("PersistentVolumeClaim", "wallet-stack-backup")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not helm.render().of_kind("CronJob"), "off by default"


def test_grafana_dashboard_configmap_is_the_compose_file(default):
    cm = default.get("ConfigMap", "wallet-stack-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (ROOT / "infra" / "grafana" / "dashboards" / "wallet-stack.json").read_text()
    assert json.loads(cm["data"]["wallet-stack.json"]) == json.loads(shipped)


def test_redis_exporter_is_scraped_as_job_redis(helm):
    m = helm.render(EXAMPLES / "all-routes-monitoring.yaml")
    sm = m.get("ServiceMonitor", REDIS)
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert {"name": "metrics", "port": 9121, "targetPort": "metrics", "protocol": "TCP"} in m.get(
        "Service", REDIS
    )["spec"]["ports"]

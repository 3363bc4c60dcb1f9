"""The chart's probes work against the real image, without a cluster.

The Deployment and the Redis StatefulSet are rendered with `helm template`
(default values; images = the locally built wallet-api image and REDIS_IMAGE;
known test secrets), and run the way the kubelet would run them: env resolved
from the rendered Secrets and fieldRefs with $(VAR) expansion, command/args
expanded, securityContext -> --user/--group-add/--read-only/--cap-drop/
no-new-privileges, emptyDir -> tmpfs, volumeClaimTemplates -> a volume, a Secret
volume (the API key definitions) -> its files bind-mounted read-only, limits
-> --memory/--cpus, the Service name of Redis -> a network alias. Then exactly
the probes the manifests declare are executed and judged like the kubelet does.

Also proves the image runs with a read-only root filesystem.

Images: WALLET_API_IMAGE (default wallet-stack/wallet-api:dev; built from
services/wallet-api when missing) and REDIS_IMAGE (env, else .airgap.env, else
the chart default).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import kubelet_sim as ks
import parity_check as pc
import pytest
import yaml

pytestmark = pytest.mark.docker

ROOT = pc.ROOT
LABEL = "io.wallet-stack.test=parity-probes"
API, REDIS = "wallet-api", "redis"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def setting(name: str, default: str) -> str:
    """Env var, else .airgap.env (like make), else the default."""
    if os.environ.get(name):
        return os.environ[name]
    airgap = ROOT / ".airgap.env"
    if airgap.exists():
        value = pc.read_dotenv(airgap).get(name)
        if value:
            return value
    return default


@pytest.fixture(scope="module")
def images(helm) -> dict[str, str]:
    if docker("info", check=False).returncode != 0:
        pytest.fail(
            "`docker info` fails: start Docker (air-gapped machine: scripts/airgap.sh)",
            pytrace=False,
        )
    api_image = os.environ.get("WALLET_API_IMAGE", "wallet-stack/wallet-api:dev")
    if docker("image", "inspect", api_image, check=False).returncode != 0:
        python_image = setting("PYTHON_IMAGE", "python:3.12-slim-bookworm")
        docker("build", "--build-arg", f"PYTHON_IMAGE={python_image}", "-t", api_image,
               str(ROOT / "services" / "wallet-api"), timeout=900)  # fmt: skip
    chart_redis = ks.container_of(helm.render().get("StatefulSet", "wallet-stack-redis"), REDIS)[
        "image"
    ]
    redis_image = setting("REDIS_IMAGE", chart_redis)
    if docker("image", "inspect", redis_image, check=False).returncode != 0:
        pytest.fail(
            f"image {redis_image} is not present (docker pull it, or scripts/airgap.sh)",
            pytrace=False,
        )
    return {API: api_image, REDIS: redis_image}


@pytest.fixture(scope="module")
def manifests(helm, images, tmp_path_factory) -> list[dict]:
    """Default values; only the images and the (otherwise random) secrets are set."""
    api_repo, api_tag = pc.split_image(images[API])
    redis_repo, redis_tag = pc.split_image(images[REDIS])
    overlay = {
        "image": {"repository": api_repo, "tag": api_tag, "pullPolicy": "Never"},
        "redis": {
            "image": {
                "repository": redis_repo,
                "tag": redis_tag,
                "pullPolicy": "Never",
            },
            "auth": {"password": secrets.token_hex(16)},
        },
        "wallet": {"apiKeys": {"keys": [secrets.token_hex(20)]}},
    }
    path = tmp_path_factory.mktemp("values") / "probe-values.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return list(helm.render(path))


class Pod:
    """One rendered workload run as one docker container."""

    def __init__(
        self,
        manifests: list[dict],
        kind: str,
        name: str,
        container: str,
        suffix: str,
        files_dir: Path,
    ):
        self.workload = ks.find(manifests, kind, name)
        self.container = ks.container_of(self.workload, container)
        self.pod_name = f"{name}-0" if kind == "StatefulSet" else f"{name}-{suffix}"
        self.docker_name = f"parity-{self.pod_name}-{suffix}"
        self.env = ks.resolve_env(
            self.container, manifests, pod_name=self.pod_name, namespace=pc.NAMESPACE
        )
        configmaps = {
            d["metadata"]["name"]: d.get("data") or {}
            for d in manifests
            if d["kind"] == "ConfigMap"
        }
        self.run = ks.docker_run_flags(
            self.workload, self.container, dict(self.env), manifests=manifests,
            files_dir=files_dir / self.docker_name, volume_prefix=self.docker_name,
            configmaps=configmaps,
        )  # fmt: skip
        self.ports: dict[int, int] = {}

    def start(self, network: str, aliases: list[str], env_dir: Path) -> None:
        env_file = env_dir / f"{self.docker_name}.env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.env))
        cmd = ["run", "-d", "--name", self.docker_name, "--hostname", self.pod_name[:63],
               "--label", LABEL,
               # Images built by compose carry its project labels; without this
               # override `docker compose ps` would count these containers as the stack's.
               "--label", "com.docker.compose.project=wallet-stack-parity", "--network", network, "--env-file", str(env_file), *self.run.flags]  # fmt: skip
        for volume in self.run.owned_volumes:  # the kubelet's fsGroup ownership change
            docker("volume", "create", "--label", LABEL, volume)
            docker("run", "--rm", "--user", "0", "--entrypoint", "sh", "-v", f"{volume}:/v",
                   self.container["image"], "-c", f"chgrp {self.run.fs_group} /v && chmod 2770 /v")  # fmt: skip
        for alias in aliases:
            cmd += ["--network-alias", alias]
        for p in self.container.get("ports", []):
            cmd += ["-p", f"127.0.0.1::{p['containerPort']}"]
        if self.run.entrypoint:
            cmd += ["--entrypoint", self.run.entrypoint]
        cmd += [self.container["image"], *self.run.args]
        docker(*cmd)
        for p in self.container.get("ports", []):
            out = docker("port", self.docker_name, f"{p['containerPort']}/tcp").stdout
            self.ports[int(p["containerPort"])] = int(out.splitlines()[0].rsplit(":", 1)[1])

    def running(self) -> bool:
        out = docker("inspect", "-f", "{{.State.Running}}", self.docker_name, check=False).stdout
        return out.strip() == "true"

    def logs(self) -> str:
        proc = docker("logs", "--tail", "40", self.docker_name, check=False)
        return f"--- docker logs {self.docker_name}:\n{proc.stdout}{proc.stderr}"

    def http(self, probe_key: str) -> ks.ProbeResult:
        return ks.http_probe(self.container[probe_key], self.container, "127.0.0.1", self.ports)

    def exec(self, probe_key: str) -> ks.ProbeResult:
        return ks.exec_probe(self.container[probe_key], self.docker_name)


class Stack:
    def __init__(self):
        self.api: Pod
        self.redis: Pod
        self.startup: tuple[bool, list[ks.ProbeResult]] = (False, [])
        self.redis_ready: tuple[bool, list[ks.ProbeResult]] = (False, [])
        self.timings: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack(manifests, tmp_path_factory, request) -> Stack:
    suffix = uuid.uuid4().hex[:8]
    network = f"wallet-parity-{suffix}"
    env_dir = tmp_path_factory.mktemp("env")
    s = Stack()
    files_dir = tmp_path_factory.mktemp("secret-volumes")
    s.redis = Pod(manifests, "StatefulSet", "wallet-stack-redis", REDIS, suffix, files_dir)
    s.api = Pod(manifests, "Deployment", "wallet-stack-wallet-api", API, suffix, files_dir)

    def cleanup():
        for pod in (s.api, s.redis):
            docker("rm", "-f", "-v", pod.docker_name, check=False)
            for volume in pod.run.owned_volumes:
                docker("volume", "rm", volume, check=False)
        docker("network", "rm", network, check=False)

    request.addfinalizer(cleanup)
    docker("network", "create", "--label", LABEL, network)

    # Redis, reachable under the name REDIS_URL uses: the Service selecting its pods.
    redis_host = pc.urlsplit(dict(s.api.env)["REDIS_URL"]).hostname
    selecting = {
        svc["metadata"]["name"] for svc in ks.services_selecting(manifests, s.redis.workload)
    }
    assert redis_host in selecting, (
        f"REDIS_URL host {redis_host} is not a Service of the redis pods {selecting}"
    )
    t0 = time.monotonic()
    s.redis.start(network, [redis_host], env_dir)
    s.redis_ready = ks.wait_like_kubelet(lambda: s.redis.exec("readinessProbe"), s.redis.container["readinessProbe"],
                                         alive=s.redis.running)  # fmt: skip
    s.timings["redis ready"] = time.monotonic() - t0
    assert s.redis_ready[0], (
        f"redis readinessProbe never passed: {s.redis_ready[1]}\n{s.redis.logs()}"
    )

    t0 = time.monotonic()
    s.api.start(network, [], env_dir)
    s.startup = ks.wait_like_kubelet(lambda: s.api.http("startupProbe"), s.api.container["startupProbe"],
                                     alive=s.api.running)  # fmt: skip
    s.timings["wallet-api startupProbe passed"] = time.monotonic() - t0
    return s


def _report(stack: Stack, what: str, results) -> str:
    return f"{what}: {[str(r) for r in results]}\n{stack.api.logs()}\n{stack.redis.logs()}"


# ---------------------------------------------------------------- tests


def test_translation_is_what_the_manifest_asks(stack):
    """The securityContext really reached docker, and the rootfs is read-only."""
    info = json.loads(docker("inspect", stack.api.docker_name).stdout)[0]
    host, config = info["HostConfig"], info["Config"]
    sc = stack.api.container["securityContext"]
    assert config["User"] == f"{sc['runAsUser']}:{sc['runAsGroup']}"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert "/tmp" in host["Tmpfs"]
    assert config["Image"] == stack.api.container["image"]
    assert not stack.api.container.get("command") and not stack.api.container.get("args"), (
        "the Deployment uses the image ENTRYPOINT (gunicorn)"
    )
    probe = "import os; open('/tmp/x', 'w').write('x'); open('/app/x', 'w')"
    proc = docker("exec", stack.api.docker_name, "python", "-c", probe, check=False)
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr, proc.stderr
    assert stack.redis.running() and stack.api.running()


def test_redis_exec_probes_pass(stack):
    """Redis' own probes (redis-cli with REDISCLI_AUTH) under the chart's args."""
    assert stack.redis_ready[0]
    for key in ("livenessProbe", "readinessProbe"):
        result = stack.redis.exec(key)
        assert result.ok, f"{key}: {result}\n{stack.redis.logs()}"
        assert result.elapsed <= ks.probe_setting(stack.redis.container[key], "timeoutSeconds") + 1


def test_startup_probe_passes(stack):
    ok, results = stack.startup
    probe = stack.api.container["startupProbe"]
    budget = ks.probe_setting(probe, "periodSeconds") * ks.probe_setting(probe, "failureThreshold")
    assert ok, _report(stack, f"startupProbe failed within {budget}s", results)
    print(f"\nstartupProbe passed after {len(results)} attempt(s), "
          f"{stack.timings['wallet-api startupProbe passed']:.1f}s after docker run (budget {budget}s)")  # fmt: skip


def test_redis_memory_is_bounded_by_the_pod_limit(stack):
    """files/redis/redis-server.sh under the chart's securityContext (uid 999, read-only
    rootfs, the scripts from their ConfigMap) sets maxmemory from the memory limit;
    the policy never evicts."""
    limit = ks.quantity_bytes(stack.redis.container["resources"]["limits"]["memory"])
    percent = int(dict(stack.redis.env)["REDIS_MAXMEMORY_PERCENT"])

    def config(name: str) -> str:
        out = docker("exec", stack.redis.docker_name, "redis-cli", "config", "get", name).stdout
        return out.split()[-1]

    assert int(config("maxmemory")) == limit * percent // 100, stack.redis.logs()
    assert config("maxmemory-policy") == "noeviction"


@pytest.mark.parametrize("probe_key", ["livenessProbe", "readinessProbe", "startupProbe"])
def test_probe_answers_like_the_kubelet_wants(stack, probe_key):
    """Exactly the declared httpGet path and (named) port: 2xx/3xx within timeoutSeconds."""
    assert stack.startup[0], "startupProbe did not pass"
    probe = stack.api.container[probe_key]
    timeout = ks.probe_setting(probe, "timeoutSeconds")
    results = [stack.api.http(probe_key) for _ in range(5)]
    assert all(r.ok for r in results), _report(stack, f"{probe_key} {probe['httpGet']}", results)
    assert max(r.elapsed for r in results) <= timeout
    assert all(r.status == 200 for r in results)


def test_the_api_keys_from_the_chart_secret_authenticate(stack, manifests):
    """The key definitions file (Secret volume, WALLET_API_KEYS_FILE) is what the
    API reads: the chart's development token is accepted, nothing else is."""
    assert stack.startup[0], "startupProbe did not pass"
    token = ks.secret_value(manifests, "wallet-stack-api-keys", "api-keys")
    assert token and token not in "".join(f"{k}={v}" for k, v in stack.api.env)
    base = f"http://127.0.0.1:{stack.api.ports[8000]}/wallets/no-such-wallet"

    def status(headers: dict[str, str]) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(base, headers=headers), timeout=10):
                return 200
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status({"Authorization": f"Bearer {token}"}) == 404, stack.api.logs()
    assert status({"Authorization": "Bearer not-the-token-0123456789"}) == 401
    assert status({}) == 401


def test_scrape_target_from_the_annotations(stack):
    """prometheus.io/port + path: the metrics multiprocess dir lives on the /tmp emptyDir."""
    ann = stack.api.workload["spec"]["template"]["metadata"]["annotations"]
    fake = {
        "httpGet": {
            "path": ann["prometheus.io/path"],
            "port": int(ann["prometheus.io/port"]),
        },
        "timeoutSeconds": 10,
    }
    result = ks.http_probe(fake, stack.api.container, "127.0.0.1", stack.api.ports)
    assert result.status == 200, _report(stack, "scrape", [result])


def test_redis_outage_makes_unready_not_dead(stack):
    """Designed behaviour: Redis down -> readiness 503 (out of the Service), liveness
    still 200 (no restart); Redis back -> ready again. Runs last: it stops Redis."""
    assert stack.startup[0], "startupProbe did not pass"
    api = stack.api
    readiness, liveness = (
        api.container["readinessProbe"],
        api.container["livenessProbe"],
    )
    r_timeout = ks.probe_setting(readiness, "timeoutSeconds")
    # the kubelet marks the pod unready after failureThreshold failed periods
    r_budget = ks.probe_setting(readiness, "periodSeconds") * ks.probe_setting(
        readiness, "failureThreshold"
    )

    docker("stop", "-t", "10", stack.redis.docker_name)
    t0 = time.monotonic()
    seen: list[ks.ProbeResult] = []
    while time.monotonic() - t0 < r_budget:
        seen.append(api.http("readinessProbe"))
        if seen[-1].status == 503:
            break
        time.sleep(0.5)
    assert seen[-1].status == 503, _report(stack, "readiness with Redis stopped", seen)
    assert seen[-1].elapsed <= r_timeout, (
        f"503 took {seen[-1].elapsed:.2f}s > timeoutSeconds {r_timeout}"
    )
    stack.timings["readiness 503 after redis stop"] = time.monotonic() - t0

    live = []
    for _ in range(ks.probe_setting(liveness, "failureThreshold") + 2):
        live.append(api.http("livenessProbe"))
        time.sleep(1)
    assert all(r.ok and r.status == 200 for r in live), _report(
        stack, "liveness with Redis stopped", live
    )
    assert api.running()

    docker("start", stack.redis.docker_name)
    t0 = time.monotonic()
    back = []
    while time.monotonic() - t0 < 60:
        back.append(api.http("readinessProbe"))
        if back[-1].ok:
            break
        time.sleep(ks.probe_setting(readiness, "periodSeconds"))
    assert back[-1].ok, _report(stack, "readiness after Redis restart", back)
    stack.timings["ready again after redis start"] = time.monotonic() - t0
    print("\n" + ", ".join(f"{k}: {v:.1f}s" for k, v in stack.timings.items()))

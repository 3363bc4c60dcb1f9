"""Testcontainers fixtures: real Redis (AOF, password) + N wallet-api replicas.

Everything runs in containers on one user-defined Docker network: Redis is
reached by the replicas under the network alias ``redis``; each replica
publishes port 8000 on 127.0.0.1 (random host port) for the test client.

Ryuk (testcontainers' reaper container) and TC_HOST are decided here, BEFORE
anything imports testcontainers -- see ``_configure_testcontainers()`` and
README.md ("Ryuk"). Without Ryuk, the fixtures' own finalizers remove every
container and the network (also when a test or the start-up fails), and
``pytest_sessionfinish`` double-checks by label that nothing is left.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]
SERVICE_DIR = ROOT / "services" / "wallet-api"
DEFAULT_RYUK_IMAGE = "testcontainers/ryuk:0.8.1"  # testcontainers 4.15's default

# Labels on everything this suite creates (on top of testcontainers' own
# org.testcontainers.* labels, which carry the session id).
SUITE_LABEL = "io.wallet-stack.test-suite"
OWNER_LABEL = "io.wallet-stack.test-owner"  # "<hostname>:<pid>" of the pytest process
SUITE = "containers"
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def _load_airgap_env() -> None:
    """`make` exports .airgap.env; a bare `pytest` run should see the same images."""
    env_file = ROOT / ".airgap.env"
    if not env_file.is_file():
        return
    for line in env_file.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            os.environ.setdefault(key, value.strip().strip("'\""))


def _local_image_exists(image: str) -> bool:
    import docker  # the Docker SDK; importing it does not import testcontainers

    try:
        client = docker.from_env()
        try:
            client.images.get(image)
            return True
        finally:
            client.close()
    except Exception:  # not found, or no engine (the docker_client fixture reports that)
        return False


def _local_dockerd() -> bool:
    """Does the Docker engine run in this machine's (container's) own PID namespace?"""
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _configure_testcontainers() -> tuple[str, bool]:
    """Set testcontainers' environment before it is imported.

    Returns how Ryuk was decided, and whether the Docker engine runs on this machine.

    testcontainers 4.15 (testcontainers/core/config.py) reads RYUK_CONTAINER_IMAGE,
    TC_HOST/TESTCONTAINERS_HOST_OVERRIDE, TESTCONTAINERS_CONNECTION_MODE, TC_MAX_TRIES
    and TC_POOLING_INTERVAL once, when the module is imported (dataclass defaults), and
    TESTCONTAINERS_RYUK_DISABLED (else `ryuk.disabled` in ~/.testcontainers.properties)
    on the first container start, then caches it. Setting everything here, before
    the first import, is right for both; the fixture asserts the result.
    """
    _load_airgap_env()
    local_engine = False
    docker_host = os.environ.get("DOCKER_HOST", "")
    if not docker_host or docker_host.startswith("unix://"):
        if not Path("/.dockerenv").exists():
            local_engine = True
        elif _local_dockerd():
            # We run inside a container but the engine runs here too (scripts/airgap.sh
            # starts one): testcontainers would otherwise assume Docker-in-Docker and
            # connect to the default gateway's IP instead of 127.0.0.1.
            local_engine = True
            os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    if local_engine:
        # The engine publishes the containers' ports on this machine; the fixtures bind
        # them to its loopback only.
        os.environ.setdefault("TC_HOST", "127.0.0.1")
    if "TESTCONTAINERS_RYUK_DISABLED" in os.environ:
        value = os.environ["TESTCONTAINERS_RYUK_DISABLED"]
        return f"TESTCONTAINERS_RYUK_DISABLED={value} (set by caller)", local_engine
    ryuk_image = os.environ.get("RYUK_CONTAINER_IMAGE", DEFAULT_RYUK_IMAGE)
    if _local_image_exists(ryuk_image):
        return f"Ryuk enabled ({ryuk_image} is present locally)", local_engine
    if (ROOT / ".airgap.env").is_file() or os.environ.get("REDIS_IMAGE", "").startswith(
        "wallet-stack-local/"
    ):
        # Air-gapped (scripts/airgap.sh wrote .airgap.env): no registry to pull Ryuk from.
        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        return (
            f"Ryuk disabled: air-gapped and {ryuk_image} is not present locally "
            "(cleanup by fixture finalizers + stale-owner sweep)",
            local_engine,
        )
    return f"Ryuk enabled ({ryuk_image} will be pulled by testcontainers)", local_engine


# LOCAL_ENGINE: the Docker engine runs on this machine (the published ports are here).
RYUK_DECISION, LOCAL_ENGINE = _configure_testcontainers()

# Only now import testcontainers (4.15 layout: testcontainers.core.*, modules under
# testcontainers.community.*; the old testcontainers.redis path is a deprecated shim).
from testcontainers.community.redis import PingWaitStrategy, RedisContainer  # noqa: E402
from testcontainers.core.config import testcontainers_config  # noqa: E402
from testcontainers.core.container import DockerContainer  # noqa: E402
from testcontainers.core.image import DockerImage  # noqa: E402
from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID  # noqa: E402
from testcontainers.core.network import Network  # noqa: E402
from testcontainers.core.wait_strategies import HttpWaitStrategy  # noqa: E402
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget  # noqa: E402

REDIS_IMAGE = os.environ.get("REDIS_IMAGE") or "redis:7.4.5-bookworm"
PYTHON_IMAGE = os.environ.get("PYTHON_IMAGE") or "python:3.12-slim-bookworm"
API_IMAGE = os.environ.get("WALLET_API_TEST_IMAGE") or "wallet-stack/wallet-api:containers-test"
REPLICAS = int(os.environ.get("CONTAINERS_REPLICAS", "3"))
# API keys, as the replicas' key definitions file (WALLET_API_KEYS_FILE) defines them:
# two keys of tenant alpha (a rotation: old and new), one of tenant beta, and one
# alpha key per scope. The containers get the digests only (keys_file()).
API_KEYS = ("containers-suite-key-A-0123456789", "containers-suite-key-B-9876543210")
BETA_KEY = "containers-suite-key-beta-0123456789"
SCOPES = ("wallets:read", "wallets:create", "money:move")
SCOPE_KEYS = {scope: f"containers-suite-only-{scope}-0123456789" for scope in SCOPES}
KEYS: dict[str, tuple[str, str, tuple[str, ...]]] = {  # token -> (key id, tenant, scopes)
    API_KEYS[0]: ("key_alpha_old", "alpha", SCOPES),
    API_KEYS[1]: ("key_alpha_new", "alpha", SCOPES),
    BETA_KEY: ("key_beta", "beta", SCOPES),
    **{t: (f"key_alpha_{s.replace(':', '_')}", "alpha", (s,)) for s, t in SCOPE_KEYS.items()},
}
KEYS_FILE_PATH = "/etc/wallet-api/keys/api-keys.yaml"


def keys_file(tokens: tuple[str, ...] | None = None) -> bytes:
    """The key definitions (YAML, as stackctl writes them) of `tokens` (default: all)."""
    import yaml

    definitions = [
        {
            "id": KEYS[t][0],
            "tenant": KEYS[t][1],
            "scopes": list(KEYS[t][2]),
            "digest": "sha256:" + hashlib.sha256(t.encode()).hexdigest(),
        }
        for t in (tokens if tokens is not None else tuple(KEYS))
    ]
    return yaml.safe_dump({"keys": definitions}, sort_keys=False).encode()


REDIS_PASSWORD = f"pw-{uuid.uuid4().hex}"
LABELS = {SUITE_LABEL: SUITE, OWNER_LABEL: OWNER}
# Published ports: on the loopback only when the engine is local (only the test client
# talks to them); otherwise (remote engine, Docker-in-Docker) testcontainers' defaults.
PUBLISH: tuple[str] | None = ("127.0.0.1",) if LOCAL_ENGINE else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "containers: needs a Docker engine (Testcontainers: Redis + wallet-api replicas)"
    )
    # CI cancels jobs with SIGTERM: turn it into KeyboardInterrupt so pytest unwinds
    # and every fixture finalizer (container/network removal) still runs.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    # Once is enough: a second SIGTERM (e.g. `timeout` signals the child and then its
    # process group) must not interrupt the finalizers that are now removing containers.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


# Cheap checks first, faults last (each module is independent; this is only about
# failing fast and about faults not running before the plain contract is known good).
MODULE_ORDER = (
    "test_containers_contract",
    "test_containers_concurrency",
    "test_containers_tenants",
    "test_containers_faults",
    "test_containers_failover",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.fspath)).parents]

    def rank(item: pytest.Item) -> int:
        stem = Path(str(item.fspath)).stem
        return MODULE_ORDER.index(stem) if stem in MODULE_ORDER else len(MODULE_ORDER)

    ours = sorted((items[i] for i in slots), key=rank)  # stable within a module
    for slot, item in zip(slots, ours, strict=True):
        item.add_marker(pytest.mark.containers)
        items[slot] = item  # other suites' items keep their places


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"containers: redis={REDIS_IMAGE} python={PYTHON_IMAGE} api={API_IMAGE} replicas={REPLICAS}",
        f"containers: {RYUK_DECISION}; TC_HOST={os.environ.get('TC_HOST', '(auto)')}; "
        f"connection mode={os.environ.get('TESTCONTAINERS_CONNECTION_MODE', '(auto)')}; "
        f"session={SESSION_ID}",
    ]


# -- cleanup ---------------------------------------------------------------------


class Cleanups:
    """A fixture's teardown steps, `(what, fn)`, run last-first when called (its
    finalizer), each whatever the others did; the failures are raised together."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []

    def append(self, step: tuple[str, Any]) -> None:
        self.steps.append(step)

    def __call__(self) -> None:
        errors = []
        for what, fn in reversed(self.steps):
            try:
                fn()
            except Exception as exc:
                errors.append(f"{what}: {exc}")
        self.steps.clear()
        if errors:
            raise RuntimeError(f"cleanup failed: {errors}")


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_labelled(client: Any, filters: dict[str, Any], *, dead_owners_only: bool) -> list[str]:
    """Remove containers (then networks) matching the label filters; return their names."""
    removed: list[str] = []
    for container in client.containers.list(all=True, filters=filters):
        owner = container.labels.get(OWNER_LABEL, "")
        if dead_owners_only and _owner_alive(owner):
            continue
        try:
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        except Exception as exc:  # already gone
            if "No such container" not in str(exc) and "404" not in str(exc):
                raise
    for network in client.networks.list(filters=filters):
        owner = network.attrs.get("Labels", {}).get(OWNER_LABEL, "")
        if dead_owners_only and _owner_alive(owner):
            continue
        try:
            network.remove()
            removed.append(f"network {network.name}")
        except Exception as exc:
            if "not found" not in str(exc).lower() and "404" not in str(exc):
                raise
    return removed


@pytest.hookimpl(trylast=True)  # after pytest's runner tore the session fixtures down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Safety net: after every finalizer ran, nothing of this session may be left."""
    client = getattr(session.config, "_containers_docker", None)
    if client is None:
        return
    leftovers = _remove_labelled(
        client, {"label": f"{LABEL_SESSION_ID}={SESSION_ID}"}, dead_owners_only=False
    )
    if leftovers:
        # A finalizer missed something: that is a bug in this suite. Removed now, but fail.
        sys.stderr.write(f"\ncontainers: finalizers left {leftovers}; removed them now\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        print(f"\ncontainers: cleanup verified, nothing left with {LABEL_SESSION_ID}={SESSION_ID}")
    client.close()


# -- stack -----------------------------------------------------------------------


class RedisNode:
    """The Redis container plus the fault operations the tests need."""

    def __init__(self, container: RedisContainer) -> None:
        self.container = container

    @property
    def docker(self) -> Any:
        return self.container.get_wrapped_container()

    def client(self) -> Any:
        # A new client each time: the published port may change when the container restarts.
        return self.container.get_client(socket_timeout=5, socket_connect_timeout=5)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.docker.reload()
                if self.docker.status == "running" and self.client().ping():
                    return
            except Exception as exc:  # refused / loading / no port yet
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"redis not ready after {timeout}s: {last}")

    def stop(self) -> None:
        self.docker.stop(timeout=10)  # SIGTERM: Redis fsyncs its AOF and exits

    def kill(self) -> None:
        self.docker.kill(signal="SIGKILL")  # a crash: only what is fsynced survives
        self.docker.wait(timeout=30)

    def start(self) -> None:
        self.docker.start()
        self.wait_ready()


class Replica:
    """One wallet-api container; ``url`` follows it across restarts (new host port)."""

    def __init__(self, container: DockerContainer, replica_id: str) -> None:
        self.container = container
        self.replica_id = replica_id
        self._lock = threading.Lock()
        self._url: str | None = None
        self.restarts = 0

    @property
    def docker(self) -> Any:
        return self.container.get_wrapped_container()

    @property
    def url(self) -> str | None:
        """The base URL (refreshed on restart: the host port changes)."""
        with self._lock:
            return self._url

    def refresh_url(self) -> str:
        host = self.container.get_container_host_ip()
        port = self.container.get_exposed_port(8000)
        with self._lock:
            self._url = f"http://{host}:{port}"
            return self._url

    def kill(self) -> None:
        # The URL stays in the clients' rotation, like behind a load balancer without
        # health checks: clients find out by connection errors and go elsewhere.
        self.docker.kill(signal="SIGKILL")
        self.docker.wait(timeout=30)

    def start(self) -> None:
        self.docker.start()
        self.restarts += 1
        self.wait_ready()

    def running(self) -> bool:
        self.docker.reload()
        return bool(self.docker.status == "running")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                if not self.running():
                    last = f"container {self.docker.status}"
                    if self.docker.status in ("exited", "dead"):
                        break
                else:
                    url = self.refresh_url()
                    r = requests.get(f"{url}/readyz", timeout=2)
                    if r.status_code == 200:
                        return
                    last = f"/readyz {r.status_code} {r.text[:200]}"
            except Exception as exc:
                last = exc
            time.sleep(0.1)
        logs = self.docker.logs(tail=40).decode(errors="replace")
        raise TimeoutError(f"{self.replica_id} not ready: {last}\n--- logs ---\n{logs}")

    def logs(self, tail: int = 30) -> str:
        return str(self.docker.logs(tail=tail).decode(errors="replace"))


class ReadyzWaitStrategy(WaitStrategy):
    """testcontainers' HttpWaitStrategy on /readyz, but failing fast (with the logs)
    when the container exits, e.g. on a configuration error, instead of polling on."""

    def __init__(self, timeout: float = 60) -> None:
        super().__init__()
        self._http = (
            HttpWaitStrategy(8000, "/readyz").with_startup_timeout(1).with_poll_interval(0.1)
        )
        self._timeout = timeout

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                out, err = container.get_logs()
                raise RuntimeError(
                    f"wallet-api container {container.status} before ready:\n"
                    f"{(out + err).decode(errors='replace')[-2000:]}"
                )
            try:
                self._http.wait_until_ready(container)
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"/readyz not 200 within {self._timeout}s")


class Stack:
    def __init__(
        self, redis: RedisNode, replicas: list[Replica], network: Network, api_image: str
    ) -> None:
        self.redis = redis
        self.replicas = replicas
        self.network = network
        self.api_image = api_image
        self.api_keys = API_KEYS  # tenant alpha (old, new)
        self.beta_key = BETA_KEY
        self.scope_keys = SCOPE_KEYS
        self.key_ids = {token: key_id for token, (key_id, _, _) in KEYS.items()}

    def urls(self) -> list[str]:
        return [u for u in (r.url for r in self.replicas) if u is not None]

    def ensure_healthy(self) -> None:
        """Undo whatever a (failed) fault test left behind: everything up and ready."""
        self.redis.docker.reload()
        if self.redis.docker.status != "running":
            self.redis.start()
        self.redis.wait_ready()
        for replica in self.replicas:
            if not replica.running():
                replica.start()
            replica.wait_ready()


@pytest.fixture(scope="session")
def docker_client(pytestconfig: pytest.Config) -> Iterator[Any]:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.fail(
            f"no Docker engine reachable ({exc}); on an air-gapped machine run scripts/airgap.sh",
            pytrace=False,
        )
    pytestconfig._containers_docker = client  # type: ignore[attr-defined]
    expected_disabled = os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "").lower() in (
        "yes",
        "true",
        "t",
        "y",
        "1",
    )
    assert testcontainers_config.ryuk_disabled == expected_disabled, (
        "testcontainers did not pick up TESTCONTAINERS_RYUK_DISABLED -- did it change how it reads it?"
    )
    if testcontainers_config.ryuk_disabled:
        # Without Ryuk nobody reaps what a killed (SIGKILL) earlier run left behind:
        # remove this suite's containers/networks whose owning pytest process is gone.
        stale = _remove_labelled(client, {"label": f"{SUITE_LABEL}={SUITE}"}, dead_owners_only=True)
        if stale:
            print(f"\ncontainers: removed leftovers of dead earlier runs: {stale}")
    yield client


@pytest.fixture(scope="session")
def api_image(docker_client: Any) -> str:
    """Build services/wallet-api/Dockerfile (runtime stage); Docker's cache makes reruns fast."""
    if os.environ.get("CONTAINERS_SKIP_BUILD") == "1":
        docker_client.images.get(API_IMAGE)  # must exist
        return API_IMAGE
    started = time.monotonic()
    # clean_up=False: keep the tag so the layer cache survives for the next run.
    image = DockerImage(
        path=SERVICE_DIR,
        tag=API_IMAGE,
        clean_up=False,
        buildargs={"PYTHON_IMAGE": PYTHON_IMAGE},
        target="runtime",
        rm=True,
        forcerm=True,
        labels={SUITE_LABEL: SUITE},
    )
    image.build()
    print(
        f"\ncontainers: built {API_IMAGE} ({image.short_id}) in {time.monotonic() - started:.1f}s"
    )
    return API_IMAGE


def api_container(
    image: str,
    network: Network,
    replica_id: str,
    redis_host: str,
    keys: tuple[str, ...] | None = None,
    extra_env: dict[str, str] | None = None,
) -> DockerContainer:
    container = (
        DockerContainer(image)
        .with_envs(
            REDIS_URL=f"redis://:{REDIS_PASSWORD}@{redis_host}:6379/0",
            WALLET_API_KEYS_FILE=KEYS_FILE_PATH,
            REPLICA_ID=replica_id,
            WEB_CONCURRENCY="2",  # two gunicorn workers: /metrics must aggregate them
            GUNICORN_THREADS="8",
            LOG_LEVEL="WARNING",  # no access log per request: the CPU goes to the API
            REDIS_TIMEOUT_SECONDS="2",
            **(extra_env or {}),
        )
        # Before the start, so it is there when wallet-api reads it (and after restarts).
        .with_copy_into_container(keys_file(keys), KEYS_FILE_PATH)
        .with_network(network)
        .with_network_aliases(replica_id)
        .with_name(f"wallet-it-{SESSION_ID[:8]}-{replica_id}")
        .with_kwargs(labels=dict(LABELS))
        .waiting_for(ReadyzWaitStrategy())
    )
    container.ports = {"8000": PUBLISH}  # type: ignore[dict-item]
    return container


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, docker_client: Any, api_image: str) -> Iterator[Stack]:
    """Network + Redis + REPLICAS wallet-api containers; all removed at the end, whatever happens."""
    started = time.monotonic()
    cleanups = Cleanups()
    # Registered first, so it runs even if anything below fails half-way.
    request.addfinalizer(cleanups)

    network = Network(docker_network_kw={"labels": dict(LABELS)})
    network.create()
    cleanups.append(("network", network.remove))

    redis_container = (
        RedisContainer(REDIS_IMAGE, password=REDIS_PASSWORD)
        .with_command(
            [
                "redis-server",
                "--requirepass",
                REDIS_PASSWORD,
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ]
        )
        .with_network(network)
        .with_network_aliases("redis")
        .with_name(f"wallet-it-{SESSION_ID[:8]}-redis")
        .with_kwargs(labels=dict(LABELS))
        .waiting_for(PingWaitStrategy().with_startup_timeout(30).with_poll_interval(0.2))
    )
    redis_container.ports = {"6379": PUBLISH}  # type: ignore[dict-item]
    cleanups.append(("redis", redis_container.stop))  # stop() = remove(force, volumes)
    redis_container.start()
    redis = RedisNode(redis_container)
    config = redis.client().config_get("append*")
    assert config["appendonly"] == "yes" and config["appendfsync"] == "always", config

    replicas: list[Replica] = []
    for n in range(1, REPLICAS + 1):
        container = api_container(api_image, network, f"api-{n}", "redis")
        cleanups.append((f"api-{n}", container.stop))
        container.start()
        replica = Replica(container, f"api-{n}")
        replica.refresh_url()
        replicas.append(replica)

    print(
        f"\ncontainers: stack up in {time.monotonic() - started:.1f}s: redis + "
        f"{len(replicas)} replicas {[r.url for r in replicas]} on network {network.name}"
    )
    yield Stack(redis, replicas, network, api_image)


class CutProxy:
    """Control of cut_proxy.py (see there) running in its own container."""

    def __init__(self, container: DockerContainer) -> None:
        self.container = container

    def command(self, command: str) -> str:
        host = self.container.get_container_host_ip()
        port = self.container.get_exposed_port(7000)
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(f"{command}\n".encode())
            return conn.recv(64).decode().strip()

    def wait_for(self, mode: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last = self.command("state")
                if last == mode:
                    return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"cut proxy not {mode!r} after {timeout}s (last: {last})")


@pytest.fixture
def cut_replica(stack: Stack, request: pytest.FixtureRequest) -> Iterator[tuple[Replica, CutProxy]]:
    """One more replica whose Redis connection runs through a cut proxy (its own network
    alias redis-cut); both removed after the test."""
    cleanups = Cleanups()
    request.addfinalizer(cleanups)
    proxy_container = (
        DockerContainer(stack.api_image)
        .with_command(["redis", "6379", "6379", "7000"])
        .with_copy_into_container(Path(__file__).parent / "cut_proxy.py", "/tmp/cut_proxy.py")
        .with_network(stack.network)
        .with_network_aliases("redis-cut")
        .with_name(f"wallet-it-{SESSION_ID[:8]}-redis-cut")
        .with_kwargs(labels=dict(LABELS), entrypoint=["python", "/tmp/cut_proxy.py"])
    )
    proxy_container.ports = {"7000": PUBLISH}  # type: ignore[dict-item]
    cleanups.append(("redis-cut", proxy_container.stop))
    proxy_container.start()
    proxy = CutProxy(proxy_container)
    proxy.wait_for("idle")
    container = api_container(stack.api_image, stack.network, "api-cut", "redis-cut")
    cleanups.append(("api-cut", container.stop))
    container.start()
    replica = Replica(container, "api-cut")
    replica.refresh_url()
    yield replica, proxy


@pytest.fixture
def retired_key_replica(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Replica]:
    """One more replica on the same Redis, deployed after a key rotation: its key
    definitions no longer hold the old alpha key (API_KEYS[0]). Removed after the test."""
    container = api_container(
        stack.api_image,
        stack.network,
        "api-rotated",
        "redis",
        keys=tuple(t for t in KEYS if t != API_KEYS[0]),
    )
    request.addfinalizer(container.stop)
    container.start()
    replica = Replica(container, "api-rotated")
    replica.refresh_url()
    yield replica


@pytest.fixture
def healthy_stack(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    stack.ensure_healthy()
    yield stack
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for replica in stack.replicas:
            print(f"\n--- {replica.replica_id} logs (tail) ---\n{replica.logs()}")
        redis_logs = stack.redis.docker.logs(tail=30).decode(errors="replace")
        print(f"\n--- redis logs (tail) ---\n{redis_logs}")
    stack.ensure_healthy()


# -- Redis HA: what docker-compose.ha.yml runs, in testcontainers ------------------------


def _compose_ha_services() -> dict[str, Any]:
    """The Redis nodes, Sentinels and wallet-api settings of docker-compose.ha.yml, as
    `docker compose config` resolves them (so the test runs exactly what `make up-ha`
    runs), with this suite's password and images."""
    import json
    import subprocess

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "REDIS_PASSWORD": REDIS_PASSWORD,
        # the other ACL users' (replication and the Sentinels act as `ops`)
        "REDIS_ADMIN_PASSWORD": f"admin-{uuid.uuid4().hex}",
        "REDIS_EXPORTER_PASSWORD": f"exporter-{uuid.uuid4().hex}",
        "WALLET_API_KEYS": ",".join(API_KEYS),
        "BASIC_AUTH_USER": "admin",  # the edge file's; the overlay adds to its prometheus
        "REDIS_IMAGE": REDIS_IMAGE,
        **{k: v for k, v in os.environ.items() if k.startswith("DOCKER_")},
    }
    proc = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.traefik.yml"),
         "-f", str(ROOT / "docker-compose.yml"),
         "-f", str(ROOT / "docker-compose.ha.yml"), "config", "--format", "json"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"docker compose config (HA overlay) failed: {proc.stderr}", pytrace=False)
    return dict(json.loads(proc.stdout)["services"])


class HaNode:
    """A Redis node or Sentinel of the HA stack, under its compose service name."""

    def __init__(self, name: str, container: DockerContainer, network: Network) -> None:
        self.name = name
        self.container = container
        self.network = network

    @property
    def docker(self) -> Any:
        return self.container.get_wrapped_container()

    def redis_cli(self, *args: str, port: int = 6379) -> str:
        _code, out = self.docker.exec_run(
            ["redis-cli", "--no-auth-warning", "-p", str(port), *args],
            environment={"REDISCLI_AUTH": REDIS_PASSWORD},
        )
        return str(out.decode(errors="replace").strip())

    def kill(self) -> None:
        self.docker.kill(signal="SIGKILL")
        self.docker.wait(timeout=30)

    def start(self) -> None:
        self.docker.start()

    def disconnect(self) -> None:
        """Cut off the network (docker network disconnect)."""
        self.docker.client.networks.get(self.network.name).disconnect(self.docker, force=True)

    def reconnect(self) -> None:
        """Back on the network under its service name (heal)."""
        self.docker.client.networks.get(self.network.name).connect(self.docker, aliases=[self.name])


class HaStack:
    def __init__(
        self, nodes: dict[str, HaNode], sentinels: dict[str, HaNode], replicas: list[Replica],
        master_name: str, env: dict[str, str],
    ) -> None:  # fmt: skip
        self.nodes = nodes
        self.sentinels = sentinels
        self.replicas = replicas
        self.master_name = master_name
        self.api_env = env
        self.api_keys = API_KEYS

    def urls(self) -> list[str]:
        return [u for u in (r.url for r in self.replicas) if u is not None]

    def primary(self) -> str:
        """The node the Sentinels name the primary (majority of those that answer)."""
        answers = []
        for sentinel in self.sentinels.values():
            out = sentinel.redis_cli(
                "sentinel", "get-master-addr-by-name", self.master_name, port=26379
            )
            if out:
                answers.append(out.split()[0])
        assert answers, "no Sentinel answers"
        return max(set(answers), key=answers.count)

    def role(self, name: str) -> str:
        info = self.nodes[name].redis_cli("info", "replication")
        return next(
            (
                line.split(":", 1)[1].strip()
                for line in info.splitlines()
                if line.startswith("role:")
            ),
            "?",
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        """Every node up, one primary with every other node replicating from it (link up),
        every Sentinel watching it with both peers, the API replicas ready."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                primary = self.primary()
                replicas = [n for n in self.nodes if n != primary]
                links = [self.nodes[n].redis_cli("info", "replication") for n in replicas]
                good = self.nodes[primary].redis_cli("info", "replication")
                sentinels_ok = all(
                    "num-other-sentinels\n2"
                    in s.redis_cli("sentinel", "master", self.master_name, port=26379)
                    for s in self.sentinels.values()
                )
                if (all("master_link_status:up" in link for link in links)
                        and f"connected_slaves:{len(replicas)}" in good
                        and f"min_slaves_good_slaves:{len(replicas)}" in good and sentinels_ok):  # fmt: skip
                    break
                last = f"primary {primary}: {good[:300]}"
            except Exception as exc:  # a node still starting
                last = repr(exc)
            time.sleep(0.5)
        else:
            raise TimeoutError(f"HA stack not healthy after {timeout}s: {last}")
        for replica in self.replicas:
            replica.wait_ready()


@pytest.fixture(scope="session")
def ha_stack(
    request: pytest.FixtureRequest, docker_client: Any, api_image: str
) -> Iterator[HaStack]:
    """docker-compose.ha.yml in testcontainers: `redis`, `redis-replica-1/2` and
    `sentinel-1/2/3` with the commands, environment, scripts (bind-mounted
    infra/redis) and memory limit compose gives them, plus 2 wallet-api replicas
    with the overlay's Sentinel settings. All removed at the end."""
    started = time.monotonic()
    cleanups = Cleanups()
    request.addfinalizer(cleanups)
    services = _compose_ha_services()
    network = Network(docker_network_kw={"labels": dict(LABELS)})
    network.create()
    cleanups.append(("network", network.remove))

    def start(name: str) -> HaNode:
        svc = services[name]
        command = [c.replace("$$", "$") for c in svc["command"]]
        env = {k: v for k, v in (svc.get("environment") or {}).items() if v is not None}
        container = (
            DockerContainer(svc["image"])
            .with_command(command)
            .with_envs(**env)
            .with_network(network)
            .with_network_aliases(name)
            .with_name(f"wallet-it-{SESSION_ID[:8]}-ha-{name}")
            .with_kwargs(labels=dict(LABELS))
        )
        for volume in svc.get("volumes") or []:
            if volume.get("type") == "bind":
                container = container.with_volume_mapping(volume["source"], volume["target"], "ro")
        # Compose's hardening too: root without CAP_DAC_OVERRIDE cannot read the files
        # Redis rewrites (mode 600, owned by redis), which the scripts must handle.
        kwargs: dict[str, Any] = {
            "labels": dict(LABELS),
            "cap_drop": svc.get("cap_drop") or [],
            "cap_add": svc.get("cap_add") or [],
            "security_opt": svc.get("security_opt") or [],
            "read_only": bool(svc.get("read_only")),
        }
        for mount in svc.get("tmpfs") or []:
            path, _, options = mount.partition(":")
            container = container.with_tmpfs_mount(path, options or None)
        limit = (((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get(
            "memory"
        )
        if limit:
            kwargs["mem_limit"] = int(limit)
        container = container.with_kwargs(**kwargs)
        cleanups.append((name, container.stop))
        container.start()
        return HaNode(name, container, network)

    node_names = [n for n, v in services.items() if "REDIS_HA_HOST" in (v.get("environment") or {})]
    sentinel_names = [
        n for n, v in services.items() if "SENTINEL_HOST" in (v.get("environment") or {})
    ]
    primary_first = sorted(node_names, key=lambda n: n != "redis")
    nodes = {n: start(n) for n in primary_first}
    time.sleep(1)  # the first primary listens before the Sentinels look for it
    sentinels = {n: start(n) for n in sorted(sentinel_names)}
    api_env = {
        k: v
        for k, v in services["wallet-api"]["environment"].items()
        if k.startswith("REDIS_") and k != "REDIS_URL" and v is not None
    }
    replicas: list[Replica] = []
    for n in (1, 2):
        container = api_container(api_image, network, f"ha-api-{n}", "redis", extra_env=api_env)
        cleanups.append((f"ha-api-{n}", container.stop))
        container.start()
        replica = Replica(container, f"ha-api-{n}")
        replica.refresh_url()
        replicas.append(replica)
    stack = HaStack(nodes, sentinels, replicas, api_env["REDIS_MASTER_NAME"], api_env)
    stack.wait_healthy()
    print(
        f"\ncontainers: HA stack up in {time.monotonic() - started:.1f}s: nodes {list(nodes)}, "
        f"sentinels {list(sentinels)}, API {api_env}"
    )
    yield stack


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from containers_support import REPORTS

    if REPORTS:
        terminalreporter.section("wallet-api containers: load and fault reports")
        for line in REPORTS:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"ryuk: {RYUK_DECISION}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep

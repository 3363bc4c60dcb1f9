"""Shared helpers of the end-to-end stack tests (tests/integration/stack).

Nothing here starts or stops anything by itself: conftest.py does, through the
Makefile (`make up`, `make clean`).

Name resolution: `*.localhost` names are loopback by definition (RFC 6761) and curl
resolves them itself, but glibc does not on every machine (Debian 12: `getent hosts
wallet.localhost` fails). LoopbackAdapter sends requests for those names to
127.0.0.1 while keeping the name for the Host header, TLS SNI and certificate
verification (against the stack's own CA), so the tests work on a fresh machine
without touching /etc/hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parents[3]
PROJECT = "wallet-stack"
# `make up-ha`: the Redis HA overlay on top of the two (conftest.py).
COMPOSE_FILES = ("docker-compose.traefik.yml", "docker-compose.yml", "docker-compose.ha.yml")
EDGE_NETWORK = f"{PROJECT}-edge"  # docker-compose*.yml: ${COMPOSE_PROJECT_NAME}-edge
# infra/prometheus/prometheus.yml: the scrape job of the wallet-api replicas.
PROMETHEUS_JOB = "wallet-api"
LOOPBACK = "127.0.0.1"
HTTP_TIMEOUT = 10  # seconds, every single request

T = TypeVar("T")

# Lines for the terminal summary (conftest.py prints them at the end of the run).
SUMMARY: list[str] = []
TIMINGS: dict[str, float] = {}
# docker compose ps/logs taken before the teardown when something failed.
DIAGNOSTICS: list[str] = []


def note(line: str) -> None:
    SUMMARY.append(line)


# -- configuration ---------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as compose reads them (comments, `export`, one level of quotes)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def subprocess_env() -> dict[str, str]:
    """The environment for docker compose: the air-gapped image overrides (.airgap.env,
    which the Makefile exports too) under the caller's environment."""
    return {**read_env_file(ROOT / ".airgap.env"), **os.environ}


@dataclass(frozen=True)
class Stack:
    """What a test needs to talk to the running stack."""

    user: str
    password: str
    api_key: str
    ca_file: Path
    https_port: int
    http_port: int
    replicas: int

    @classmethod
    def load(cls) -> Stack:
        dotenv = read_env_file(ROOT / ".env")
        # Like compose: a variable set in the shell wins over .env.
        setting = lambda key, default: os.environ.get(key) or dotenv.get(key) or default  # noqa: E731
        missing = [k for k in ("BASIC_AUTH_PASSWORD", "WALLET_API_KEYS") if not dotenv.get(k)]
        if missing:
            raise RuntimeError(f"{ROOT / '.env'} lacks {missing}; run `make secrets`")
        ca_file = ROOT / ".secrets" / "certs" / "ca.crt"
        if not ca_file.is_file():
            raise RuntimeError(f"{ca_file} is missing; run `make secrets`")
        return cls(
            user=dotenv.get("BASIC_AUTH_USER", "admin"),
            password=dotenv["BASIC_AUTH_PASSWORD"],
            api_key=dotenv["WALLET_API_KEYS"].split(",")[0].strip(),
            ca_file=ca_file,
            https_port=int(setting("HTTPS_PORT", "443")),
            http_port=int(setting("HTTP_PORT", "80")),
            replicas=int(setting("WALLET_API_REPLICAS", "2")),
        )

    @property
    def basic_auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def url(self, host: str, path: str = "/", scheme: str = "https") -> str:
        port = self.https_port if scheme == "https" else self.http_port
        default = 443 if scheme == "https" else 80
        netloc = host if port == default else f"{host}:{port}"
        return f"{scheme}://{netloc}{path}"

    def session(self) -> requests.Session:
        """A requests session that verifies TLS against the stack's CA (never verify=False)."""
        s = requests.Session()
        s.verify = str(self.ca_file)
        s.trust_env = False  # no proxies from the environment: the target is loopback
        adapter = LoopbackAdapter()
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        return s


# -- HTTP ------------------------------------------------------------------------


def _is_localhost(host: str | None) -> bool:
    return host is not None and (host == "localhost" or host.endswith(".localhost"))


class LoopbackAdapter(HTTPAdapter):
    """Connects `*.localhost` URLs to 127.0.0.1; Host header, SNI and the certificate
    check still use the name. Responses keep the original URL, so redirects (and
    requests' rule of dropping credentials on a change of host) behave as usual."""

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        if not _is_localhost(parts.hostname):
            return super().send(request, *args, **kwargs)
        routed = request.copy()
        routed.url = urlunsplit(
            parts._replace(netloc=f"{LOOPBACK}:{parts.port}" if parts.port else LOOPBACK)
        )
        routed.headers["Host"] = parts.netloc
        routed._wallet_stack_sni = parts.hostname  # type: ignore[attr-defined]
        response = super().send(routed, *args, **kwargs)
        response.request = request
        response.url = request.url or ""
        return response

    def build_connection_pool_key_attributes(  # type: ignore[override]
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        sni = getattr(request, "_wallet_stack_sni", None)
        if sni and host_params.get("scheme") == "https":
            # SNI and hostname verification against the name, not 127.0.0.1.
            pool_kwargs["server_hostname"] = sni
            pool_kwargs["assert_hostname"] = sni
        return host_params, pool_kwargs


# -- polling ---------------------------------------------------------------------


def poll(
    what: str,
    attempt: Callable[[], T],
    ok: Callable[[T], bool],
    timeout: float = 60,
    interval: float = 1,
) -> T:
    """Call attempt() until ok(result) (exceptions count as not ok); bounded by timeout.
    Raises AssertionError with the last result/exception when time runs out."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = attempt()
            if ok(last):
                return last
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not true after {timeout:.0f}s; last: {_short(last)}")
        time.sleep(interval)


def _short(value: Any, limit: int = 600) -> str:
    if isinstance(value, requests.Response):
        value = f"HTTP {value.status_code} {value.text[:300]!r}"
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "..."


# -- docker ----------------------------------------------------------------------


def compose_cmd(*args: str) -> list[str]:
    cmd = ["docker", "compose"]
    for f in COMPOSE_FILES:
        cmd += ["-f", str(ROOT / f)]
    return [*cmd, *args]


def run(cmd: list[str], timeout: float = 120) -> str:
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def compose_ps() -> list[dict[str, Any]]:
    """`docker compose ps -a --format json`: one JSON object per line (Compose >= 2.21)
    or a single JSON array (older Compose v2)."""
    out = run(compose_cmd("ps", "-a", "--format", "json")).strip()
    if not out:
        return []
    if out.startswith("["):
        return list(json.loads(out))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def compose_config() -> dict[str, Any]:
    return dict(json.loads(run(compose_cmd("config", "--format", "json"))))


def inspect(container_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(container_ids)
    if not ids:
        return []
    return list(json.loads(run(["docker", "inspect", *ids])))


def wallet_api_containers() -> list[dict[str, Any]]:
    """docker inspect of the running wallet-api replicas of this project."""
    ids = run(compose_cmd("ps", "-q", "wallet-api")).split()
    return [c for c in inspect(ids) if c["State"]["Status"] == "running"]


def edge_ip(container: dict[str, Any]) -> str:
    return str(container["NetworkSettings"]["Networks"][EDGE_NETWORK]["IPAddress"])


def prom_vector(stack: Stack, http: requests.Session, query: str) -> list[dict[str, Any]]:
    """Prometheus instant query through Traefik (basic auth): the result vector."""
    r = http.get(
        stack.url("prometheus.localhost", "/api/v1/query"),
        params={"query": query},
        auth=stack.basic_auth,
        timeout=HTTP_TIMEOUT,
    )
    r.raise_for_status()
    body = r.json()
    if body.get("status") != "success":
        raise ValueError(f"{query}: {body}")
    return list(body["data"]["result"])


def compose_exec(service: str, script: str, timeout: float = 60) -> str:
    """`sh -c script` in the service's (first) container."""
    return run(compose_cmd("exec", "-T", service, "sh", "-c", script), timeout=timeout)

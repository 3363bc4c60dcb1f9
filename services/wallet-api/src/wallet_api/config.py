"""Settings from environment variables only (12-factor), validated at start-up.

A bad value stops the process with one line naming the variable, e.g.
``configuration error: MAX_AMOUNT: must be an integer, got 'ten'``.

Each setting is declared once, as a dataclass field carrying its variable, its
parser and its default; one loop reads them all. (pydantic-settings was
considered: its errors are multi-line and would need translating back into
these one-liners, which is most of this module anyway.) Numbers are read as
ASCII digits only: Python's int() and float() also take Arabic-Indic
digits, '1_0' or ' 5'.

The API keys come from one of two variables (keys.py): WALLET_API_KEYS_FILE,
the key definitions, or WALLET_API_KEYS, development tokens. Never both: a
forgotten development token would be an all-scopes key nobody sees defined.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from wallet_api.domain.money import MAX_SAFE_BALANCE
from wallet_api.keys import ApiKey, load_file, parse_tokens

_OWN_CGROUP = Path("/proc/self/cgroup")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class ConfigError(ValueError):
    pass


def _setting(env: str, parse: Callable[[str], Any], **default: Any) -> Any:
    """A field read from `env` with `parse`; without a default it is required
    (an unset variable is parsed as '' so its parser says what is missing)."""
    return field(metadata={"env": env, "parse": parse}, **default)


def _number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], Any]:
    pattern, noun = (_INT, "an integer") if kind is int else (_FLOAT, "a number")

    def parse(raw: str) -> int | float:
        if not pattern.fullmatch(raw):
            raise ValueError(f"must be {noun}, got {raw!r}")
        value = kind(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _redis_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in ("redis", "rediss", "unix") or not (parsed.hostname or parsed.path):
        raise ValueError("must look like redis://[:password@]host:6379/0")
    return raw


def _sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in (i.strip() for i in raw.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not _INT.fullmatch(port) or not 1 <= int(port) <= 65535:
            raise ValueError(f"must be host:port[,host:port...], got {item!r}")
        nodes.append((host, int(port)))
    return tuple(nodes)


def _name(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", raw):
        raise ValueError(f"must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-', got {raw!r}")
    return raw


def _api_keys(env: Mapping[str, str]) -> tuple[ApiKey, ...]:
    path, tokens = env.get("WALLET_API_KEYS_FILE", ""), env.get("WALLET_API_KEYS", "")
    if path and tokens:
        raise ConfigError(
            "WALLET_API_KEYS_FILE and WALLET_API_KEYS are both set: use the key file only"
        )
    if not path and not tokens:
        raise ConfigError(
            "WALLET_API_KEYS_FILE: set it to the key definitions file "
            "(or WALLET_API_KEYS to development tokens)"
        )
    name, read = ("WALLET_API_KEYS_FILE", load_file) if path else ("WALLET_API_KEYS", parse_tokens)
    try:
        return read(path or tokens)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {raw!r}")
        return raw

    return parse


_T = TypeVar("_T")


def _read(cls: type[_T], env: Mapping[str, str], **values: Any) -> _T:
    """An instance of the settings dataclass `cls` from `env` (one loop for all)."""
    for setting in fields(cls):  # type: ignore[arg-type]
        if "env" not in setting.metadata:
            continue
        name, parse = setting.metadata["env"], setting.metadata["parse"]
        raw = env.get(name, "")
        has_default = setting.default is not MISSING or setting.default_factory is not MISSING
        if raw == "" and has_default:
            continue
        try:
            values[setting.name] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return cls(**values)


@dataclass(frozen=True)
class Settings:
    # WALLET_API_KEYS_FILE or WALLET_API_KEYS (from_env(): _api_keys()).
    api_keys: tuple[ApiKey, ...]
    redis_url: str = _setting("REDIS_URL", _redis_url, default="redis://127.0.0.1:6379/0")
    idempotency_ttl: int = _setting(
        "IDEMPOTENCY_TTL_SECONDS", _number(int, 60, 30 * 86_400), default=86_400
    )
    max_amount: int = _setting(
        "MAX_AMOUNT", _number(int, 1, MAX_SAFE_BALANCE), default=10_000_000_000
    )
    watch_max_attempts: int = _setting("WATCH_MAX_ATTEMPTS", _number(int, 1, 100), default=12)
    commit_shards: int = _setting("COMMIT_SHARDS", _number(int, 1, 64), default=1)
    redis_timeout: float = _setting(
        "REDIS_TIMEOUT_SECONDS", _number(float, 0.05, 60.0), default=2.0
    )
    # Sentinel: the primary is asked of these (REDIS_URL then only gives the
    # password, database and TLS); empty = REDIS_URL is the primary.
    redis_sentinels: tuple[tuple[str, int], ...] = _setting(
        "REDIS_SENTINELS", _sentinels, default=()
    )
    redis_master_name: str = _setting("REDIS_MASTER_NAME", _name, default="mymaster")
    # Sentinel's own password; unset = the one in REDIS_URL (compose and the chart
    # protect the Sentinels with the data nodes' password).
    redis_sentinel_password: str | None = _setting("REDIS_SENTINEL_PASSWORD", str, default=None)
    # Replicas that must confirm a commit (WAIT) before money is acknowledged:
    # unset = 1 with Sentinel (a failover promotes a replica), 0 standalone.
    redis_min_replicas_ack: int | None = _setting(
        "REDIS_MIN_REPLICAS_ACK", _number(int, 0, 16), default=None
    )
    redis_wait_timeout_ms: int = _setting(
        "REDIS_WAIT_TIMEOUT_MS", _number(int, 1, 60_000), default=1000
    )
    max_body_bytes: int = _setting("MAX_BODY_BYTES", _number(int, 256, 1_048_576), default=16_384)
    log_level: str = _setting("LOG_LEVEL", _log_level, default="INFO")
    replica_id: str = _setting("REPLICA_ID", str, default_factory=socket.gethostname)
    # Not read from the environment: the test suites turn it on (contract.py).
    validate_responses: bool = False

    @property
    def min_replicas_ack(self) -> int:
        if self.redis_min_replicas_ack is not None:
            return self.redis_min_replicas_ack
        return 1 if self.redis_sentinels else 0

    def _check(self) -> None:
        """Rules between settings (each setting alone is checked by its parser)."""
        if self.min_replicas_ack and self.redis_wait_timeout_ms >= self.redis_timeout * 1000:
            # WAIT blocks the connection: a socket timeout first would turn every
            # slow acknowledgement into a lost reply.
            raise ConfigError(
                f"REDIS_WAIT_TIMEOUT_MS: must be below REDIS_TIMEOUT_SECONDS "
                f"({self.redis_timeout * 1000:g} ms), got {self.redis_wait_timeout_ms}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = _read(cls, env, api_keys=_api_keys(env))
        settings._check()
        return settings


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn's settings (gunicorn.conf.py), read and checked like Settings, so a
    bad value stops the master with one line instead of a traceback."""

    # Unset: one worker per CPU of the container's quota (default_workers()).
    workers: int | None = _setting("WEB_CONCURRENCY", _number(int, 1, 256), default=None)
    worker_class: str = _setting(
        "GUNICORN_WORKER_CLASS", _choice("gevent", "gthread", "sync"), default="gevent"
    )
    threads: int = _setting("GUNICORN_THREADS", _number(int, 1, 1024), default=16)
    worker_connections: int = _setting(
        "GUNICORN_WORKER_CONNECTIONS", _number(int, 1, 100_000), default=1000
    )
    keepalive: int = _setting("GUNICORN_KEEPALIVE", _number(int, 0, 3600), default=5)
    timeout: int = _setting("GUNICORN_TIMEOUT", _number(int, 0, 86_400), default=30)
    graceful_timeout: int = _setting(
        "GUNICORN_GRACEFUL_TIMEOUT", _number(int, 0, 86_400), default=20
    )
    max_requests: int = _setting("GUNICORN_MAX_REQUESTS", _number(int, 0, 10**9), default=0)
    max_requests_jitter: int = _setting(
        "GUNICORN_MAX_REQUESTS_JITTER", _number(int, 0, 10**9), default=0
    )

    @property
    def worker_count(self) -> int:
        return self.workers or default_workers()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        return _read(cls, os.environ if env is None else env)


# Without a CPU quota the host's core count is no guide: a pod without limits.cpu on a
# 64-core node would start 64 workers inside its memory limit. The old fixed default.
WORKERS_WITHOUT_QUOTA = 2


def default_workers(cgroup: Path = Path("/sys/fs/cgroup"), own: Path = _OWN_CGROUP) -> int:
    """gunicorn's worker count when WEB_CONCURRENCY is unset: one per CPU of the
    container's CPU quota (compose `cpus`, a pod's `limits.cpu`), rounded down, at
    least 1 and at most its CPU affinity; without a quota, WORKERS_WITHOUT_QUOTA.

    Why the quota sizes the workers: a gevent worker uses at most one core, and
    workers beyond the cores only take turns on them. A worker that waits for a core
    between WATCH and EXEC keeps its window open for another process to commit into,
    so oversubscribed workers turn hot-wallet batches into retries (README,
    "Performance"). Go's automaxprocs sizes GOMAXPROCS by the same rule.
    """
    quota = _cgroup_cpu_quota(cgroup, own)
    cpus = _usable_cpus(quota)
    return cpus if quota is not None else min(cpus, WORKERS_WITHOUT_QUOTA)


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup"), own: Path = _OWN_CGROUP) -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup CPU quota."""
    return _usable_cpus(_cgroup_cpu_quota(cgroup, own))


def _usable_cpus(quota: float | None) -> int:
    """The CPU affinity (macOS: the core count), capped by `quota` rounded down; >= 1."""
    linux = hasattr(os, "sched_getaffinity")
    cpus = len(os.sched_getaffinity(0)) if linux else os.cpu_count() or 1
    return max(1, cpus if quota is None else min(cpus, int(quota)))


def _cgroup_cpu_quota(root: Path, own: Path) -> float | None:
    """The smallest CPU quota, in CPUs, from this process's cgroup up to the root:
    a pod's limit can sit on a parent of the container's cgroup, and without a
    private cgroup namespace the container's cgroup is a path below the mount.
    cgroup v2 `cpu.max` ("max 100000" = none), v1 cfs_quota_us / cfs_period_us
    (-1 = none, mounted as cpu or cpu,cpuacct). None when no level has a quota."""
    v2_path = v1_path = "/"
    try:
        for line in own.read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and not controllers:
                v2_path = path
            elif "cpu" in controllers.split(","):
                v1_path = path
    except (OSError, ValueError):
        pass
    quotas = [q for d in _levels(root, v2_path) if (q := _v2_quota(d)) is not None]
    for mount in (root / "cpu", root / "cpu,cpuacct"):
        quotas += [q for d in _levels(mount, v1_path) if (q := _v1_quota(d)) is not None]
    return min(quotas, default=None)


def _levels(mount: Path, path: str) -> list[Path]:
    """mount/path, then each of its parents up to the mount itself."""
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()
        return int(quota) / int(period) if quota != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def _v1_quota(directory: Path) -> float | None:
    try:
        quota_us = int((directory / "cpu.cfs_quota_us").read_text())
        period_us = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None

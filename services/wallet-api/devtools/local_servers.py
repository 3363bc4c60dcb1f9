"""Start a throwaway redis-server and gunicorn on 127.0.0.1 (tests, `make bench`).

Each server is a child process we started and stop by PID; nothing else is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check, what: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    data_dir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found: install it (Debian: apt-get install redis-server)"
        )
    return binary


def _answers_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


@contextmanager
def _serving(what: str, args: list[str], port: int, data_dir: str) -> Iterator[RedisServer]:
    """Start redis-server with `args`, wait until it answers PING on `port`; on exit
    stop it and remove `data_dir`."""
    proc = subprocess.Popen([_redis_binary(), *args], stdout=subprocess.DEVNULL)  # noqa: S603
    try:
        _wait(lambda: _answers_ping(port), what, 10, proc)
        yield RedisServer(port, proc, data_dir)
    finally:
        _stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def redis_server(appendfsync: str = "always", *extra: str) -> Iterator[RedisServer]:
    """redis-server on 127.0.0.1 with AOF; `extra` are more `--name value` flags
    (e.g. "--maxmemory", "2mb", or "--replicaof", "127.0.0.1", "6380")."""
    data_dir = tempfile.mkdtemp(prefix="wallet-redis-")
    port = free_port()
    args = [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        data_dir,
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--zset-max-listpack-value",  # as compose and the chart run it
        "128",
        "--save",
        "",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        *extra,
    ]
    with _serving("redis-server", args, port, data_dir) as server:
        yield server


@contextmanager
def sentinel_server(
    master_name: str, primary_port: int, *, quorum: int = 2, down_after_ms: int = 1000
) -> Iterator[RedisServer]:
    """A Redis Sentinel (redis-server --sentinel) monitoring 127.0.0.1:primary_port.

    Sentinel rewrites its config file, so it gets its own in a temp directory."""
    data_dir = tempfile.mkdtemp(prefix="wallet-sentinel-")
    port = free_port()
    conf = Path(data_dir) / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {data_dir}\n"
        f"sentinel monitor {master_name} 127.0.0.1 {primary_port} {quorum}\n"
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
        f"sentinel failover-timeout {master_name} 10000\n"
        f"sentinel parallel-syncs {master_name} 1\n"
    )
    args = [str(conf), "--sentinel", "--loglevel", "warning"]
    with _serving("redis-sentinel", args, port, data_dir) as server:
        yield server


@dataclass
class ApiServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def api_server(
    redis_url: str,
    api_key: str,
    *,
    workers: int = 2,
    threads: int = 16,
    worker_class: str = "gevent",
    replica_id: str = "local",
    extra_env: dict[str, str] | None = None,
    log_path: str | None = None,
    app: str | None = None,
    gunicorn_args: tuple[str, ...] = (),
) -> Iterator[ApiServer]:
    """gunicorn with the service's gunicorn.conf.py on a free port of 127.0.0.1.

    app: another WSGI app ("module:attr") under exactly the same gunicorn settings
    (make bench's bare Flask baseline); gunicorn_args: more command-line flags, which
    win over gunicorn.conf.py."""
    port = free_port()
    multiproc = tempfile.mkdtemp(prefix="wallet-prom-")
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "WALLET_API_KEYS": api_key,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "GUNICORN_WORKER_CLASS": worker_class,
        "PROMETHEUS_MULTIPROC_DIR": multiproc,
        "REPLICA_ID": replica_id,
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(SERVICE_DIR / "gunicorn.conf.py"),
            *gunicorn_args,
            *([app] if app else []),
        ],
        cwd=SERVICE_DIR,
        env=env,
        stdout=log,
        stderr=log,
    )
    server = ApiServer(port, proc)
    try:

        def ready() -> bool:
            with urllib.request.urlopen(f"{server.url}/readyz", timeout=1) as r:  # noqa: S310
                return bool(r.status == 200)

        _wait(ready, "gunicorn", 30, proc)
        yield server
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(multiproc, ignore_errors=True)

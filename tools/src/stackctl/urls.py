"""`stackctl urls`: where the running stack is, and a smoke test that works as printed.

`make up` ends with this. The published HTTPS port is resolved as compose resolves it
(the environment, then `.env`, then 443), so the printed URLs carry `:8443` when the
stack was started with HTTPS_PORT=8443. The last line is a command to copy: curl
resolves `*.localhost` to the loopback address by itself and verifies the certificate
against the stack's CA, so it needs neither `-k` nor an /etc/hosts entry.

`--wait` first waits until Traefik routes the host: containers report healthy a moment
before Traefik's docker provider has picked them up (404 until then), and a smoke test
printed by `make up` must work when it is copied at once.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from stackctl import envfile

CA_FILE = ".secrets/certs/ca.crt"


def https_port(root: Path, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    raw = env.get("HTTPS_PORT") or envfile.read(root / ".env").get("HTTPS_PORT") or "443"
    try:
        port = int(raw)
    except ValueError:
        raise envfile.SettingError(f"HTTPS_PORT must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise envfile.SettingError(f"HTTPS_PORT must be a port number, got {raw!r}")
    return port


def url(host: str, path: str, port: int) -> str:
    return f"https://{host}{'' if port == 443 else f':{port}'}{path}"


def smoke_command(port: int) -> str:
    return f"curl --cacert {CA_FILE} {url('wallet.localhost', '/status', port)}"


def lines(root: Path, *, wallet: bool, environ: Mapping[str, str] | None = None) -> list[str]:
    """What `make up` (wallet=True) or `make up_traefik` prints at the end."""
    port = https_port(root, environ)
    user = envfile.read(root / ".env").get("BASIC_AUTH_USER", "admin")
    out = ["wallet-stack is up:"]
    if wallet:
        out.append(
            f"  {url('wallet.localhost', '/', port):40} wallet API "
            "(Bearer key: grep WALLET_API_KEYS .env; docs at /docs)"
        )
    out += [
        f"  {url('traefik.localhost', '/dashboard/', port):40} Traefik dashboard",
        f"  {url('prometheus.localhost', '/', port):40} Prometheus (Status > Targets)",
        f"  {url('alertmanager.localhost', '/', port):40} Alertmanager (alerts also in: make logs)",
        f"  {url('whoami.localhost', '/', port):40} whoami",
        f"  basic auth: user {user}, password: grep BASIC_AUTH_PASSWORD .env",
        f"  certificates: trust {CA_FILE}, or pass curl --cacert {CA_FILE}",
        "  clients other than curl and browsers: see README 'Reaching *.localhost'",
    ]
    if wallet:
        out += ["smoke test (copy it):", f"  {smoke_command(port)}"]
    return out


def bind_address(root: Path, environ: Mapping[str, str] | None = None) -> str:
    """Where the ports are published; the loopback address for the wildcard default."""
    env = os.environ if environ is None else environ
    address = env.get("BIND_ADDRESS") or envfile.read(root / ".env").get("BIND_ADDRESS")
    return "127.0.0.1" if address in (None, "", "0.0.0.0", "127.0.0.1") else address  # noqa: S104


def probe(address: str, port: int, host: str, path: str, ca_file: Path) -> int:
    """HTTP status of GET https://host:port/path, connecting to `address` (glibc may not
    resolve *.localhost) with SNI and certificate verification against the stack's CA."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((address, port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status_line = conn.recv(64).split(b"\r\n", 1)[0]
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {status_line!r}")
    return int(parts[1])


def wait_routed(
    root: Path,
    *,
    wallet: bool,
    timeout: float,
    environ: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Until Traefik routes the stack: the wallet's /status answers 200 (or, edge only,
    whoami answers 401, asking for the password). Raises SettingError when time is up."""
    port = https_port(root, environ)
    address = bind_address(root, environ)
    host, path, want = (
        ("wallet.localhost", "/status", 200) if wallet else ("whoami.localhost", "/", 401)
    )
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            status = probe(address, port, host, path, root / CA_FILE)
            if status == want:
                return
            last = f"HTTP {status}"
        except (OSError, ssl.SSLError) as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            where = url(host, path, port)
            raise envfile.SettingError(
                f"{where} did not answer {want} within {timeout:.0f}s (last: {last})"
            )
        sleep(0.5)

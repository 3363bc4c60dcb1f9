"""`stackctl urls`: where the running stack is, and a smoke test that works as printed.

`make up` ends with this. The published HTTPS port is resolved as compose resolves it
(the environment, then `.env`, then 443), so the printed URLs carry `:8443` when the
stack was started with HTTPS_PORT=8443. The last line is a command to copy: curl
resolves `*.localhost` to the loopback address by itself and verifies the certificate
against the stack's CA, so it needs neither `-k` nor an /etc/hosts entry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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
        f"  {url('whoami.localhost', '/', port):40} whoami",
        f"  basic auth: user {user}, password: grep BASIC_AUTH_PASSWORD .env",
        f"  certificates: trust {CA_FILE}, or pass curl --cacert {CA_FILE}",
        "  clients other than curl and browsers: see README 'Reaching *.localhost'",
    ]
    if wallet:
        out += ["smoke test (copy it):", f"  {smoke_command(port)}"]
    return out

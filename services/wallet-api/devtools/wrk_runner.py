"""Run wrk with bench.lua and read its BENCH_RESULT line (standard library only,
shared by `make bench` and `make bench-stack`)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

LUA = Path(__file__).with_name("bench.lua")


def run_wrk(
    url: str,
    env: dict[str, str],
    *,
    duration: int,
    connections: int,
    threads: int = 2,
    host: str | None = None,
    resolve: tuple[str, str] | None = None,
) -> dict[str, int]:
    """One bounded wrk run; returns bench.lua's counters (requests, ok, p50_us, ...).

    resolve=(name, address): run wrk where `name` resolves to `address`. wrk takes the
    TLS SNI from the URL's host, Traefik refuses connections without a known SNI
    (sniStrict), and glibc does not resolve *.localhost; so wrk runs in a private mount
    namespace whose /etc/hosts names the address (root only; the machine's file is not
    touched)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    cmd += ["-s", str(LUA)]
    if host:
        cmd += ["-H", f"Host: {host}"]
    cmd.append(url)
    if resolve is not None:
        name, address = resolve
        if os.geteuid() != 0:
            raise RuntimeError(
                f"wrk needs {name} to resolve: run as root, or add '{address} {name}' to /etc/hosts"
            )
        script = (
            'hosts=$(mktemp) && printf "%s %s\\n" "$0" "$1" >"$hosts" && '
            'mount --bind "$hosts" /etc/hosts && shift && exec "$@"'
        )
        cmd = ["unshare", "--mount", "--", "sh", "-c", script, address, name, *cmd]
    out = subprocess.run(  # noqa: S603
        cmd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    match = re.search(r"BENCH_RESULT (.*)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}

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
) -> dict[str, int]:
    """One bounded wrk run; returns bench.lua's counters (requests, ok, p50_us, ...)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    cmd += ["-s", str(LUA)]
    if host:
        cmd += ["-H", f"Host: {host}"]
    out = subprocess.run(  # noqa: S603
        [*cmd, url],
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

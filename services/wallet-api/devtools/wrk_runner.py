"""Run wrk with bench.lua and read its BENCH_RESULT line (standard library only,
shared by `make bench` and `make bench-stack`)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

LUA = Path(__file__).with_name("bench.lua")


def _command(
    url: str,
    *,
    duration: int,
    connections: int,
    threads: int,
    host: str | None,
    resolve: tuple[str, str] | None,
) -> list[str]:
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
    return cmd


def _result(out: str) -> dict[str, int]:
    match = re.search(r"BENCH_RESULT (.*)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    return {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}


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
    cmd = _command(
        url,
        duration=duration,
        connections=connections,
        threads=threads,
        host=host,
        resolve=resolve,
    )
    out = subprocess.run(  # noqa: S603
        cmd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    return _result(out)


def merge_results(results: list[dict[str, int]]) -> dict[str, int]:
    """Counters of wrk runs that ran side by side, as one run.

    Counts add up; the duration is the longest (they started together). wrk keeps
    no histogram we could merge, so p50/p99 are the worst of the runs: an upper bound."""
    merged = {k: sum(r[k] for r in results) for k in results[0]}
    for key in ("duration_us", "p50_us", "p99_us"):
        merged[key] = max(r[key] for r in results)
    return merged


def run_wrk_spread(
    urls: list[str],
    env: dict[str, str],
    *,
    duration: int,
    connections: int,
    threads: int = 2,
) -> dict[str, int]:
    """The load of one `run_wrk(connections, threads)` spread evenly over `urls`: one wrk
    per URL, started together, with connections/len(urls) connections and
    threads/len(urls) threads each (at least one). What a load balancer would do with
    the same clients, without the load balancer: the baseline a proxy is compared to."""
    n = len(urls)
    if connections < n:
        raise ValueError(f"{connections} connections cannot spread over {n} targets")
    procs = []
    for i, url in enumerate(urls):
        share = connections // n + (1 if i < connections % n else 0)
        cmd = _command(
            url,
            duration=duration,
            connections=share,
            threads=max(1, min(share, threads // n)),
            host=None,
            resolve=None,
        )
        # Every wrk numbers its threads from 1: BENCH_RUN keeps bench.lua's
        # Idempotency-Keys of the runs apart (a replayed key would be a cheap answer).
        run = f"{env.get('BENCH_RUN', 'r')}{i}"
        procs.append(
            subprocess.Popen(  # noqa: S603
                cmd,
                env={**os.environ, **env, "BENCH_RUN": run},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=duration + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"wrk exited {proc.returncode}: {err[-500:]}")
            outs.append(_result(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return merge_results(outs)

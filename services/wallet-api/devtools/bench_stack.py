"""`make bench-stack`: the same wrk load through Traefik (HTTPS) and straight to the
wallet-api replicas of the compose stack, in one run, printing the ratio.

    python3 services/wallet-api/devtools/bench_stack.py [--duration 5] [--connections 64]

Runs `make up` first with the edge's per-client limits raised (EDGE_LIMITS: one wrk
client would otherwise meet the rate limit, and this measures the proxy, not the
limiter; they protect workers, not money), and `make up` again at the end, which puts
the default limits back. --down-after instead takes the stack down, volumes included,
when this run started it.

Scenarios are those of `make bench` (devtools/bench.lua: BENCH_MODE healthz | get |
deposit), each run twice, back to back:
  traefik  https://wallet.localhost  -> Traefik -> any of the replicas (round robin),
           to Traefik's own address on wallet-stack-edge, like `direct` below: neither
           path then crosses Docker's port publishing (docker-proxy, the userland proxy
           of published ports, costs about as much CPU per request as a third of
           Traefik). --published sends it to 127.0.0.1:HTTPS_PORT instead, the way a
           browser on this machine comes in, docker-proxy included.
           wrk runs in a private mount namespace whose /etc/hosts maps the name to
           that address (glibc does not resolve *.localhost, and Traefik's sniStrict
           refuses connections without the name as SNI). wrk does not verify certificates;
           fine for a load tool: the certificate chain is checked once, below,
           before the load, and by the e2e tests (tests/integration/stack).
  direct   http://<replica IP on wallet-stack-edge>:8000 for every replica, the
           addresses Traefik itself proxies to (Linux: the host reaches bridge IPs):
           one wrk per replica, started together, the connections and threads shared
           out evenly. So both paths drive the same replicas with the same clients, and
           the ratio is what the proxy costs (not what a second replica adds).

With pidstat (Debian: sysstat) every run also reports the CPU of each kind of process
(traefik, wallet-api workers, redis, dockerd, docker-proxy, wrk, ...), in % of one core
and CPU microseconds per request: the ratio says how much, this says where.

The output ends with one verdict line per scenario: Traefik / direct against the
target of issue 13 (>= 0.8), met or NOT met. A missed target does not fail the run.
Wallets are seeded like `make bench` does (WalletStore.create_wallet, run inside a
wallet-api container so it reaches the internal Redis); each path gets its own wallet
set (edge<run>-<n>, direct<run>-<n>, new every run) so the deposits' Idempotency-Keys
(bench.lua: prefix, thread, counter) never replay another run's or path's requests.

Standard library only: it drives docker, make and wrk.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script (python3 .../bench_stack.py): make the devtools package importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devtools.profiling import CpuReport, ProcessCpu, cpu_during, format_cpu
from devtools.wrk_runner import run_wrk, run_wrk_spread

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = [
    "docker",
    "compose",
    "-f",
    str(ROOT / "docker-compose.traefik.yml"),
    "-f",
    str(ROOT / "docker-compose.yml"),
]
EDGE_NETWORK = "wallet-stack-edge"
HOST = "wallet.localhost"
LOOPBACK = "127.0.0.1"
EDGE_LIMITS = {
    "WALLET_RATE_LIMIT_AVERAGE": "1000000",
    "WALLET_RATE_LIMIT_BURST": "1000000",
    "WALLET_MAX_IN_FLIGHT": "100000",
}

# Runs inside a wallet-api container (stdin of `python -`): creates the missing
# wallets <prefix>-0 .. <prefix>-(count-1) with the service's own store code.
SEED_SCRIPT = """
import os, sys
from concurrent.futures import ThreadPoolExecutor
import redis
from wallet_api.domain.operations import DEFAULT_TENANT, WalletRef
from wallet_api.store import WalletStore, wallet_key
prefixes, count = sys.argv[1].split(","), int(sys.argv[2])
client = redis.Redis.from_url(os.environ["REDIS_URL"])
store = WalletStore(client)
# The tenant of the stack's development key (WALLET_API_KEYS in .env).
ids = [WalletRef(DEFAULT_TENANT, f"{p}-{n}") for p in prefixes for n in range(count)]
pipe = client.pipeline(transaction=False)
for wallet_id in ids:
    pipe.exists(wallet_key(wallet_id))
missing = [w for w, exists in zip(ids, pipe.execute()) if not exists]
with ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda w: store.create_wallet(w, "EUR"), missing))
print(f"created {len(missing)} wallets, {len(ids) - len(missing)} already there")
"""

SCENARIOS = {
    "healthz": "GET /healthz",
    "get": "GET /wallets/{id}",
    "deposit": "POST deposit (spread)",
}
# Issue 13: the Traefik hop costs at most a fifth of the direct throughput.
TARGET_TRAEFIK_VS_DIRECT = 0.8


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    refused: int
    failed: int
    socket_errors: int
    cpu: str | None = None


def classify(proc: ProcessCpu) -> str:
    """pidstat's processes, by what they are in the stack (the host sees the containers'
    processes too)."""
    argv = proc.command.split()
    name = argv[0].rsplit("/", 1)[-1] if argv else ""
    if "gunicorn" in proc.command:
        return "wallet-api"
    if "wrk" in argv:  # through Traefik wrk runs under `unshare ... sh -c ... wrk` (wrk_runner)
        return "wrk"
    known = {
        "traefik": "traefik",
        "dockerd": "dockerd",
        "docker-proxy": "docker-proxy",
        "containerd": "containerd",
        "redis-server": "redis",
        "wrk": "wrk",
        "prometheus": "prometheus",
    }
    if name in known:
        return known[name]
    if name.startswith("containerd-shim"):
        return "containerd"
    return "other"


def _env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                values[key.strip().removeprefix("export ").strip()] = value
    return values


def _run(cmd: list[str], timeout: float, stdin: str | None = None) -> str:
    env = {**_env_file(ROOT / ".airgap.env"), **os.environ}
    proc = subprocess.run(  # noqa: S603
        cmd,
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n{proc.stderr[-1500:]}"
        )
    return proc.stdout


def _ps() -> list[dict[str, str]]:
    out = _run([*COMPOSE, "ps", "--format", "json"], 60).strip()
    if not out:
        return []
    return json.loads(out) if out.startswith("[") else [json.loads(x) for x in out.splitlines()]


def _stack_up() -> bool:
    if not (ROOT / ".env").is_file():
        return False  # compose cannot even read the stack without it; `make up` writes it
    ps = _ps()
    ready = lambda c: c["State"] == "running" and c.get("Health", "") in ("healthy", "")  # noqa: E731
    services = {c["Service"] for c in ps if ready(c)}
    return {"traefik", "wallet-api", "redis"} <= services and all(
        ready(c) for c in ps if c["Service"] == "wallet-api"
    )


def _make(target: str, timeout: float, env: dict[str, str] | None = None) -> None:
    print(f"bench-stack: make {target} {' '.join(f'{k}={v}' for k, v in (env or {}).items())}")
    cmd = ["make", "-C", str(ROOT), "--no-print-directory", target]
    subprocess.run(cmd, check=True, timeout=timeout, env={**os.environ, **(env or {})})  # noqa: S603


class _NamedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 but uses `name` for SNI and the certificate check."""

    def __init__(self, name: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(LOOPBACK, port, context=context, timeout=10)
        self._name = name
        self._ctx = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._name)


def _traefik_status(https_port: int, ca_file: Path) -> int:
    conn = _NamedHTTPSConnection(HOST, https_port, ssl.create_default_context(cafile=str(ca_file)))
    try:
        conn.request(
            "GET",
            "/status",
            headers={"Host": HOST if https_port == 443 else f"{HOST}:{https_port}"},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(1)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f}s ({last})")


def _wrk(
    urls: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    duration: int,
    address: str | None = None,
) -> Result:
    """One run: wrk on one URL (Traefik, its host name resolving to `address`), or the
    same load spread over several."""
    cpu: CpuReport
    with cpu_during(duration) as cpu:
        if len(urls) == 1:
            raw = run_wrk(
                urls[0],
                env,
                duration=duration,
                connections=args.connections,
                threads=args.threads,
                resolve=(HOST, address) if address else None,
            )
        else:
            raw = run_wrk_spread(
                urls, env, duration=duration, connections=args.connections, threads=args.threads
            )
    seconds = raw["duration_us"] / 1e6
    result = Result(
        raw["requests"] / seconds,
        raw["p50_us"] / 1000,
        raw["p99_us"] / 1000,
        raw["ok"],
        raw["refused"],
        raw["failed"],
        raw["socket_errors"],
    )
    result.cpu = format_cpu(cpu, classify, result.rps)
    return result


def bench(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print(
            "bench-stack: wrk not found; install it (Debian: apt-get install wrk)", file=sys.stderr
        )
        return 2
    started_here = not _stack_up()
    if started_here and args.no_up:
        print("bench-stack: the stack is not up (make up)", file=sys.stderr)
        return 2
    _make("up", 900, EDGE_LIMITS)
    try:
        return _bench(args)
    finally:
        if started_here and args.down_after:
            _make("clean", 300)
        else:
            _make("up", 900)  # the default edge limits again


def _bench(args: argparse.Namespace) -> int:
    dotenv = _env_file(ROOT / ".env")
    api_key = dotenv["WALLET_API_KEYS"].split(",")[0].strip()
    https_port = int(os.environ.get("HTTPS_PORT") or dotenv.get("HTTPS_PORT") or 443)
    ca_file = ROOT / ".secrets" / "certs" / "ca.crt"

    # Traefik's route exists a moment after the containers are healthy; checked with
    # certificate verification against the stack's CA (wrk itself does not verify).
    _wait(
        f"https://{HOST}/status through Traefik",
        lambda: _traefik_status(https_port, ca_file) == 200,
    )

    ids = _run([*COMPOSE, "ps", "-q", "wallet-api"], 60).split()
    replicas = [
        c for c in json.loads(_run(["docker", "inspect", *ids], 60)) if c["State"]["Running"]
    ]
    direct_urls = [
        f"http://{c['NetworkSettings']['Networks'][EDGE_NETWORK]['IPAddress']}:8000"
        for c in replicas
    ]
    for direct_url in direct_urls:
        try:
            urllib.request.urlopen(f"{direct_url}/healthz", timeout=5).read()  # noqa: S310
        except OSError as exc:
            print(
                f"bench-stack: cannot reach the replica at {direct_url} from this host ({exc}); "
                "container IPs are reachable from a Linux host, not from Docker Desktop's VM",
                file=sys.stderr,
            )
            return 2

    if args.published:
        edge_address, edge_port = LOOPBACK, https_port
    else:
        traefik_ids = _run([*COMPOSE, "ps", "-q", "traefik"], 60).split()
        traefik = json.loads(_run(["docker", "inspect", *traefik_ids], 60))[0]
        edge_address = traefik["NetworkSettings"]["Networks"][EDGE_NETWORK]["IPAddress"]
        edge_port = 443  # inside the container, whatever HTTPS_PORT publishes
    host_header = HOST if edge_port == 443 else f"{HOST}:{edge_port}"
    # Fresh wallets per run: bench.lua's Idempotency-Keys repeat from run to run.
    run_id = format(int(time.time()), "x")
    paths = {
        # name: (urls, wallet prefix)
        "traefik": ([f"https://{host_header}"], f"edge{run_id}", edge_address),
        "direct": (direct_urls, f"direct{run_id}", None),
    }
    prefixes = ",".join(prefix for _, prefix, _ in paths.values())
    t0 = time.monotonic()
    seeded = _run(
        [*COMPOSE, "exec", "-T", "wallet-api", "python", "-", prefixes, str(args.spread)],
        600,
        stdin=SEED_SCRIPT,
    ).strip()
    took = time.monotonic() - t0
    print(f"bench-stack: seeding {args.spread:,} wallets per path: {seeded} ({took:.1f}s)")

    if args.warmup:
        for urls, _, address in paths.values():
            _wrk(urls, {"BENCH_MODE": "healthz"}, args, args.warmup, address)

    rows: list[tuple[str, str, Result]] = []
    for scenario in args.scenarios:
        for name, (urls, prefix, address) in paths.items():
            env = {
                "BENCH_MODE": scenario,
                "BENCH_KEY": api_key,
                "BENCH_PREFIX": prefix,
                "BENCH_WALLETS": str(args.spread),
            }
            rows.append((scenario, name, _wrk(urls, env, args, args.duration, address)))

    _report(
        args,
        rows,
        paths=list(paths),
        replicas=replicas,
        direct_urls=direct_urls,
        edge=f"{edge_address}:{edge_port}",
    )
    bad = sum(r.refused + r.failed for _, _, r in rows)
    if bad:
        print(f"bench-stack: {bad} non-2xx responses (see the table)", file=sys.stderr)
    return 1 if bad else 0


def _report(
    args: argparse.Namespace,
    rows: list[tuple[str, str, Result]],
    *,
    paths: list[str],
    replicas: list[dict[str, object]],
    direct_urls: list[str],
    edge: str,
) -> None:
    wrk = f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s"
    print(
        f"\nwallet-stack bench: {wrk} per run, {args.spread:,} wallets per path, "
        f"{os.cpu_count()} CPUs shared by wrk and the whole stack\n"
        f"  traefik: https://{HOST} ({edge}) -> Traefik (TLS) "
        f"-> {len(replicas)} replicas\n"
        f"  direct:  {', '.join(direct_urls)} -> the same {len(replicas)} replicas, one wrk "
        "each (connections and threads shared out), no proxy, no TLS\n"
    )
    cols = ("req/s", 9), ("p50 ms", 8), ("p99 ms", 8), ("non-2xx", 8), ("5xx", 5), ("sock.err", 8)
    print(f"{'scenario':24} {'path':8} " + " ".join(f"{name:>{width}}" for name, width in cols))
    by = {(s, n): r for s, n, r in rows}
    for scenario in args.scenarios:
        for name in paths:
            r = by[(scenario, name)]
            label = SCENARIOS[scenario] if name == paths[0] else ""
            print(
                f"{label:24} {name:8} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
                f"{r.refused + r.failed:8d} {r.failed:5d} {r.socket_errors:8d}"
            )
        t, d = by[(scenario, "traefik")], by[(scenario, "direct")]
        ratios = f"{t.rps / d.rps:9.2f} {t.p50_ms / d.p50_ms:8.2f} {t.p99_ms / d.p99_ms:8.2f}"
        print(f"{'':24} {'ratio':8} {ratios}   (traefik / direct)")
    print("\nCPU per run (pidstat; us/req = CPU time per request of that group):")
    for scenario in args.scenarios:
        for name in paths:
            print(f"  {SCENARIOS[scenario]}, {name}: {by[(scenario, name)].cpu}")
    summary = ", ".join(
        f"{s} {by[(s, 'traefik')].rps / by[(s, 'direct')].rps:.2f}" for s in args.scenarios
    )
    print(f"\nratio traefik/direct (req/s): {summary}\n")
    for scenario in args.scenarios:
        ratio = by[(scenario, "traefik")].rps / by[(scenario, "direct")].rps
        met = "met" if ratio >= TARGET_TRAEFIK_VS_DIRECT else "NOT met"
        print(
            f"verdict: traefik / direct, {SCENARIOS[scenario]} = {ratio:.2f} "
            f"(target >= {TARGET_TRAEFIK_VS_DIRECT:.2f}): {met}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--spread", type=int, default=10_000, help="wallets per path (default 10000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of /healthz per path first (0: none)"
    )
    parser.add_argument(
        "--scenarios",
        type=lambda s: s.split(","),
        default=list(SCENARIOS),
        help="comma-separated, of " + ",".join(SCENARIOS),
    )
    parser.add_argument("--no-up", action="store_true", help="fail instead of running `make up`")
    parser.add_argument(
        "--published",
        action="store_true",
        help="through 127.0.0.1:HTTPS_PORT (docker-proxy included), not Traefik's own address",
    )
    parser.add_argument(
        "--down-after",
        action="store_true",
        help="`make clean` at the end if this run started the stack",
    )
    args = parser.parse_args()
    if not 1 <= args.duration <= 60:
        parser.error("--duration must be 1-60 seconds")
    if not 0 <= args.warmup <= 10:
        parser.error("--warmup must be 0-10 seconds")
    if not 1 <= args.connections <= 1000 or not 1 <= args.threads <= 16:
        parser.error("--connections must be 1-1000, --threads 1-16")
    if not 1 <= args.spread <= 100_000:
        parser.error("--spread must be 1-100000")
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())

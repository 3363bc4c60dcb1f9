"""`make bench`: a bounded load against wallet-api under gunicorn on 127.0.0.1.

Prints requests/s and p50/p99 for each scenario, ratios against the bare
/healthz baseline measured in the same run, WATCH retries per operation, and a
lost-update check. Uses wrk (Debian: apt-get install wrk) for the load.

For the deposit scenarios it also prints what one deposit costs Redis (README
"Capacity"), from the server's own counters around the scenario:

* bytes: MEMORY USAGE of every ledger key and idempotency record, per deposit
  (and the used_memory delta, which also counts allocator and dict overhead);
* CPU: used_cpu_sys + used_cpu_user of the redis-server process (INFO cpu), and
  the time spent executing commands (INFO commandstats usec), in us per deposit;
* commands: total_commands_processed (INFO stats) per deposit, and by command.

The number of deposits is the number of ledger entries written (ZADD calls):
wrk does not count the replies still in flight when it stops.

    python -m devtools.bench [--duration 5] [--connections 64] [--worker-class gthread]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import redis

from devtools.local_servers import api_server, redis_server
from devtools.wrk_runner import run_wrk
from wallet_api.domain.operations import DEFAULT_TENANT, WalletRef
from wallet_api.store import WalletStore, wallet_key

KEY = "bench-key-0123456789abcdef"
SPREAD = 10_000


@dataclass
class RedisCost:
    """What the deposits of one scenario cost Redis, per deposit."""

    deposits: int
    ledger_bytes: float
    record_bytes: float
    used_memory_bytes: float
    cpu_us: float
    command_us: float
    commands: float
    by_command: dict[str, float]


class RedisMeter:
    """INFO snapshots before and after a scenario (module docstring)."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)

    def snapshot(self) -> dict[str, Any]:
        info = self.client.info("all")
        calls = {k.removeprefix("cmdstat_"): v for k, v in info.items() if k.startswith("cmdstat_")}
        return {
            "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            "commands": int(info["total_commands_processed"]),
            "used_memory": int(info["used_memory"]),
            "calls": {k: int(v["calls"]) for k, v in calls.items()},
            "usec": sum(int(v["usec"]) for v in calls.values()),
        }

    def _usage(self, pattern: str) -> int:
        total = 0
        keys = list(self.client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[start : start + 500]:
                pipe.memory_usage(key, samples=0)
            total += sum(v or 0 for v in pipe.execute())
        return total

    def cost(self, before: dict[str, Any], after: dict[str, Any]) -> RedisCost:
        """Between the snapshots only the load ran (and this meter's one INFO, left out)."""
        deposits = after["calls"].get("zadd", 0) - before["calls"].get("zadd", 0)
        per = max(deposits, 1)
        ledger = self._usage("w:{w:*}:ledger") - before.get("ledger_bytes", 0)
        records = self._usage("w:{w:*}:idem:*") - before.get("record_bytes", 0)
        by_command = {
            name: (n - before["calls"].get(name, 0)) / per
            for name, n in after["calls"].items()
            if n - before["calls"].get(name, 0) > 0 and name != "info"
        }
        return RedisCost(
            deposits=deposits,
            ledger_bytes=ledger / per,
            record_bytes=records / per,
            used_memory_bytes=(after["used_memory"] - before["used_memory"]) / per,
            cpu_us=(after["cpu"] - before["cpu"]) * 1e6 / per,
            command_us=(after["usec"] - before["usec"]) / per,
            commands=sum(by_command.values()),
            by_command=dict(sorted(by_command.items(), key=lambda kv: -kv[1])),
        )

    def baseline(self) -> dict[str, Any]:
        ledger, records = self._usage("w:{w:*}:ledger"), self._usage("w:{w:*}:idem:*")
        snap = self.snapshot()  # last: the scans above are not the load's commands
        snap["ledger_bytes"], snap["record_bytes"] = ledger, records
        return snap


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    refused: int
    failed: int
    socket_errors: int
    retries_per_op: float | None = None
    redis: RedisCost | None = None


def _retries(base: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()  # noqa: S310
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wallet_watch_retries_total{")
    )


def _run(
    name: str,
    base: str,
    env: dict[str, str],
    duration: int,
    connections: int,
    *,
    meter: RedisMeter | None = None,
) -> Result:
    before = _retries(base)
    deposit = env.get("BENCH_MODE") == "deposit"
    snap = meter.baseline() if meter and deposit else None
    raw = run_wrk(base, {"BENCH_KEY": KEY, **env}, duration=duration, connections=connections)
    seconds = raw["duration_us"] / 1e6
    result = Result(
        name,
        raw["requests"] / seconds,
        raw["p50_us"] / 1000,
        raw["p99_us"] / 1000,
        raw["ok"],
        raw["refused"],
        raw["failed"],
        raw["socket_errors"],
    )
    if deposit:
        result.retries_per_op = (_retries(base) - before) / max(raw["ok"], 1)
    if meter and snap is not None:
        time.sleep(0.5)  # replies in flight when wrk stopped
        after = meter.snapshot()
        result.redis = meter.cost(snap, after)
    return result


def _seed(redis_url: str, prefix: str, count: int) -> None:
    client = redis.Redis.from_url(redis_url)
    store = WalletStore(client)
    for n in range(count):
        store.create_wallet(WalletRef(DEFAULT_TENANT, f"{prefix}-{n}"), "EUR")  # KEY's tenant


def _balance(redis_url: str, wallet_id: str) -> tuple[int, int]:
    client = redis.Redis.from_url(redis_url)
    key = wallet_key(WalletRef(DEFAULT_TENANT, wallet_id))
    balance = int(client.hget(key, "balance") or 0)
    entries = client.zcard(f"{key}:ledger")
    return balance, entries


def bench(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk not found; install it (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    results: list[Result] = []
    lost_lines: list[str] = []
    lost = False
    fsync_modes = ["always"] + (["everysec"] if args.compare_fsync else [])
    for fsync in fsync_modes:
        with (
            redis_server(appendfsync=fsync) as rs,
            api_server(
                rs.url,
                KEY,
                workers=args.workers,
                threads=args.threads,
                worker_class=args.worker_class,
                # Access logs on, as in production (to /dev/null: formatting is the cost).
                extra_env={"COMMIT_SHARDS": str(args.commit_shards), "LOG_LEVEL": "INFO"},
            ) as api,
        ):
            _seed(rs.url, "bench", SPREAD)
            _seed(rs.url, "hot", 1)
            suffix = "" if fsync == "always" else f" (appendfsync {fsync})"

            meter = RedisMeter(rs.url)

            def run(
                name: str,
                env: dict[str, str],
                suffix: str = suffix,
                url: str = api.url,
                meter: RedisMeter = meter,
            ) -> None:
                results.append(
                    _run(name + suffix, url, env, args.duration, args.connections, meter=meter)
                )

            if fsync == "always":
                run("GET /healthz (baseline)", {"BENCH_MODE": "healthz"})
                run("GET /wallets/{id}", {"BENCH_MODE": "get", "BENCH_WALLETS": str(SPREAD)})
            run(
                f"deposit, {SPREAD:,} spread wallets",
                {"BENCH_MODE": "deposit", "BENCH_WALLETS": str(SPREAD)},
            )
            if fsync == "always":
                run(
                    f"deposit, 1 hot wallet, {args.connections} conns",
                    {"BENCH_MODE": "deposit", "BENCH_WALLETS": "1", "BENCH_PREFIX": "hot"},
                )
                hot = results[-1]
                time.sleep(0.5)  # let requests in flight when wrk stopped finish
                balance, entries = _balance(rs.url, "hot-0")
                # Every deposit is 1 cent: balance == ledger entries, and no
                # acknowledged deposit may be missing. wrk drops (does not count)
                # replies still in flight when it stops, so those may add up to
                # one per connection on top of the acknowledged ones.
                unacked = balance - hot.ok
                lost = balance != entries or unacked < 0 or unacked > args.connections
                lost_lines.append(
                    f"lost-update check (hot wallet): acknowledged={hot.ok} balance={balance} "
                    f"ledger_entries={entries} in_flight_at_stop={unacked} -> "
                    + ("FAIL" if lost else "OK (0 lost)")
                )
    _print(results, args)
    _print_costs(results)
    for line in lost_lines:
        print(line)
    failed = sum(r.failed for r in results)
    print(f"5xx responses: {failed}")
    return 1 if lost or failed else 0


def _print(results: list[Result], args: argparse.Namespace) -> None:
    base = results[0].rps
    print(
        f"\nwallet-api bench: gunicorn {args.worker_class} workers={args.workers}"
        + (f" threads={args.threads}" if args.worker_class == "gthread" else "")
        + f", COMMIT_SHARDS={args.commit_shards}, "
        f"wrk -t2 -c{args.connections} -d{args.duration}s, redis appendfsync always unless noted\n"
    )
    print(
        f"{'scenario':48} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x base':>7} {'retries/op':>10}"
    )
    for r in results:
        retries = f"{r.retries_per_op:.3f}" if r.retries_per_op is not None else "-"
        print(
            f"{r.name:48} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
            f"{r.rps / base:7.2f} {retries:>10}"
        )
    by = {
        r.name.split(",")[0]
        + ("|hot" if "hot" in r.name else "")
        + ("|everysec" if "everysec" in r.name else ""): r
        for r in results
    }
    spread, hot = by.get("deposit"), by.get("deposit|hot")
    if spread and hot:
        print(f"\nhot / spread deposit ratio: {hot.rps / spread.rps:.2f}")
    everysec = by.get("deposit|everysec")
    if spread and everysec:
        print(f"appendfsync always / everysec (spread deposit): {spread.rps / everysec.rps:.2f}")


def _print_costs(results: list[Result]) -> None:
    costed = [r for r in results if r.redis is not None]
    if not costed:
        return
    print('\nper deposit, from Redis\' own counters (README "Capacity"):')
    print(
        f"{'scenario':48} {'deposits':>8} {'ledger B':>8} {'record B':>8} {'used_mem B':>10} "
        f"{'cpu us':>7} {'cmd us':>7} {'commands':>8}"
    )
    for r in costed:
        c = r.redis
        assert c is not None
        print(
            f"{r.name:48} {c.deposits:8d} {c.ledger_bytes:8.0f} {c.record_bytes:8.0f} "
            f"{c.used_memory_bytes:10.0f} {c.cpu_us:7.1f} {c.command_us:7.1f} {c.commands:8.2f}"
        )
    for r in costed:
        assert r.redis is not None
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(r.redis.by_command.items())[:9])
        print(f"  commands per deposit, {r.name}: {top}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per scenario (default 5)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16, help="gthread only")
    parser.add_argument("--commit-shards", type=int, default=1, help="COMMIT_SHARDS")
    parser.add_argument("--worker-class", default="gevent", choices=["gevent", "gthread", "sync"])
    parser.add_argument("--no-compare-fsync", dest="compare_fsync", action="store_false")
    args = parser.parse_args()
    if not 1 <= args.duration <= 60:
        parser.error("--duration must be 1-60 seconds")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())

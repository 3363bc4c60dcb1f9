"""`make bench`: a bounded load against wallet-api under gunicorn on 127.0.0.1.

Prints requests/s and p50/p99 for each scenario, ratios against two baselines
measured in the same run under the same gunicorn settings (a bare Flask app
answering {"ok": true}: devtools/bare_app.py, and the API's own /healthz), WATCH
retries per operation, and a lost-update check. Uses wrk (Debian: apt-get install
wrk) for the load. Ratios, not absolute rates, are what can be compared between
runs: on a shared 2-core machine the absolute rates move by +-10 % run to run.

Two API instances ("replicas": two gunicorn masters, same settings, same Redis)
also take the deposit load spread over them, on 10,000 wallets and on one hot
wallet, because WATCH conflicts between processes are what group commit cannot
merge away (it batches within one process only). The replicas are sized as
compose and the chart size them: the cores shared out, one worker per core each
(`cpus: 1` / limits.cpu "1" on two cores; config.default_workers). The same pair
with the single instance's worker count each (two on two cores: four workers on two
cores) runs too, when that differs, to show what oversubscribing the cores does to a
hot wallet.

With pidstat (Debian: sysstat) each scenario also gets the CPU of the workers,
Redis and wrk, in % of one core and CPU microseconds per request. --profile adds one
more spread-deposit run with py-spy sampling the API's workers, and prints the
functions that took the most samples (not counted in the table: py-spy costs CPU).

The output ends with one verdict line per target of issue 13: the measured ratio,
the target, and met / NOT met. A missed target does not fail the run (exit 1 is kept
for lost updates and 5xx): the numbers are measurements, not assertions.

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
                             [--profile]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from devtools.local_servers import ApiServer, api_server, redis_server
from devtools.profiling import (
    ProcessCpu,
    cpu_during,
    format_cpu,
    format_profile,
    py_spy_binary,
    py_spy_record,
    top_functions,
)
from devtools.wrk_runner import run_wrk, run_wrk_spread
from wallet_api.config import available_cpus, default_workers
from wallet_api.domain.operations import DEFAULT_TENANT, WalletRef
from wallet_api.store import WalletStore, wallet_key

KEY = "bench-key-0123456789abcdef"
SPREAD = 10_000
BARE_APP = "devtools.bare_app:app"

# Issue 13's targets: (name, ratio floor, retries-per-op ceiling or None).
TARGET_DEPOSIT_VS_BARE = 0.6
AIM_DEPOSIT_VS_BARE = 0.7
TARGET_HOT_VS_SPREAD = 0.95
TARGET_RETRIES_PER_OP = 0.01


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
    cpu: str | None = None
    runs: int = 1


def merged(first: Result, again: Result) -> Result:
    """One row for a scenario run twice: the mean rate, the counts summed, retries per
    deposit over both runs. CPU and Redis costs stay the first run's (measured alone)."""
    ok = first.ok + again.ok
    retries = None
    if first.retries_per_op is not None and again.retries_per_op is not None:
        retries = (first.retries_per_op * first.ok + again.retries_per_op * again.ok) / max(ok, 1)
    return replace(
        first,
        rps=(first.rps + again.rps) / 2,
        p50_ms=(first.p50_ms + again.p50_ms) / 2,
        p99_ms=max(first.p99_ms, again.p99_ms),
        ok=ok,
        refused=first.refused + again.refused,
        failed=first.failed + again.failed,
        socket_errors=first.socket_errors + again.socket_errors,
        retries_per_op=retries,
        runs=first.runs + again.runs,
    )


def _retries(base: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()  # noqa: S310
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wallet_watch_retries_total{")
    )


def _children(pid: int) -> set[int]:
    """A gunicorn master's workers (Linux: /proc/<pid>/task/*/children)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


class Classifier:
    """Names pidstat's processes for `make bench`: each server's workers by PID."""

    def __init__(self, gunicorns: dict[str, int], **others: int) -> None:
        self.names: dict[int, str] = {pid: name for name, pid in others.items()}
        for name, pid in gunicorns.items():
            self.names[pid] = f"{name} master"
            for child in _children(pid):
                self.names[child] = name

    def __call__(self, proc: ProcessCpu) -> str:
        if proc.pid in self.names:
            return self.names[proc.pid]
        return "wrk" if proc.command.split()[0].endswith("wrk") else "other"


def _run(
    name: str,
    bases: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    *,
    meter: RedisMeter | None = None,
    classify: Classifier | None = None,
    seconds: int | None = None,
) -> Result:
    """One scenario: wrk on one base URL, or the same load spread over several."""
    deposit = env.get("BENCH_MODE") == "deposit"
    before = sum(_retries(b) for b in bases) if deposit else 0.0
    snap = meter.baseline() if meter and deposit else None
    env = {"BENCH_KEY": KEY, **env}
    duration = seconds or args.duration
    with cpu_during(duration) as cpu:
        if len(bases) == 1:
            raw = run_wrk(bases[0], env, duration=duration, connections=args.connections)
        else:
            raw = run_wrk_spread(bases, env, duration=duration, connections=args.connections)
    elapsed = raw["duration_us"] / 1e6
    result = Result(
        name,
        raw["requests"] / elapsed,
        raw["p50_us"] / 1000,
        raw["p99_us"] / 1000,
        raw["ok"],
        raw["refused"],
        raw["failed"],
        raw["socket_errors"],
    )
    if classify is not None:
        result.cpu = format_cpu(cpu, classify, result.rps)
    if deposit:
        result.retries_per_op = (sum(_retries(b) for b in bases) - before) / max(raw["ok"], 1)
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


def _lost_update_check(redis_url: str, wallet_id: str, hot: Result, in_flight_max: int) -> str:
    """Every deposit is 1 cent: balance == ledger entries, and no acknowledged deposit
    may be missing. wrk drops (does not count) replies still in flight when it stops,
    so those may add up to one per connection on top of the acknowledged ones."""
    time.sleep(0.5)  # let requests in flight when wrk stopped finish
    balance, entries = _balance(redis_url, wallet_id)
    unacked = balance - hot.ok
    lost = balance != entries or unacked < 0 or unacked > in_flight_max
    return (
        f"lost-update check ({hot.name}): acknowledged={hot.ok} balance={balance} "
        f"ledger_entries={entries} in_flight_at_stop={unacked} -> "
        + ("FAIL" if lost else "OK (0 lost)")
    )


def _api(
    stack: ExitStack,
    args: argparse.Namespace,
    redis_url: str,
    replica: str,
    *,
    workers: int | None = None,
    **kw: Any,
) -> ApiServer:
    return stack.enter_context(
        api_server(
            redis_url,
            KEY,
            workers=workers or args.workers,
            threads=args.threads,
            worker_class=args.worker_class,
            replica_id=replica,
            # Access logs on, as in production (to /dev/null: formatting is the cost).
            extra_env={"COMMIT_SHARDS": str(args.commit_shards), "LOG_LEVEL": "INFO"},
            **kw,
        )
    )


def _profile(api: ApiServer, args: argparse.Namespace, env: dict[str, str]) -> str:
    """py-spy on both workers of `api` during one more spread-deposit run (not in the
    table: the sampling takes CPU from the same two cores)."""
    with py_spy_record(api.proc.pid, args.profile_seconds) as stacks:
        _run("profiled", [api.url], {**env, "BENCH_RUN": "p"}, args, seconds=args.profile_seconds)
    return format_profile(
        top_functions(stacks),
        f"py-spy, both workers of one instance, {SPREAD:,} spread deposits "
        f"({args.profile_seconds}s, a run of its own)",
    )


def _everysec(args: argparse.Namespace, env: dict[str, str]) -> Result:
    """The spread deposit against a Redis with appendfsync everysec: what durability costs."""
    with ExitStack() as stack:
        rs = stack.enter_context(redis_server(appendfsync="everysec"))
        api = _api(stack, args, rs.url, "local")
        _seed(rs.url, "bench", SPREAD)
        return _run(
            f"deposit, {SPREAD:,} spread wallets (appendfsync everysec)",
            [api.url],
            {**env, "BENCH_RUN": "e"},
            args,
            meter=RedisMeter(rs.url),
            classify=Classifier({"api": api.proc.pid}, redis=rs.proc.pid),
        )


def _servers(stack: ExitStack, args: argparse.Namespace, redis_url: str) -> dict[str, ApiServer]:
    """The gunicorn instances of the run, by the name pidstat's lines give them; the
    wallets seeded."""
    servers = {
        "api": _api(stack, args, redis_url, "local"),
        "api-2": _api(stack, args, redis_url, "local-2"),
        # Two replicas sized like compose's and the chart's (module docstring).
        "replica-1": _api(stack, args, redis_url, "replica-1", workers=args.replica_workers),
        "replica-2": _api(stack, args, redis_url, "replica-2", workers=args.replica_workers),
        # The same gunicorn.conf.py, with gunicorn's own access log (bare_app.py).
        "bare": _api(
            stack, args, redis_url, "bare", app=BARE_APP, gunicorn_args=("--access-logfile", "-")
        ),
    }
    _seed(redis_url, "bench", SPREAD)
    for prefix in ("hot", "hot2", "hot4"):
        _seed(redis_url, prefix, 1)
    return servers


def bench(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk not found; install it (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    if args.profile and py_spy_binary() is None:
        print("bench: --profile needs py-spy (the dev lock: make venv)", file=sys.stderr)
        return 2
    results: list[Result] = []
    checks: list[str] = []
    profile: str | None = None
    spread_env = {"BENCH_MODE": "deposit", "BENCH_WALLETS": str(SPREAD)}
    with ExitStack() as stack:
        rs = stack.enter_context(redis_server(appendfsync="always"))
        servers = _servers(stack, args, rs.url)
        api, api2, rep1, rep2, bare = (
            servers[n] for n in ("api", "api-2", "replica-1", "replica-2", "bare")
        )
        meter = RedisMeter(rs.url)
        classify = Classifier({n: a.proc.pid for n, a in servers.items()}, redis=rs.proc.pid)

        def run(name: str, bases: list[ApiServer], env: dict[str, str], tag: str) -> Result:
            # BENCH_RUN: the spread scenarios share the wallets, never their keys. One
            # letter: longer keys would make the idempotency records (bytes above) grow.
            env = {**env, "BENCH_RUN": tag}
            urls = [b.url for b in bases]
            results.append(_run(name, urls, env, args, meter=meter, classify=classify))
            return results[-1]

        def pair(names: tuple[str, str], bases: list[ApiServer], prefix: str, tags: str) -> None:
            """Spread, hot, hot, spread: the machine's speed drifts by several percent
            within a minute, and this order gives both the same average moment."""
            hot_env = {"BENCH_MODE": "deposit", "BENCH_WALLETS": "1", "BENCH_PREFIX": prefix}
            urls = [b.url for b in bases]
            first = len(results)
            run(names[0], bases, spread_env, tags[0])
            run(names[1], bases, hot_env, tags[1])
            hot_again = _run(names[1], urls, {**hot_env, "BENCH_RUN": tags[1] + "2"}, args)
            spread_again = _run(names[0], urls, {**spread_env, "BENCH_RUN": tags[0] + "2"}, args)
            results[first] = merged(results[first], spread_again)
            results[first + 1] = merged(results[first + 1], hot_again)
            checks.append(_lost_update_check(rs.url, f"{prefix}-0", results[first + 1], 2 * conns))

        conns = args.connections
        run('bare Flask {"ok": true} (baseline)', [bare], {"BENCH_MODE": "healthz"}, "b")
        run("GET /healthz", [api], {"BENCH_MODE": "healthz"}, "z")
        run("GET /wallets/{id}", [api], {"BENCH_MODE": "get", "BENCH_WALLETS": str(SPREAD)}, "g")
        pair(
            (f"deposit, {SPREAD:,} spread wallets", f"deposit, 1 hot wallet, {conns} conns"),
            [api],
            "hot",
            "sh",
        )
        over = ", oversubscribed" if 2 * args.workers > available_cpus() else ""
        wheres = [(f"2 instances x {args.replica_workers}", [rep1, rep2], "hot2", "SH")]
        if args.workers != args.replica_workers:  # else the same pair again
            wheres.append((f"2 instances x {args.workers}{over}", [api, api2], "hot4", "TU"))
        for where, bases, prefix, tags in wheres:
            names = (f"deposit, {SPREAD:,} spread, {where}", f"deposit, 1 hot wallet, {where}")
            pair(names, bases, prefix, tags)
        if args.profile:
            profile = _profile(api, args, spread_env)
    if args.compare_fsync:
        results.append(_everysec(args, spread_env))
    _print(results, args)
    _print_costs(results)
    if profile:
        print("\n" + profile)
    return _summary(results, checks)


def _summary(results: list[Result], checks: list[str]) -> int:
    """The lost-update checks, 5xx and verdicts; exit 1 for a lost update or a 5xx."""
    print()
    for line in checks:
        print(line)
    failed = sum(r.failed for r in results)
    print(f"5xx responses: {failed}")
    print()
    for line in verdicts(results):
        print(line)
    lost = any(line.endswith("FAIL") for line in checks)
    return 1 if lost or failed else 0


def _find(results: list[Result], *words: str, without: str = "") -> Result | None:
    for r in results:
        if all(w in r.name for w in words) and not (without and without in r.name):
            return r
    return None


def verdict(
    label: str,
    ratio: float,
    target: float,
    *,
    aim: float | None = None,
    retries_per_op: float | None = None,
) -> str:
    """`verdict: <label> = <measured> (target ...): met | NOT met`."""
    met = ratio >= target
    measured = f"{ratio:.2f}"
    wanted = f">= {target:.2f}" + (f", aim {aim:.2f}" if aim is not None else "")
    if retries_per_op is not None:
        measured += f", {retries_per_op:.3f} retries/op"
        wanted += f", <= {TARGET_RETRIES_PER_OP} retries/op"
        met = met and retries_per_op <= TARGET_RETRIES_PER_OP
    return f"verdict: {label} = {measured} (target {wanted}): {'met' if met else 'NOT met'}"


def verdicts(results: list[Result]) -> list[str]:
    """One line per target of issue 13, from this run's results only."""
    lines = []
    bare = _find(results, "bare Flask")
    spread = _find(results, "spread wallets", without="everysec")
    if bare and spread:
        lines.append(
            verdict(
                "spread deposit / bare Flask",
                spread.rps / bare.rps,
                TARGET_DEPOSIT_VS_BARE,
                aim=AIM_DEPOSIT_VS_BARE,
            )
        )
    pairs = [("1 instance", _find(results, "hot wallet", without="instances"), spread)]
    for r in results:
        if "hot wallet, 2 instances" in r.name:
            where = r.name.split("hot wallet, ", 1)[1]
            pairs.append((where, r, _find(results, f"spread, {where}")))
    for where, hot, base in pairs:
        if hot and base and hot.retries_per_op is not None:
            lines.append(
                verdict(
                    f"hot / spread deposit, {where}",
                    hot.rps / base.rps,
                    TARGET_HOT_VS_SPREAD,
                    retries_per_op=hot.retries_per_op,
                )
            )
    return lines


def _print(results: list[Result], args: argparse.Namespace) -> None:
    bare = results[0].rps
    healthz = (_find(results, "GET /healthz") or results[0]).rps
    print(
        f"\nwallet-api bench, {available_cpus()} CPUs: gunicorn {args.worker_class} "
        f"workers={args.workers} per instance, {args.replica_workers} per replica"
        + (f" threads={args.threads}" if args.worker_class == "gthread" else "")
        + f", COMMIT_SHARDS={args.commit_shards}, "
        f"wrk -t2 -c{args.connections} -d{args.duration}s in all (spread over the instances), "
        "redis appendfsync always unless noted; each deposit pair ran spread, hot, hot, "
        "spread, and its rows average both runs (CPU and Redis costs: the first run)\n"
    )
    print(
        f"{'scenario':58} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>8} {'x bare':>6} "
        f"{'x healthz':>9} {'retries/op':>10}"
    )
    for r in results:
        retries = f"{r.retries_per_op:.3f}" if r.retries_per_op is not None else "-"
        print(
            f"{r.name:58} {r.rps:7.0f} {r.p50_ms:7.2f} {r.p99_ms:8.2f} "
            f"{r.rps / bare:6.2f} {r.rps / healthz:9.2f} {retries:>10}"
        )
    cpu = [r for r in results if r.cpu]
    if cpu:
        print("\nCPU per scenario (pidstat; us/req = CPU time per request of that group):")
        for r in cpu:
            print(f"  {r.name}: {r.cpu}")
    spread = _find(results, "spread wallets", without="everysec")
    everysec = _find(results, "everysec")
    if spread and everysec:
        print(f"\nappendfsync always / everysec (spread deposit): {spread.rps / everysec.rps:.2f}")


def _print_costs(results: list[Result]) -> None:
    costed = [r for r in results if r.redis is not None]
    if not costed:
        return
    print('\nper deposit, from Redis\' own counters (README "Capacity"):')
    print(
        f"{'scenario':58} {'deposits':>8} {'ledger B':>8} {'record B':>8} {'used_mem B':>10} "
        f"{'cpu us':>7} {'cmd us':>7} {'commands':>8}"
    )
    for r in costed:
        c = r.redis
        assert c is not None
        print(
            f"{r.name:58} {c.deposits:8d} {c.ledger_bytes:8.0f} {c.record_bytes:8.0f} "
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
    cpus = available_cpus()
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help=f"per instance (default: gunicorn.conf.py's, {default_workers()})",
    )
    parser.add_argument(
        "--replica-workers",
        type=int,
        default=max(1, cpus // 2),
        help=f"per replica of the 2-instance pair (default: half the CPUs, {max(1, cpus // 2)})",
    )
    parser.add_argument("--threads", type=int, default=16, help="gthread only")
    parser.add_argument("--commit-shards", type=int, default=1, help="COMMIT_SHARDS")
    parser.add_argument("--worker-class", default="gevent", choices=["gevent", "gthread", "sync"])
    parser.add_argument("--no-compare-fsync", dest="compare_fsync", action="store_false")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more spread-deposit run under py-spy; print its top functions",
    )
    parser.add_argument(
        "--profile-seconds", type=int, default=10, help="length of the profiled run (default 10)"
    )
    args = parser.parse_args()
    bad = bad_bounds(args)
    if bad:
        parser.error(bad)
    return bench(args)


# Bounded in count and time: every run of make bench finishes, on any machine.
BOUNDS = {
    "duration": (1, 60),
    "profile_seconds": (1, 60),
    "connections": (4, 1024),  # wrk needs a connection per thread, two per instance
    "workers": (1, 64),
    "replica_workers": (1, 64),
    "threads": (1, 256),
    "commit_shards": (1, 64),  # COMMIT_SHARDS' own range (config.py)
}


def bad_bounds(args: argparse.Namespace) -> str | None:
    """The first option out of its range (one line for parser.error), else None."""
    for name, (low, high) in BOUNDS.items():
        value = getattr(args, name)
        if not low <= value <= high:
            return f"--{name.replace('_', '-')} must be {low}-{high}, got {value}"
    return None


if __name__ == "__main__":
    sys.exit(main())

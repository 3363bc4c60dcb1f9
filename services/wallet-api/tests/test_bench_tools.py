"""The benchmark tools' arithmetic (devtools/): parsing pidstat and py-spy output,
merging side-by-side wrk runs, and the verdict lines. No load is generated here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.bench import BOUNDS, Result, merged, verdict, verdicts
from devtools.profiling import CpuReport, format_cpu, parse_pidstat, top_functions
from devtools.wrk_runner import merge_results

PIDSTAT = """\
Linux 6.1.0 (host) \t12/03/26 \t_x86_64_\t(2 CPU)

# Time        UID       PID    %usr %system  %guest   %wait    %CPU   CPU  Command
 10:00:05        0      1201   60.00   20.00    0.00    1.00   80.00     1  gunicorn: worker
 10:00:05        0      1202   50.00   10.50    0.00    1.00   60.50     0  gunicorn: worker
 10:00:05      999      1300    5.00    5.00    0.00    0.00   10.00     0  redis-server *:6379
 10:00:05        0      1400   10.00   15.00    0.00    0.00   25.00     1  wrk -t2 -c64 -d5s http://x
"""


def test_pidstat_lines_keep_pid_cpu_and_the_whole_command() -> None:
    procs = parse_pidstat(PIDSTAT)
    assert [(p.pid, p.cpu) for p in procs] == [
        (1201, 80.0),
        (1202, 60.5),
        (1300, 10.0),
        (1400, 25.0),
    ]
    assert procs[0].command == "gunicorn: worker"
    assert procs[3].command.startswith("wrk -t2")


def test_cpu_groups_add_up_and_give_cpu_time_per_request() -> None:
    report = CpuReport(5, parse_pidstat(PIDSTAT))
    workers = {1201, 1202}

    def classify(p):  # type: ignore[no-untyped-def]
        return "api" if p.pid in workers else p.command.split()[0]

    assert report.by_group(classify) == {"api": 140.5, "wrk": 25.0, "redis-server": 10.0}
    # 140.5 % of a core at 1,000 req/s = 1.405 ms of CPU per request.
    line = format_cpu(report, classify, 1000.0)
    assert "total 176%" in line
    assert "api 140% (1405 us/req)" in line


def test_cpu_line_says_why_it_is_missing() -> None:
    report = CpuReport(5, missing="pidstat not found")
    assert format_cpu(report, lambda p: "x", 1.0) == "cpu: pidstat not found"


def test_py_spy_raw_stacks_give_own_and_total_shares() -> None:
    raw = [
        "process 1:gunicorn;handle (gunicorn/workers/ggevent.py:10);"
        "dumps (/usr/lib/python3.11/json/__init__.py:231) 30",
        "process 1:gunicorn;handle (gunicorn/workers/ggevent.py:12);"
        "send (/x/site-packages/gevent/_socketcommon.py:700) 10",
        "process 2:gunicorn;handle (gunicorn/workers/ggevent.py:10);"
        "dumps (/usr/lib/python3.11/json/__init__.py:231) 60",
        "not a stack line",
    ]
    profile = top_functions(raw)
    assert profile.samples == 100
    assert profile.own[0] == ("dumps (stdlib/json/__init__.py)", 0.9)
    assert ("send (gevent/_socketcommon.py)", 0.1) in profile.own
    # Lines of one function count once per sample, wherever they are.
    assert profile.total[0] == ("handle (gunicorn/workers/ggevent.py)", 1.0)
    assert profile.components["JSON (stdlib json)"] == 0.9
    assert profile.components["Redis client (redis-py)"] == 0.0


def test_side_by_side_wrk_runs_add_counts_and_keep_the_worst_latency() -> None:
    a = {
        "requests": 100,
        "duration_us": 5_000_000,
        "ok": 99,
        "failed": 1,
        "p50_us": 10,
        "p99_us": 90,
    }
    b = {
        "requests": 300,
        "duration_us": 5_100_000,
        "ok": 300,
        "failed": 0,
        "p50_us": 20,
        "p99_us": 40,
    }
    assert merge_results([a, b]) == {
        "requests": 400,
        "duration_us": 5_100_000,
        "ok": 399,
        "failed": 1,
        "p50_us": 20,
        "p99_us": 90,
    }


def _result(name: str, rps: float, retries: float | None = None) -> Result:
    return Result(name, rps, 1.0, 2.0, int(rps), 0, 0, 0, retries_per_op=retries)


def test_verdicts_compare_this_runs_ratios_with_the_targets() -> None:
    results = [
        _result('bare Flask {"ok": true} (baseline)', 4000),
        _result("GET /healthz", 3000),
        _result("deposit, 10,000 spread wallets", 2600, 0.0),
        _result("deposit, 1 hot wallet, 64 conns", 2500, 0.004),
        _result("deposit, 10,000 spread, 2 instances x 1", 2400, 0.002),
        _result("deposit, 1 hot wallet, 2 instances x 1", 2350, 0.02),
        _result("deposit, 10,000 spread, 2 instances x 2, oversubscribed", 2500, 0.002),
        _result("deposit, 1 hot wallet, 2 instances x 2, oversubscribed", 2000, 0.005),
        _result("deposit, 10,000 spread wallets (appendfsync everysec)", 9999, 0.0),
    ]
    assert verdicts(results) == [
        "verdict: spread deposit / bare Flask = 0.65 (target >= 0.60, aim 0.70): met",
        "verdict: hot / spread deposit, 1 instance = 0.96, 0.004 retries/op "
        "(target >= 0.95, <= 0.01 retries/op): met",
        # The ratio is met, the retries are not: not met.
        "verdict: hot / spread deposit, 2 instances x 1 = 0.98, 0.020 retries/op "
        "(target >= 0.95, <= 0.01 retries/op): NOT met",
        # Each pair against its own spread run.
        "verdict: hot / spread deposit, 2 instances x 2, oversubscribed = 0.80, "
        "0.005 retries/op (target >= 0.95, <= 0.01 retries/op): NOT met",
    ]


def test_a_scenario_run_twice_is_one_row_with_its_mean_rate() -> None:
    first = Result("hot", 2000, 20.0, 50.0, 10_000, 1, 0, 0, retries_per_op=0.01, cpu="c")
    again = Result("hot", 2400, 30.0, 40.0, 12_000, 2, 0, 3, retries_per_op=0.0)
    row = merged(first, again)
    assert (row.rps, row.p50_ms, row.p99_ms) == (2200, 25.0, 50.0)
    assert (row.ok, row.refused, row.socket_errors, row.runs) == (22_000, 3, 3, 2)
    # Retries per deposit over both runs: 100 retries in 22,000 deposits.
    assert row.retries_per_op is not None and abs(row.retries_per_op - 100 / 22_000) < 1e-12
    assert row.cpu == "c"  # measured in the first run only


def test_a_ratio_below_the_target_is_not_met() -> None:
    assert verdict("x", 0.59, 0.6).endswith("(target >= 0.60): NOT met")
    assert verdict("x", 0.6, 0.6).endswith("(target >= 0.60): met")


@pytest.mark.parametrize(
    ("option", "value"),
    [("--workers", "0"), ("--connections", "1"), ("--threads", "0"), ("--commit-shards", "65"),
     ("--replica-workers", "0"), ("--duration", "61")],
)  # fmt: skip
def test_an_option_out_of_range_is_one_line_and_starts_nothing(option: str, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench", option, value],
        capture_output=True, text=True, check=False, timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        f"bench.py: error: {option} must be "
        f"{'-'.join(map(str, BOUNDS[option[2:].replace('-', '_')]))}, got {value}"
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""

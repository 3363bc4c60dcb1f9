"""Where the CPU goes during a benchmark: pidstat per process, py-spy per function.

Standard library only (`make bench-stack` runs with the system python3). Both tools
are optional: without them the benchmarks still run and say what is missing.

* `cpu_during(seconds)` runs `pidstat -u -h -l <seconds> 1` beside the load: one
  report of every process that used CPU in that window, averaged over it, in % of
  one core (so 2 cores = 200 %). Requests/s alone cannot say whether the proxy, the
  engine's log shipping or the workers ate the time; this can.
* `py_spy_record(pid, seconds)` samples a gunicorn master and its workers
  (`--subprocesses`, `--nonblocking`: the workers are never paused) into py-spy's raw
  collapsed stacks; `top_functions` turns them into "own" and "total" shares per
  function, the two views `py-spy top` shows, as plain text for the README.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ProcessCpu:
    pid: int
    cpu: float  # % of one core, averaged over the window
    command: str


@dataclass
class CpuReport:
    """pidstat's processes, filled in when the `cpu_during` block ends."""

    seconds: float
    processes: list[ProcessCpu] = field(default_factory=list)
    missing: str | None = None  # why there is no report

    def by_group(self, classify: Callable[[ProcessCpu], str]) -> dict[str, float]:
        """Summed % of one core per group, largest first."""
        totals: dict[str, float] = {}
        for proc in self.processes:
            group = classify(proc)
            totals[group] = totals.get(group, 0.0) + proc.cpu
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def parse_pidstat(text: str) -> list[ProcessCpu]:
    """`pidstat -u -h -l` lines: Time UID PID %usr %system %guest %wait %CPU CPU Command.

    Header, blank and "Average" lines are skipped; the command keeps its arguments."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 9)
        if len(parts) < 10 or line.startswith(("#", "Linux", "Average")):
            continue
        try:
            out.append(ProcessCpu(int(parts[2]), float(parts[7]), parts[9]))
        except ValueError:
            continue
    return out


@contextmanager
def cpu_during(seconds: int) -> Iterator[CpuReport]:
    """Per-process CPU over the next `seconds` (start the load right inside the block)."""
    report = CpuReport(float(seconds))
    if shutil.which("pidstat") is None:
        report.missing = "pidstat not found (Debian: apt-get install sysstat)"
        yield report
        return
    proc = subprocess.Popen(  # noqa: S603
        ["pidstat", "-u", "-h", "-l", str(seconds), "1"],  # noqa: S607
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    try:
        yield report
    finally:
        try:
            out, _ = proc.communicate(timeout=seconds + 30)
            report.processes = parse_pidstat(out)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            report.missing = "pidstat did not finish"


def format_cpu(
    report: CpuReport, classify: Callable[[ProcessCpu], str], requests_per_s: float
) -> str:
    """One line: each group's CPU and, with the rate, its CPU time per request."""
    if report.missing:
        return f"cpu: {report.missing}"
    groups = report.by_group(classify)
    total = sum(groups.values())
    parts = [
        f"{name} {cpu:.0f}%"
        + (f" ({cpu * 1e4 / requests_per_s:.0f} us/req)" if cpu >= 5 and requests_per_s else "")
        for name, cpu in groups.items()
        if cpu >= 1
    ]
    return f"cpu (% of one core): total {total:.0f}% = " + ", ".join(parts)


# -- py-spy --------------------------------------------------------------------


def py_spy_binary() -> str | None:
    """py-spy of this interpreter's venv (the dev lock installs it there), else PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


@contextmanager
def py_spy_record(pid: int, seconds: int, rate: int = 100) -> Iterator[list[str]]:
    """Sample `pid` and its children for `seconds`; the list gets the raw stacks."""
    stacks: list[str] = []
    binary = py_spy_binary()
    if binary is None:
        raise RuntimeError("py-spy not found: `make venv` installs it (dev lock)")
    with tempfile.TemporaryDirectory(prefix="wallet-pyspy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        proc = subprocess.Popen(  # noqa: S603
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                str(rate),
                "--duration",
                str(seconds),
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            yield stacks
        finally:
            try:
                _, err = proc.communicate(timeout=seconds + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                err = "timed out"
            if proc.returncode != 0 or not out.exists():
                raise RuntimeError(f"py-spy record failed: {err.strip()[-500:]}")
            stacks.extend(out.read_text().splitlines())


# Parts of a worker's work, by where their code lives: a sample counts for every part
# anywhere on its stack (inclusive), so they overlap and do not add up to 100 %.
# py-spy names files relative to their sys.path entry (json/encoder.py); _frame_name
# turns absolute standard-library paths into stdlib/...: either form matches.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "access log + other logging (stdlib logging)": ("(logging/", "(stdlib/logging/"),
    "request log hooks (wallet_api observability)": ("(wallet_api/observability.py",),
    "metrics (prometheus_client, prometheus_flask_exporter)": ("(prometheus_",),
    "Redis client (redis-py)": ("(redis/",),
    "JSON (stdlib json)": ("(json/", "(stdlib/json/"),
    "gunicorn HTTP parsing and writing (gunicorn/http)": ("(gunicorn/http/",),
    "gunicorn: sending the response headers": ("Response.send_headers (gunicorn/",),
    "socket send (gevent)": ("SocketMixin.send (",),
}


@dataclass
class Profile:
    samples: int
    own: list[tuple[str, float]]  # function, share of samples it was on top of the stack
    # function, share of samples it was anywhere on the stack; twice as many, since the
    # first ones are the server's trunk (gunicorn, gevent, Flask's dispatch)
    total: list[tuple[str, float]]
    components: dict[str, float] = field(default_factory=dict)  # COMPONENTS, inclusive


def _frame_name(frame: str) -> str:
    """`handle (gunicorn/workers/base_async.py:55)` -> `handle (gunicorn/workers/base_async.py)`:
    a function, not a line, is the unit worth reading."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = "stdlib/" + path.split("/", 1)[-1]
    return f"{name} ({path})" if path else name


def top_functions(raw: list[str], n: int = 15) -> Profile:
    """py-spy's raw format: `frame;frame;...;leaf count` per line, outermost first
    (py-spy adds a `process ...` root frame with --subprocesses)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    samples = 0
    for line in raw:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
        for part, markers in COMPONENTS.items():
            if any(m in f for f in frames for m in markers):
                parts[part] += count
    share = max(samples, 1)
    return Profile(
        samples,
        [(name, c / share) for name, c in own.most_common(n)],
        [(name, c / share) for name, c in total.most_common(2 * n)],
        {part: parts[part] / share for part in COMPONENTS},
    )


def format_profile(profile: Profile, title: str) -> str:
    lines = [f"{title}: {profile.samples} samples (100 Hz, all workers)"]
    lines.append(f"  {'own %':>6}  function")
    lines += [f"  {share * 100:6.1f}  {name}" for name, share in profile.own]
    lines.append(f"  {'total %':>6}  function (anywhere on the stack)")
    lines += [f"  {share * 100:6.1f}  {name}" for name, share in profile.total]
    lines.append(f"  {'total %':>6}  component (inclusive, overlapping)")
    lines += [f"  {share * 100:6.1f}  {name}" for name, share in profile.components.items()]
    return "\n".join(lines)

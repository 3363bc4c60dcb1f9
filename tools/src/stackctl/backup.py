"""`make backup` / `make restore FILE=...`: consistent Redis snapshots of the compose stack.

Backup: `redis-cli --rdb -` (as the ACL user `ops`) makes Redis fork a point-in-time
snapshot, the same full sync a replica gets, and streams it out; nothing is paused and
the copy is consistent, which copying the AOF files of a running server would not be.
The file lands in `backups/redis-<UTC time>.rdb` with a sha256sum-format checksum
beside it, written only after the stream ended and the RDB header checked out.

Restore: checks the checksum first, then stops the wallet-api replicas (no money moves
while the data changes), stops Redis, and in a one-off container on the Redis volume:
removes the AOF, loads the snapshot into a temporary Redis with the AOF off, switches
the AOF on (Redis rewrites it from the loaded data) and shuts that server down once the
rewrite is done. The stack then starts as usual, from the new AOF. Money moved after the
backup is gone: that is what a restore means; idempotent replays of requests from
before the backup still answer with their stored responses.

With `make up-ha` running (its Sentinels are up), both work on the HA topology: the
backup streams from the `redis` node (primary or replica: a replica holds every
acknowledged operation, WAIT saw to it), and the restore stops the Sentinels and every
data node first, restores into `redis`, empties the replicas and the Sentinels' state,
and starts `redis` as the primary again: the replicas resync from it and the Sentinels
watch it afresh. Restoring one node only would not do: a Sentinel would fail over to a
replica still holding the newer data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from stackctl import REPO_ROOT

RDB_MAGIC = b"REDIS"
COMPOSE_FILES = ("docker-compose.traefik.yml", "docker-compose.yml")
HA_FILE = "docker-compose.ha.yml"
HA_REPLICAS = ("redis-replica-1", "redis-replica-2")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
ADMIN_CLI = 'redis-cli --no-auth-warning --user ops --pass "$REDIS_ADMIN_PASSWORD"'

# Runs as the redis user in a one-off container of the redis service, with the redis-data
# volume at /data (owned by redis, mode 700) and the snapshot on stdin.
RESTORE_SCRIPT = r"""
set -eu
rm -rf /data/appendonlydir /data/appendonly.aof /data/dump.rdb /data/redis-ha.conf
cat > /data/dump.rdb
redis-server --port 6390 --bind 127.0.0.1 --dir /data --dbfilename dump.rdb \
  --appendonly no --daemonize yes --logfile /tmp/restore.log \
  --user default on nopass "~*" "&*" +@all
i=0
until redis-cli -p 6390 ping 2>/dev/null | grep -q PONG; do
  i=$((i + 1)); [ "$i" -lt 300 ] || { tail -5 /tmp/restore.log; exit 1; }; sleep 0.1
done
keys=$(redis-cli -p 6390 dbsize)
redis-cli -p 6390 config set appendonly yes >/dev/null
i=0
until redis-cli -p 6390 info persistence | grep -q 'aof_rewrite_in_progress:0' \
  && redis-cli -p 6390 info persistence | grep -q 'aof_rewrite_scheduled:0' \
  && [ -d /data/appendonlydir ]; do
  i=$((i + 1)); [ "$i" -lt 600 ] || { echo "AOF rewrite did not finish"; exit 1; }; sleep 0.1
done
redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true
rm -f /data/dump.rdb
echo "restored $keys keys"
"""


class BackupError(RuntimeError):
    """One line for the user; nothing else was changed when it is raised before a step
    that changes data."""


def _compose(*args: str, ha: bool = False) -> list[str]:
    cmd = ["docker", "compose"]
    for name in (*COMPOSE_FILES, HA_FILE) if ha else COMPOSE_FILES:
        cmd += ["-f", str(REPO_ROOT / name)]
    return [*cmd, *args]


def ha_running() -> bool:
    """Whether the stack runs with the Redis HA overlay (`make up-ha`): its Sentinels
    have containers. Compose run with the wrong files would recreate the services."""
    proc = subprocess.run(  # noqa: S603
        _compose("ps", "-q", *SENTINELS, ha=True), capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _run(cmd: Sequence[str], stdin: IO[bytes] | None = None) -> str:
    proc = subprocess.run(  # noqa: S603 (docker, with arguments built here)
        list(cmd), capture_output=True, check=False, stdin=stdin
    )  # fmt: skip
    stdout = proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        last = (stderr or stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise BackupError(f"{' '.join(cmd[:4])} ... failed: {last[0]}")
    return stdout


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".sha256")


def verify(snapshot: Path) -> str:
    """The snapshot's sha256 if it matches its checksum file and looks like an RDB."""
    if not snapshot.is_file():
        raise BackupError(f"{snapshot}: no such file")
    sums = checksum_path(snapshot)
    if not sums.is_file():
        raise BackupError(f"{sums}: missing (every backup has one; refusing an unverified file)")
    try:
        words = sums.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"{sums}: cannot be read as a checksum file ({exc})") from None
    expected = words[0] if words else ""
    actual = sha256_file(snapshot)
    if actual != expected:
        raise BackupError(f"{snapshot}: sha256 {actual[:12]}... does not match {sums.name}")
    with snapshot.open("rb") as f:
        if f.read(len(RDB_MAGIC)) != RDB_MAGIC:
            raise BackupError(f"{snapshot}: not a Redis RDB snapshot")
    return actual


def backup(directory: Path, now: dt.datetime | None = None) -> Path:
    """Stream a snapshot into `directory`; returns its path."""
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(mode=0o700, exist_ok=True)
    target = directory / f"redis-{now:%Y%m%dT%H%M%SZ}.rdb"
    partial = target.with_suffix(".rdb.partial")
    ha = ha_running()
    with partial.open("wb") as out:
        proc = subprocess.run(  # noqa: S603
            _compose("exec", "-T", "redis", "sh", "-c", f"{ADMIN_CLI} --rdb - 2>/dev/null", ha=ha),
            stdout=out, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
    with partial.open("rb") as f:
        header = f.read(len(RDB_MAGIC))
    if proc.returncode != 0 or header != RDB_MAGIC:
        partial.unlink(missing_ok=True)
        raise BackupError(
            f"redis-cli --rdb failed (exit {proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()[-200:] or 'no RDB data'}"
            "; is the stack up?"
        )
    partial.chmod(0o600)
    partial.rename(target)
    checksum_path(target).write_text(f"{sha256_file(target)}  {target.name}\n")
    return target


def restore(snapshot: Path) -> str:
    """Put `snapshot` back as the stack's Redis data; returns what the loader said."""
    verify(snapshot)
    snapshot = snapshot.resolve()
    ha = ha_running()
    others = (*SENTINELS, *HA_REPLICAS) if ha else ()
    _run(_compose("stop", "wallet-api", *others, ha=ha))
    _run(_compose("stop", "redis", ha=ha))
    with snapshot.open("rb") as stdin:
        out = _run(
            _compose("run", "--rm", "--no-deps", "-T", "--user", "redis", "--entrypoint", "sh",
                     "redis", "-c", RESTORE_SCRIPT, ha=ha),
            stdin=stdin,
        )  # fmt: skip
    for service in others:  # replicas resync from `redis`; Sentinels start watching it
        _run(_compose("run", "--rm", "--no-deps", "-T", "--user", "redis", "--entrypoint", "sh",
                      service, "-c", "find /data -mindepth 1 -delete", ha=ha))  # fmt: skip
    _run(_compose("up", "-d", "--wait", "redis", ha=ha))
    _run(_compose("up", "-d", "--wait", *others, "wallet-api", ha=ha))
    return out.strip().splitlines()[-1] if out.strip() else "restored"

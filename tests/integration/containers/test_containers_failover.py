"""Redis failover under load, nothing lost, nothing doubled: the topology of
docker-compose.ha.yml (a primary, 2 replicas, 3 Sentinels; wallet-api through
Sentinel, acknowledging money only once WAIT confirms a replica has it).

8 client threads deposit with idempotent retries (the same Idempotency-Key on
connection errors, 502/503/504 and 409 in-use) while the primary is (1) killed
with SIGKILL and restarted, (2) cut off the network and healed. Afterwards every
ledger holds exactly the acknowledged deposits: balance = acknowledged = ledger
entries, on every node. Each test prints the unavailability window (the longest
time without an acknowledged deposit around the fault) and the answers counted.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from containers_support import (
    LOAD_SCALE,
    Op,
    Progress,
    Replicas,
    Result,
    create_wallet,
    reconcile,
    report,
    run_load,
    send,
    session,
)

if TYPE_CHECKING:  # conftest is pytest's to import, not ours
    from conftest import HaNode, HaStack

pytestmark = pytest.mark.containers

CLIENTS = 8
OPS_PER_CLIENT = 80 * LOAD_SCALE  # 640 deposits per test
WALLETS = 4
FAULT_AT = 0.25  # of all ops answered: inject the fault
GATE_AT = 0.7  # of each client's ops: wait here until the fault is repaired
LOAD_DEADLINE_S = 120
PROMOTION_TIMEOUT_S = 30  # Sentinel: 3 s down-after + election + promotion, on a busy 2-core box


def _plans(seed: int, wallets: list[str]) -> list[list[Op]]:
    rng = random.Random(seed)
    return [
        [Op("deposit", rng.choice(wallets), rng.randint(1, 999)) for _ in range(OPS_PER_CLIENT)]
        for _ in range(CLIENTS)
    ]


def _wait(what: str, check: Any, timeout: float) -> float:
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # a node that is down or starting
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not true after {timeout}s")
        time.sleep(0.1)


def _longest_gap(progress: Progress, start: float, end: float) -> float:
    """Longest time without an acknowledged deposit between a bit before the fault and
    the moment deposits went through again (later gaps are the clients waiting for the
    repair at GATE_AT, not unavailability)."""
    times = sorted([*(t for t in progress.acked_at if start - 5 <= t <= end), end])
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def _run(ha: HaStack, seed: int, fault: Any) -> tuple[Any, list[str], list[Result], dict[str, Any]]:
    http = session()
    key = ha.api_keys[0]
    wallets = [create_wallet(http, ha.urls()[i % 2], key) for i in range(WALLETS + 1)]
    funding = [send(http, Replicas(ha.urls), Op("deposit", w, 1), key) for w in wallets]
    assert all(r.status == 200 for r in funding), [r.responses for r in funding]
    probe_wallet = wallets.pop()  # the fault's own deposits: when do they go through again?
    progress = Progress()
    repaired = threading.Event()
    info: dict[str, Any] = {}
    failure: list[BaseException] = []

    def recovered() -> None:
        """A deposit of the fault thread, retried with its key until acknowledged: the
        load's clients may be waiting at GATE_AT, this one does not."""
        result = send(
            session(), Replicas(ha.urls), Op("deposit", probe_wallet, 1), key, budget_s=60
        )
        assert result.status == 200, result.retry_reasons
        funding.append(result)
        info["recovered_at"] = time.monotonic()

    def chaos() -> None:
        try:
            total = CLIENTS * OPS_PER_CLIENT
            assert progress.wait_for(int(total * FAULT_AT), timeout=60), "load did not get going"
            info["faulted_after_ops"] = progress.done
            fault(progress, info, recovered)
        except BaseException as exc:
            failure.append(exc)
        finally:
            repaired.set()

    controller = threading.Thread(target=chaos, daemon=True)
    controller.start()
    load = run_load(
        Replicas(ha.urls),
        _plans(seed, wallets),
        key,
        deadline_s=LOAD_DEADLINE_S,
        progress=progress,
        gate=(int(OPS_PER_CLIENT * GATE_AT), repaired),
    )
    controller.join(timeout=60)
    if failure:
        raise failure[0]
    unresolved = [r for r in load.results if not r.definitive]
    assert not unresolved, (
        f"{len(unresolved)} without a definitive answer: {unresolved[0].retry_reasons}"
    )
    assert len(load.results) == CLIENTS * OPS_PER_CLIENT
    info["unavailable_s"] = round(_longest_gap(progress, info["fault_at"], info["recovered_at"]), 2)
    return load, [*wallets, probe_wallet], funding, info


def _books(ha: HaStack, wallets: list[str], results: list[Result], info: dict[str, Any]) -> Any:
    """balance = acknowledged = ledger entries, through the API and on every node."""
    http = session()
    books = reconcile(http, ha.urls(), ha.api_keys[0], wallets, results)
    acked = [r for r in results if r.acked]
    assert books.entries == len(acked), (books.entries, len(acked))
    assert books.total_balance == sum(r.op.amount for r in acked)
    # Every node holds the same balances (the replicas caught up with the primary).
    primary = ha.primary()
    want = {w: ha.nodes[primary].redis_cli("hget", f"w:{{w:{w}}}", "balance") for w in wallets}
    for name, node in ha.nodes.items():
        _wait(
            f"{name} has the primary's balances",
            lambda node=node: all(
                node.redis_cli("hget", f"w:{{w:{w}}}", "balance") == b for w, b in want.items()
            ),
            timeout=30,
        )
    info["nodes_agree"] = sorted(ha.nodes)
    return books


def _line(title: str, load: Any, books: Any, info: dict[str, Any]) -> None:
    answers: Counter[str] = Counter()
    for r in load.results:
        answers.update(r.retry_reasons)
    summary = load.summary()
    report(
        title,
        {
            "unavailable_s": info.pop("unavailable_s"),
            "acknowledged": summary["acknowledged"],
            "acknowledged_by_replay": summary["acknowledged_by_replay"],
            "ledger_entries": books.entries,
            "total_money": books.total_balance,
            "lost": books.lost,
            "doubled": books.unexpected,
            "retried_ops": summary["retried_ops"],
            "retries": dict(sorted(answers.items())),
            "seconds": summary["seconds"],
            "fault": {k: v for k, v in info.items() if k not in ("fault_at", "recovered_at")},
        },
    )


def _promoted(ha: HaStack, old: str) -> bool:
    new = ha.primary()
    return new != old and ha.role(new) == "master"


def test_sigkill_of_the_primary_loses_and_doubles_nothing(ha_stack: HaStack) -> None:
    ha = ha_stack
    ha.wait_healthy()

    def fault(progress: Progress, info: dict[str, Any], recovered: Any) -> None:
        old = ha.primary()
        info["killed"] = old
        info["fault_at"] = time.monotonic()
        ha.nodes[old].kill()
        info["promoted_after_s"] = round(
            _wait("a replica promoted", lambda: _promoted(ha, old), PROMOTION_TIMEOUT_S), 2
        )
        info["new_primary"] = ha.primary()
        recovered()
        info["deposits_again_after_s"] = round(info["recovered_at"] - info["fault_at"], 2)
        ha.nodes[old].start()  # the crashed primary comes back: as a replica
        info["old_primary_rejoined_as_replica_s"] = round(
            _wait("old primary replicating", lambda: ha.role(old) == "slave"
                  and "master_link_status:up" in ha.nodes[old].redis_cli("info", "replication"), 60), 2
        )  # fmt: skip

    load, wallets, funding, info = _run(ha, 71, fault)
    books = _books(ha, wallets, [*funding, *load.results], info)
    assert any(
        k.startswith("503") or "Connection" in k for r in load.results for k in r.retry_reasons
    )
    _line("redis primary SIGKILL (Sentinel failover)", load, books, info)


def test_primary_cut_off_the_network_and_healed(ha_stack: HaStack) -> None:
    ha = ha_stack
    ha.wait_healthy()

    def fault(progress: Progress, info: dict[str, Any], recovered: Any) -> None:
        old = ha.primary()
        node = ha.nodes[old]
        info["isolated"] = old
        info["fault_at"] = time.monotonic()
        node.disconnect()
        info["promoted_after_s"] = round(
            _wait("a replica promoted", lambda: _promoted(ha, old), PROMOTION_TIMEOUT_S), 2
        )
        info["new_primary"] = ha.primary()
        recovered()
        info["deposits_again_after_s"] = round(info["recovered_at"] - info["fault_at"], 2)
        # min-replicas-to-write: the isolated old primary refuses writes once its replicas
        # are silent for min-replicas-max-lag seconds. Nothing here could reach it anyway.
        _wait("isolated primary refuses writes",
              lambda: "NOREPLICAS" in node.redis_cli("set", "isolation-probe", "x"), 30)  # fmt: skip
        info["isolated_primary_refused_writes_by_s"] = round(time.monotonic() - info["fault_at"], 2)
        node.reconnect()  # heal: the Sentinels turn it into a replica of the new primary
        info["healed_rejoined_as_replica_s"] = round(
            _wait("healed primary replicating", lambda: ha.role(old) == "slave"
                  and "master_link_status:up" in node.redis_cli("info", "replication"), 60), 2
        )  # fmt: skip
        # Whatever it held alone was replaced by the new primary's data.
        assert node.redis_cli("exists", "isolation-probe") == "0"

    load, wallets, funding, info = _run(ha, 72, fault)
    books = _books(ha, wallets, [*funding, *load.results], info)
    _line("redis primary network-disconnected, healed (Sentinel failover)", load, books, info)


def test_every_replica_starts_again_after_the_failovers(ha_stack: HaStack) -> None:
    """Sentinel's CONFIG REWRITE (on each promotion and re-pointing above) writes the
    ACL users into the node's redis-ha.conf, and compose passes them again as --user
    flags: Redis refuses a user defined twice, so a node restarted after a failover did
    not start at all. Each replica is killed and started again, and must replicate."""
    ha = ha_stack
    ha.wait_healthy()
    primary = ha.primary()
    replicas = {n: node for n, node in ha.nodes.items() if n != primary}

    def users_in_file(node: HaNode) -> int:
        # As redis: the file is its own (mode 600), and root has no CAP_DAC_OVERRIDE here.
        _code, out = node.docker.exec_run(
            ["grep", "-c", "^user ", "/data/redis-ha.conf"], user="redis"
        )
        return int(out.decode().strip() or 0)

    # The failovers above rewrote at least one of them (else this test shows nothing).
    assert any(users_in_file(node) > 0 for node in replicas.values())
    for name, node in replicas.items():
        node.kill()
        node.start()
        took = _wait(
            f"{name} replicating after its restart",
            lambda node=node, name=name: (
                ha.role(name) == "slave"
                and "master_link_status:up" in node.redis_cli("info", "replication")
            ),
            60,
        )
        print(f"\n{name} restarted after the failovers, replicating again in {took:.1f}s")
        assert users_in_file(node) == 0  # the flags are the one source of the users
    ha.wait_healthy()

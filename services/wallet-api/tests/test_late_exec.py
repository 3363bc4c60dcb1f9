"""A lost EXEC reply whose bytes reach Redis LATE (after the store checked for
its write): the check is folded into every later attempt's WATCHed reads, so
the op lands exactly once whenever the late EXEC arrives. And WAIT: money is
acknowledged only once enough replicas confirm it.

The late EXEC is simulated faithfully on fakeredis: the held MULTI..EXEC runs
later on its own connection, which WATCHed the same keys when the original was
sent, so Redis applies or aborts it exactly as it would the delayed bytes. (The
containers suite holds real EXEC bytes in a TCP proxy: test_containers_faults.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis
from flask.testing import FlaskClient

from tests.helpers import ACTOR, TEST_KEYS, FakeRedis, auth, ref
from wallet_api import create_app
from wallet_api.config import Settings
from wallet_api.domain.ledger import EntryType
from wallet_api.domain.operations import Applied, Idempotency, MoneyOp, Replayed
from wallet_api.service import render
from wallet_api.store import (
    REPLICATION_MARK,
    OutcomeUnknown,
    RetryPolicy,
    WalletStore,
    wallet_key,
)


class HeldExec:
    """Holds the first MULTI..EXEC: it is not sent; the store sees its reply lost."""

    def __init__(self, server: fakeredis.FakeServer, watch: list[str]) -> None:
        self.late = FakeRedis(server=server).pipeline(transaction=True)
        self.watch = watch
        self.block: list[tuple[Any, ...]] | None = None
        self.landed: bool | None = None

    def hold(self, commands: list[tuple[Any, ...]]) -> None:
        self.late.watch(*self.watch)  # what the original connection had WATCHed
        self.block = [c for c in commands[1:] if c[0] not in ("EXEC", "WAIT")]

    def release(self) -> None:
        """The held bytes reach Redis now: applied, or aborted by WATCH."""
        assert self.block is not None and self.landed is None
        self.late.multi()
        for command in self.block:
            self.late.execute_command(*command)
        try:
            self.late.execute()
            self.landed = True
        except redis.WatchError:
            self.landed = False


def _script(monkeypatch: pytest.MonkeyPatch, held: HeldExec, when: str) -> Callable[[], list[str]]:
    """Hold the first EXEC; release it `when`: after the next attempt's reads
    ("after-check") or after the next attempt's EXEC ("after-commit")."""
    real = WalletStore._roundtrip
    seen: list[str] = []

    def roundtrip(self: WalletStore, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        if commands[0] == ("MULTI",) and held.block is None:
            seen.append("exec-held")
            held.hold(commands)
            raise redis.ConnectionError("reset by peer while reading EXEC's reply")
        replies = real(self, conn, commands)
        release_after = "WATCH" if when == "after-check" else "MULTI"
        if held.block is not None and held.landed is None and commands[0][0] == release_after:
            seen.append("late-exec")
            held.release()
        seen.append(commands[0][0])
        return replies

    monkeypatch.setattr(WalletStore, "_roundtrip", roundtrip)
    return lambda: seen


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def store(server: fakeredis.FakeServer) -> WalletStore:
    s = WalletStore(FakeRedis(server=server), retry=RetryPolicy(base_delay=0.0001))
    s.create_wallet(ref("w"), "EUR")
    return s


@pytest.mark.parametrize("when", ["after-check", "after-commit"])
def test_an_unkeyed_deposit_lands_once_whenever_its_late_exec_arrives(
    store: WalletStore, server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    held = HeldExec(server, [wallet_key(ref("w"))])
    seen = _script(monkeypatch, held, when)
    outcome = store.commit([MoneyOp(EntryType.DEPOSIT, "w", 100, actor=ACTOR)], render)[0]
    assert isinstance(outcome, Applied)
    entries, _ = store.history(ref("w"), before_seq=None, limit=10)
    assert [e.amount for e in entries] == [100]
    assert store.get_wallet(ref("w")).balance == 100  # type: ignore[union-attr]
    assert entries[0] == outcome.entry  # the answer is the entry that landed
    if when == "after-check":
        # The late EXEC landed after the second attempt's probe: that attempt's EXEC
        # lost on WATCH, the third attempt's probe found the late write.
        assert held.landed is True
        assert seen() == ["WATCH", "exec-held", "late-exec", "WATCH", "MULTI", "WATCH", "UNWATCH"]
    else:
        # Our second attempt committed first: the late EXEC's WATCH aborted it.
        assert held.landed is False
        assert seen() == ["WATCH", "exec-held", "WATCH", "late-exec", "MULTI"]


def test_a_keyed_transfer_lands_once_too(
    store: WalletStore, server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.create_wallet(ref("v"), "EUR")
    store.commit([MoneyOp(EntryType.DEPOSIT, "w", 50, actor=ACTOR)], render)
    idem = Idempotency("w:{w:w}:idem:s:k", "fp")
    held = HeldExec(server, [wallet_key(ref("w")), wallet_key(ref("v")), idem.key])
    _script(monkeypatch, held, "after-check")
    from wallet_api.domain.operations import TransferApplied, TransferOp

    outcome = store.commit([TransferOp("w", "v", 20, idem, actor=ACTOR)], render)[0]
    assert isinstance(outcome, TransferApplied)
    monkeypatch.undo()
    again = store.commit([TransferOp("w", "v", 20, idem, actor=ACTOR)], render)[0]
    assert isinstance(again, Replayed)
    assert again.response == render(TransferOp("w", "v", 20, idem, actor=ACTOR), outcome)
    assert (store.get_wallet(ref("w")).balance, store.get_wallet(ref("v")).balance) == (30, 20)  # type: ignore[union-attr]


def test_without_the_fold_the_same_script_would_pay_twice(
    store: WalletStore, server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: a store that checks its lost EXEC once, before the late bytes
    arrive, and then retries blindly, deposits twice. (What the fold prevents;
    also shows the simulation is able to fail.)"""
    held = HeldExec(server, [wallet_key(ref("w"))])
    _script(monkeypatch, held, "after-check")
    monkeypatch.setattr("wallet_api.store._probe_matches", lambda decided, reply: False)
    store.commit([MoneyOp(EntryType.DEPOSIT, "w", 100, actor=ACTOR)], render)
    # Held EXEC landed after the check, the retry saw no probe hit: but its own EXEC
    # failed WATCH, so the next attempt planned on top of the late write.
    assert held.landed is True
    entries, _ = store.history(ref("w"), before_seq=None, limit=10)
    assert [e.amount for e in entries] == [100, 100]  # paid twice


# -- WAIT ------------------------------------------------------------------------------


class Replicas:
    """Answers WAIT (fakeredis has none) with how many replicas 'confirmed'."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, confirmed: int) -> None:
        self.confirmed = confirmed
        self.waits: list[tuple[Any, ...]] = []
        self.marks = 0
        real = WalletStore._roundtrip

        def roundtrip(store: WalletStore, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
            sent = [c for c in commands if c[0] != "WAIT"]
            self.marks += sum(1 for c in sent if c[:2] == ("PUBLISH", REPLICATION_MARK))
            replies = real(store, conn, sent)
            for c in commands:
                if c[0] == "WAIT":
                    self.waits.append(c)
                    replies.append(self.confirmed)
            return replies

        monkeypatch.setattr(WalletStore, "_roundtrip", roundtrip)


@pytest.fixture
def replicated_client(fake_redis: FakeRedis) -> FlaskClient:
    settings = Settings(
        redis_url="redis://unused:6379/0",
        api_keys=TEST_KEYS,
        log_level="WARNING",
        validate_responses=True,
        redis_min_replicas_ack=1,
        redis_wait_timeout_ms=250,
    )
    app = create_app(settings, redis_client=fake_redis)
    with app.test_client() as c:
        yield c


def test_money_is_acknowledged_only_after_wait_confirms(
    replicated_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = replicated_client
    replicas = Replicas(monkeypatch, confirmed=1)
    created = c.post("/wallets", json={"currency": "EUR", "id": "w"}, headers=auth())
    assert created.status_code == 201
    r = c.post("/wallets/w/deposit", json={"amount": 10}, headers=auth(**{"Idempotency-Key": "a"}))
    assert r.status_code == 200
    assert replicas.waits[-1] == ("WAIT", 1, 250)

    replicas.confirmed = 0  # the replica is gone: WAIT times out
    headers = auth(**{"Idempotency-Key": "b"})
    r = c.post("/wallets/w/deposit", json={"amount": 5}, headers=headers)
    assert r.status_code == 503, r.get_json()
    assert r.get_json()["type"] == "urn:wallet-stack:problem:outcome-unknown"
    assert r.headers["Retry-After"] == "1"
    # The commit did happen on the primary; a retry replays it -- but the replay
    # reports data a failover could still lose, so it waits for WAIT as well.
    marks = replicas.marks
    r = c.post("/wallets/w/deposit", json={"amount": 5}, headers=headers)
    assert r.status_code == 503
    assert replicas.marks == marks + 1  # PUBLISH before WAIT: this connection only read
    # Also the replay of money acknowledged earlier: never a 2xx while unconfirmed.
    r = c.post("/wallets/w/deposit", json={"amount": 10}, headers=auth(**{"Idempotency-Key": "a"}))
    assert r.status_code == 503

    replicas.confirmed = 1  # the replica is back
    r = c.post("/wallets/w/deposit", json={"amount": 5}, headers=headers)
    assert r.status_code == 200 and r.headers["Idempotent-Replayed"] == "true"
    assert c.get("/wallets/w", headers=auth()).get_json()["balance"] == 15  # once each


def test_wallet_creation_waits_too(
    replicated_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    Replicas(monkeypatch, confirmed=0)
    r = replicated_client.post("/wallets", json={"currency": "EUR", "id": "x"}, headers=auth())
    assert r.status_code == 503
    assert r.get_json()["type"] == "urn:wallet-stack:problem:outcome-unknown"


def test_a_lost_wait_reply_after_a_commit_is_outcome_unknown(
    store: WalletStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.min_replicas_ack = 1
    real = WalletStore._roundtrip

    def roundtrip(self: WalletStore, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        if commands[-1][0] != "WAIT":
            return real(self, conn, commands)
        replies = real(self, conn, commands[:-1])  # EXEC committed ...
        from wallet_api.store import _Broken

        raise _Broken(redis.ConnectionError("primary died during WAIT"), replies)

    monkeypatch.setattr(WalletStore, "_roundtrip", roundtrip)
    with pytest.raises(OutcomeUnknown):
        store.commit([MoneyOp(EntryType.DEPOSIT, "w", 1, actor=ACTOR)], render)

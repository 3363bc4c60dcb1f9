"""Redis persistence for wallets, ledgers and idempotency records.

Key layout (all keys of one wallet carry the hash tag ``{w:<tenant>:<id>}``,
so they share a Redis Cluster slot; wallet ids are unique per tenant):

    w:{w:<tenant>:<id>}              HASH   currency, balance, seq, created_at, nonce
    w:{w:<tenant>:<id>}:ledger       ZSET   member = entry JSON (has its id), score = seq
    w:{w:<tenant>:<id>}:idem:<key>   STRING idempotency record JSON, with TTL

The tenant ``default`` keeps the layout from before tenants, ``w:{w:<id>}``:
the wallets created then are its wallets, with no data to migrate. (Neither
tenants nor wallet ids contain ':', so the two forms never meet.) Idempotency
records written then (``...:idem:<api key scope>:<key>``) are still read, see
domain.operations.Idempotency.

Money moves in batches (see combiner.py): one WATCH/MULTI per batch writes every
op's balance change, ledger entry and idempotency record together. A batch and
a transfer may span wallets in different slots, so the store needs one Redis
primary (standalone, or Sentinel-managed); it does not run on Redis Cluster.

The transaction talks to one pooled connection directly: WATCH and the reads
go out in one round trip, MULTI..EXEC in a second. (redis-py's Pipeline needs
one round trip per command between WATCH and MULTI, and its
``Redis.transaction()`` helper retries forever.) A connection error while
reading EXEC's reply is ambiguous -- the write may have committed -- so before
any retry the store looks for what its own MULTI wrote (its ledger entry, or
the exact idempotency record) and never applies money twice; when Redis cannot
be asked, it raises OutcomeUnknown rather than claim that nothing changed.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import redis

try:  # redis[hiredis] is a dependency; without it redis-py's own packer is used
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None  # type: ignore[assignment]

from wallet_api.domain.ledger import LedgerEntry, Wallet, WalletExists
from wallet_api.domain.operations import (
    DEFAULT_TENANT,
    Op,
    Outcome,
    Render,
    StoredResponse,
    WalletRef,
)
from wallet_api.domain.planner import BatchPlan, IdempotencyRecord, WalletState, plan_batch

_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class StoreUnavailable(Exception):
    """Redis could not be reached; nothing was changed by this request."""


class ContentionExhausted(Exception):
    """Every WATCH/MULTI attempt lost a race; nothing was changed."""


class OutcomeUnknown(Exception):
    """EXEC was sent, its reply was lost and Redis cannot be asked whether it
    committed: the operation may or may not have been applied."""


def wallet_key(wallet: WalletRef) -> str:
    if wallet.tenant == DEFAULT_TENANT:  # the layout from before tenants (docstring)
        return f"w:{{w:{wallet.id}}}"
    return f"w:{{w:{wallet.tenant}:{wallet.id}}}"


def ledger_key(wallet: WalletRef) -> str:
    return f"{wallet_key(wallet)}:ledger"


def idempotency_key(wallet: WalletRef, key_digest: str) -> str:
    """Scoped per tenant (by the wallet key) and per wallet, not per API key: a
    retry sent with a rotated key of the same tenant finds the record."""
    return f"{wallet_key(wallet)}:idem:{key_digest}"


def legacy_idempotency_key(wallet: WalletRef, api_key_scope: str, key_digest: str) -> str:
    """Where the record was kept while records were scoped per API key."""
    return f"{wallet_key(wallet)}:idem:{api_key_scope}:{key_digest}"


class StoreMetrics(Protocol):
    def watch_retry(self, operation: str) -> None: ...
    def commit(self, operation: str, seconds: float, batch_size: int) -> None: ...


class _NoMetrics:
    def watch_retry(self, operation: str) -> None:
        pass

    def commit(self, operation: str, seconds: float, batch_size: int) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    base_delay: float = 0.002
    max_delay: float = 0.05

    def delay(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retrying replicas apart.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _decode(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _Plan:
    """What one attempt decided: per-op outcomes and the commands of its MULTI."""

    outcomes: list[Outcome]
    writes: list[tuple[Any, ...]]
    # A read whose reply equals probe_expect only if this MULTI committed: any
    # one write of the MULTI proves all of it landed.
    probe: tuple[str, ...] | None
    probe_expect: str | None = None


@contextmanager
def _unavailable_as_error() -> Iterator[None]:
    try:
        yield
    except _CONNECTION_ERRORS as exc:
        raise StoreUnavailable(str(exc)) from exc


class WalletStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        idempotency_ttl: int = 86400,
        retry: RetryPolicy | None = None,
        metrics: StoreMetrics | None = None,
        clock: Callable[[], str] = _now,
        health_client: redis.Redis | None = None,
    ) -> None:
        self.redis = client
        # Probes need a fast "no": a separate client with a short timeout and no
        # retry, so a hung Redis answers /readyz with 503 within the probe timeout.
        self.health_client = health_client or client
        self.idempotency_ttl = idempotency_ttl
        self.retry = retry or RetryPolicy()
        self.metrics: StoreMetrics = metrics or _NoMetrics()
        self.clock = clock

    # -- reads -------------------------------------------------------------

    def ping(self) -> bool:
        try:
            return bool(self.health_client.ping())
        except redis.RedisError:
            return False

    def get_wallet(self, wallet: WalletRef) -> Wallet | None:
        with _unavailable_as_error():
            raw = self.redis.hmget(wallet_key(wallet), "currency", "balance", "created_at")
        currency, balance, created_at = (_decode(v) for v in raw)
        if currency is None or balance is None or created_at is None:
            return None
        return Wallet(wallet.id, currency, int(balance), created_at)

    def history(
        self, wallet: WalletRef, *, before_seq: int | None, limit: int
    ) -> tuple[list[LedgerEntry], int | None]:
        """Entries newest first; returns (page, seq to pass as the next cursor)."""
        upper: str | int = f"({before_seq}" if before_seq is not None else "+inf"
        with _unavailable_as_error():
            raw = self.redis.zrevrangebyscore(
                ledger_key(wallet), upper, "-inf", start=0, num=limit + 1
            )
        entries = [LedgerEntry.from_dict(json.loads(r)) for r in cast(list[bytes], raw)[:limit]]
        next_cursor = entries[-1].seq if len(raw) > limit else None
        return entries, next_cursor

    # -- wallets -----------------------------------------------------------

    def create_wallet(self, wallet: WalletRef, currency: str) -> Wallet:
        """Create an empty wallet; WalletExists if the tenant has one with this id."""
        wallet_id = wallet.id
        created_at = self.clock()
        nonce = uuid.uuid4().hex  # recognises our own commit after a lost EXEC reply
        key = wallet_key(wallet)

        def plan(replies: list[Any]) -> _Plan:
            existing = _decode(replies[0])
            if existing == nonce:  # an earlier attempt committed; its reply was lost
                return _Plan([], [], None)
            if existing is not None or replies[1]:
                raise WalletExists(f"wallet {wallet_id!r} already exists")
            fields = ["currency", currency, "balance", 0, "seq", 0]
            write = ("HSET", key, *fields, "created_at", created_at, "nonce", nonce)
            return _Plan([], [write], ("HGET", key, "nonce"), nonce)

        self._transact("create", [key], [("HGET", key, "nonce"), ("EXISTS", key)], plan)
        return Wallet(wallet_id, currency, 0, created_at)

    # -- money -------------------------------------------------------------

    def commit(self, ops: Sequence[Op], render: Render) -> list[Outcome]:
        """Apply ops in order, all in one WATCH/MULTI; one outcome per op.

        The rules are domain.planner's; this reads what they need and writes
        what they decided: ledger entries, balances, idempotency records.
        """
        wallet_ids = list(dict.fromkeys(w for op in ops for w in op.wallets))
        watched_records = list(dict.fromkeys(op.idempotency.key for op in ops if op.idempotency))
        # Records from before tenants are read, not WATCHed: only pods of the previous
        # version write them, and those do not see our records either (README, upgrading).
        legacy = [op.idempotency.legacy_key for op in ops if op.idempotency]
        record_keys = list(dict.fromkeys([*watched_records, *(k for k in legacy if k)]))
        reads: list[tuple[Any, ...]] = [
            ("HMGET", wallet_key(w), "currency", "balance", "seq") for w in wallet_ids
        ]
        if record_keys:
            reads.append(("MGET", *record_keys))
        # Keys whose record was absent when this call first looked: finding one
        # there on a retry means a concurrent request with that key won.
        absent_at_first_read: set[str] | None = None

        def plan(replies: list[Any]) -> _Plan:
            nonlocal absent_at_first_read
            states: dict[WalletRef, WalletState | None] = {}
            for wallet_id, (currency, balance, seq) in zip(wallet_ids, replies, strict=False):
                states[wallet_id] = (
                    WalletState(currency.decode(), int(balance or 0), int(seq or 0))
                    if currency is not None
                    else None
                )
            raw = dict(zip(record_keys, replies[-1], strict=True)) if record_keys else {}
            if absent_at_first_read is None:
                absent_at_first_read = {k for k, v in raw.items() if v is None}
            records = {k: _load_record(v) for k, v in raw.items()}
            return self._writes(
                plan_batch(
                    ops,
                    states,
                    records,
                    absent_at_first_read=absent_at_first_read,
                    now=self.clock(),
                    render=render,
                ),
                states,
            )

        keys = [wallet_key(w) for w in wallet_ids] + watched_records
        label = _batch_label(ops)
        started = time.perf_counter()
        outcomes = self._transact(label, keys, reads, plan)
        self.metrics.commit(label, time.perf_counter() - started, len(ops))
        return outcomes

    def _writes(self, batch: BatchPlan, states: dict[WalletRef, WalletState | None]) -> _Plan:
        """The MULTI block for a planned batch, and a probe for one of its writes."""
        plan = _Plan(batch.outcomes, [], None)
        for wallet, entry in batch.entries:
            member = json.dumps(entry.to_dict())
            plan.writes.append(("ZADD", ledger_key(wallet), entry.seq, member))
            if plan.probe is None:
                plan.probe = ("ZSCORE", ledger_key(wallet), member)
                plan.probe_expect = str(entry.seq)
        for key, record in batch.records:
            value = _dump_record(record)
            plan.writes.append(("SET", key, value, "EX", self.idempotency_ttl))
            if plan.probe is None:
                plan.probe, plan.probe_expect = ("GET", key), value
        for wallet_id, state in states.items():
            if state is not None and state.changed:
                plan.writes.append(
                    ("HSET", wallet_key(wallet_id), "balance", state.balance, "seq", state.seq)
                )
        return plan

    # -- the transaction -----------------------------------------------------

    def _transact(
        self,
        label: str,
        watch: Sequence[str],
        reads: Sequence[tuple[Any, ...]],
        plan: Callable[[list[Any]], _Plan],
    ) -> list[Outcome]:
        """WATCH + reads (one round trip), plan, MULTI..EXEC (one round trip).

        Retries on conflict with jittered backoff, at most max_attempts times.
        """
        pool: Any = self.redis.connection_pool
        for attempt in range(self.retry.max_attempts):
            decided: _Plan | None = None
            exec_sent = False
            conn: Any = None
            try:
                conn = pool.get_connection()
                replies = self._roundtrip(conn, [("WATCH", *watch), *reads])[1:]
                decided = plan(replies)
                if not decided.writes:
                    self._roundtrip(conn, [("UNWATCH",)])
                    return decided.outcomes
                block = [("MULTI",), *decided.writes, ("EXEC",)]
                exec_sent = True
                if self._roundtrip(conn, block)[-1] is not None:
                    return decided.outcomes
                conflict: Exception = redis.WatchError("watched key changed")
            except _CONNECTION_ERRORS as exc:
                if conn is not None:
                    conn.disconnect()  # its WATCH state is unknowable now
                    pool.release(conn)
                    conn = None
                if exec_sent and decided is not None:
                    try:
                        if self._landed(decided):
                            return decided.outcomes
                    except StoreUnavailable:
                        # Neither "applied" nor "nothing changed" would be true.
                        raise OutcomeUnknown(str(exc)) from exc
                if not self.ping():
                    raise StoreUnavailable(str(exc)) from exc
                conflict = exc
            except BaseException:
                if conn is not None:
                    conn.disconnect()  # never hand back a connection still WATCHing
                raise
            finally:
                if conn is not None:
                    pool.release(conn)
            self.metrics.watch_retry(label)
            time.sleep(self.retry.delay(attempt))
        raise ContentionExhausted(f"{self.retry.max_attempts} attempts lost races ({conflict})")

    def _roundtrip(self, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        conn.send_packed_command([_pack(commands)] if _hiredis else conn.pack_commands(commands))
        replies = [conn.read_response() for _ in commands]
        nested = replies[-1] if commands[-1][0] == "EXEC" and replies[-1] is not None else []
        for reply in (*replies, *nested):
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def _landed(self, decided: _Plan) -> bool:
        """After a lost EXEC reply: did our MULTI commit? (probe what it wrote)"""
        if decided.probe is None:
            return False
        with _unavailable_as_error():
            reply = cast(Any, self.redis).execute_command(*decided.probe)
        if isinstance(reply, float):  # ZSCORE: redis-py parses the score
            reply = str(int(reply))
        return _decode(reply) == decided.probe_expect


def _pack(commands: list[tuple[Any, ...]]) -> bytes:
    # One C call per command: redis-py's pack_commands() costs ~10 us per command
    # in Python, several times per money movement.
    assert _hiredis is not None
    return b"".join([_hiredis.pack_command(command) for command in commands])


def _batch_label(ops: Sequence[Op]) -> str:
    kinds = {op.operation for op in ops}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _dump_record(record: IdempotencyRecord) -> str:
    return json.dumps(
        {
            "fingerprint": record.fingerprint,
            "op": record.op_id,
            "status": record.response.status,
            "body": record.response.body,
        }
    )


def _load_record(raw: bytes | None) -> IdempotencyRecord | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return IdempotencyRecord(
        data["fingerprint"], data["op"], StoredResponse(data["status"], data["body"])
    )

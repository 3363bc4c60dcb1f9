"""Redis persistence for wallets, ledgers and idempotency records.

Key layout (all keys of one wallet carry the hash tag ``{w:<tenant>:<id>}``,
so they share a Redis Cluster slot; wallet ids are unique per tenant):

    w:{w:<tenant>:<id>}              HASH   currency, balance, seq, created_at, nonce
    w:{w:<tenant>:<id>}:ledger       ZSET   member = compact entry, score = seq
    w:{w:<tenant>:<id>}:idem:<key>   STRING compact idempotency record, with TTL

The tenant ``default`` keeps the layout from before tenants, ``w:{w:<id>}``:
the wallets created then are its wallets, with no data to migrate. (Neither
tenants nor wallet ids contain ':', so the two forms never meet.) Idempotency
records written then (``...:idem:<api key scope>:<key>``) are still read, see
domain.operations.Idempotency. The stored forms are at the end of this module.

Money moves in batches (see combiner.py): one WATCH/MULTI per batch writes every
op's balance change, ledger entry and idempotency record together. A batch and
a transfer may span wallets in different slots, so the store needs one Redis
primary (standalone, or Sentinel-managed); it does not run on Redis Cluster.

The transaction talks to one pooled connection directly: WATCH and the reads
go out in one round trip, MULTI..EXEC (and WAIT) in a second. (redis-py's
Pipeline needs one round trip per command between WATCH and MULTI, and its
``Redis.transaction()`` helper retries forever.)

A connection error while reading EXEC's reply is ambiguous: the write may have
committed, or its bytes may still be on their way (a stalled socket, a proxy)
and commit later. So the check for "did our MULTI land?" is not a single read:
every later attempt carries a probe for each earlier attempt's writes in its
WATCHed reads. An EXEC that arrives late either lands before such a read (the
probe sees it and that attempt's outcome is returned) or after a later attempt
committed, and then it aborts, because that commit changed a key it WATCHes.
When Redis cannot be asked, the store raises OutcomeUnknown rather than claim
that nothing changed.

With ``min_replicas_ack`` (Sentinel deployments), a commit counts only once
WAIT confirms that many replicas have it: a failover promotes a replica, and
money acknowledged from the primary alone would be lost with it. When WAIT
falls short, the commit happened on the primary but may not survive it: that
is OutcomeUnknown too, never a success.
"""

from __future__ import annotations

import base64
import calendar
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import redis

try:  # redis[hiredis] is a dependency; without it redis-py's own packer is used
    import hiredis as _hiredis
except ImportError:  # pragma: no cover
    _hiredis = None  # type: ignore[assignment]

from wallet_api.domain.ledger import (
    BalanceLimitExceeded,
    CurrencyMismatch,
    DomainRefusal,
    InsufficientFunds,
    LedgerEntry,
    SameWallet,
    Wallet,
    WalletExists,
)
from wallet_api.domain.operations import (
    DEFAULT_TENANT,
    Applied,
    Failed,
    Op,
    Outcome,
    Refused,
    Render,
    Replayed,
    StoredResponse,
    TransferApplied,
    WalletRef,
)
from wallet_api.domain.planner import BatchPlan, IdempotencyRecord, WalletState, plan_batch

_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError)
# Published (to nobody) before a WAIT that must cover data this connection only
# read: WAIT waits for the client's last write, and PUBLISH is replicated, is
# allowed under OOM and min-replicas-to-write, and changes no key.
REPLICATION_MARK = "wallet-stack:replication-mark"


class StoreUnavailable(Exception):
    """Redis could not be reached, or cannot take writes now (a replica, still
    loading, no primary); nothing was changed by this request."""


class StorageFull(Exception):
    """Redis refused the write: out of memory (maxmemory with noeviction) or
    unable to persist (MISCONF). Nothing was changed; reads still work."""


class ContentionExhausted(Exception):
    """Every WATCH/MULTI attempt lost a race; nothing was changed."""


class OutcomeUnknown(Exception):
    """The operation may or may not have been applied (and kept): EXEC was sent
    and its reply lost while Redis cannot be asked, or it committed on the
    primary but too few replicas confirmed it."""


class WalletUnavailable(Exception):
    """A wallet's (or idempotency record's) stored data cannot be read; nothing
    of the op was changed. Needs an operator, not a retry."""


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
    return _iso_ms(int(time.time() * 1000))


def _iso_ms(ms: int) -> str:
    """Epoch milliseconds as the API's timestamps: ISO 8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


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
    # Per write: the wallet it belongs to (a failed write taints that wallet's ops).
    owners: list[WalletRef] = field(default_factory=list)
    # Ops (by index) per wallet, to answer for a wallet whose write failed.
    ops_of: dict[WalletRef, list[int]] = field(default_factory=dict)
    # The answers report stored state (a replay): WAIT must cover it too.
    needs_replication: bool = False


@dataclass
class _Attempts:
    """What earlier attempts of one transaction left behind."""

    lost: list[_Plan] = field(default_factory=list)  # EXEC reply lost; probed from now on
    ambiguous: bool = False  # some EXEC may have committed unseen


class _Broken(redis.ConnectionError):
    """The connection failed part-way through a round trip; ``replies`` holds
    the replies read before it did."""

    def __init__(self, cause: Exception, replies: list[Any]) -> None:
        super().__init__(str(cause))
        self.replies = replies


# First word of an error reply -> what it means for a write that got it.
_FULL = ("OOM", "MISCONF")  # the node cannot take more data: nothing was written
_UNAVAILABLE = ("READONLY", "LOADING", "MASTERDOWN", "NOREPLICAS", "BUSY", "TRYAGAIN")


def _node_error(error: redis.ResponseError) -> Exception | None:
    """The typed store error for an error reply about the node's state (not about
    a key), or None. redis-py strips the code of the errors it knows (OOM,
    READONLY, ...) into the exception class; EXECABORT carries the reason."""
    code = getattr(error, "status_code", None)
    text = str(error)
    words = {code, text.split(" ", 1)[0]}
    if isinstance(error, redis.exceptions.ExecAbortError):
        words |= set(re.findall(r"\b[A-Z]{3,}\b", text))  # "... because of: OOM ..."
    if isinstance(error, redis.exceptions.OutOfMemoryError) or words & set(_FULL):
        return StorageFull(f"{code or ''} {text}".strip())
    if isinstance(error, redis.exceptions.ReadOnlyError | redis.exceptions.MasterDownError) or (
        words & set(_UNAVAILABLE)
    ):
        return StoreUnavailable(f"{code or ''} {text}".strip())
    return None


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
        min_replicas_ack: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.redis = client
        # Probes need a fast "no": a separate client with a short timeout and no
        # retry, so a hung Redis answers /readyz with 503 within the probe timeout.
        self.health_client = health_client or client
        self.idempotency_ttl = idempotency_ttl
        self.retry = retry or RetryPolicy()
        self.metrics: StoreMetrics = metrics or _NoMetrics()
        self.clock = clock
        self.min_replicas_ack = min_replicas_ack
        self.wait_timeout_ms = wait_timeout_ms

    # -- reads -------------------------------------------------------------

    def ping(self) -> bool:
        try:
            return bool(self.health_client.ping())
        except redis.RedisError:
            return False

    def eviction_risk(self) -> str | None:
        """Why Redis could evict our keys, or None (the health client: fails fast)."""
        return eviction_risk(self.health_client)

    def not_ready(self) -> str | None:
        """Why this replica should get no traffic, or None: Redis does not answer,
        or answers with a policy that could evict our keys (checked on every
        probe: a policy changed at run time takes the replicas out of rotation)."""
        try:
            return self.eviction_risk()
        except redis.RedisError:
            return "Redis does not answer"

    @contextmanager
    def _reading(self, wallet: WalletRef) -> Iterator[None]:
        """Reads of one wallet: typed errors only (a key of the wrong type or data that
        does not parse is that wallet's problem, not a 500)."""
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            self._drop_idle_connections()
            raise StoreUnavailable(str(exc)) from exc
        except redis.ResponseError as exc:
            raise _node_error(exc) or WalletUnavailable(f"wallet {wallet.id!r}: {exc}") from exc
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise WalletUnavailable(f"wallet {wallet.id!r}: {exc!r}") from exc

    def get_wallet(self, wallet: WalletRef) -> Wallet | None:
        with self._reading(wallet):
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
        with self._reading(wallet):
            raw = self.redis.zrevrangebyscore(
                ledger_key(wallet), upper, "-inf", start=0, num=limit + 1, withscores=True
            )
            pairs = cast(list[tuple[bytes, float]], raw)
            entries = [decode_entry(m, int(score), wallet.id) for m, score in pairs[:limit]]
        next_cursor = entries[-1].seq if len(pairs) > limit else None
        return entries, next_cursor

    # -- wallets -----------------------------------------------------------

    def create_wallet(self, wallet: WalletRef, currency: str) -> Wallet:
        """Create an empty wallet; WalletExists if the tenant has one with this id."""
        wallet_id = wallet.id
        created_at = self.clock()
        nonce = uuid.uuid4().hex  # recognises our own commit after a lost EXEC reply
        key = wallet_key(wallet)

        def plan(replies: list[Any]) -> _Plan:
            for reply in replies:
                if isinstance(reply, redis.ResponseError):
                    raise WalletUnavailable(f"wallet {wallet_id!r}: {reply}")
            existing = _decode(replies[0])
            if existing == nonce:  # an earlier attempt committed; its reply was lost
                return _Plan([], [], None, needs_replication=True)
            if existing is not None or replies[1]:
                raise WalletExists(f"wallet {wallet_id!r} already exists")
            fields = ["currency", currency, "balance", 0, "seq", 0]
            write = ("HSET", key, *fields, "created_at", created_at, "nonce", nonce)
            # No probe: the nonce read above is the check, on every attempt.
            return _Plan([], [write], None, owners=[wallet])

        self._transact("create", [key], [("HGET", key, "nonce"), ("EXISTS", key)], plan)
        return Wallet(wallet_id, currency, 0, created_at)

    # -- money -------------------------------------------------------------

    def commit(self, ops: Sequence[Op], render: Render) -> list[Outcome]:
        """Apply ops in order, all in one WATCH/MULTI; one outcome per op.

        The rules are domain.planner's; this reads what they need and writes
        what they decided: ledger entries, balances, idempotency records. An op
        whose wallet or record cannot be read gets a Failed outcome; the other
        ops go ahead. Errors that concern the whole node (unreachable, full,
        read-only) are raised and are every op's answer.
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
            broken: dict[WalletRef | str, Exception] = {}
            states: dict[WalletRef, WalletState | None] = {}
            for wallet, reply in zip(wallet_ids, replies, strict=False):
                try:
                    states[wallet] = _wallet_state(reply)
                except (redis.ResponseError, ValueError, UnicodeDecodeError) as exc:
                    broken[wallet] = WalletUnavailable(f"wallet {wallet.id!r}: {exc}")
                    states[wallet] = None
            raw: dict[str, Any] = {}
            if record_keys:
                if isinstance(replies[-1], redis.ResponseError):
                    raise replies[-1]  # MGET does not fail per key: the node said no
                raw = dict(zip(record_keys, replies[-1], strict=True))
            if absent_at_first_read is None:
                absent_at_first_read = {k for k, v in raw.items() if v is None}
            records: dict[str, IdempotencyRecord | None] = {}
            for key, value in raw.items():
                try:
                    records[key] = load_record(value, key)
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    broken[key] = WalletUnavailable(f"idempotency record {key!r}: {exc}")
            batch = plan_batch(
                ops,
                states,
                records,
                absent_at_first_read=absent_at_first_read,
                now=self.clock(),
                render=render,
                broken=broken,
            )
            return self._writes(ops, batch, states)

        keys = [wallet_key(w) for w in wallet_ids] + watched_records
        label = _batch_label(ops)
        started = time.perf_counter()
        outcomes = self._transact(label, keys, reads, plan)
        self.metrics.commit(label, time.perf_counter() - started, len(ops))
        return outcomes

    def _writes(
        self, ops: Sequence[Op], batch: BatchPlan, states: dict[WalletRef, WalletState | None]
    ) -> _Plan:
        """The MULTI block for a planned batch, and a probe for one of its writes."""
        plan = _Plan(batch.outcomes, [], None)
        plan.needs_replication = any(isinstance(o, Replayed) for o in batch.outcomes)
        for index, op in enumerate(ops):
            for wallet in op.wallets:
                plan.ops_of.setdefault(wallet, []).append(index)
        encoded: dict[str, str] = {}  # created_at -> its stored form, once per batch
        for wallet, entry in batch.entries:
            member = encode_entry(entry, encoded)
            plan.writes.append(("ZADD", ledger_key(wallet), entry.seq, member))
            plan.owners.append(wallet)
            if plan.probe is None:
                plan.probe = ("ZSCORE", ledger_key(wallet), member)
                plan.probe_expect = str(entry.seq)
        for key, record in batch.records:
            value = dump_record(record, encoded)
            plan.writes.append(("SET", key, value, "EX", self.idempotency_ttl))
            plan.owners.append(_wallet_of_key(key))
            if plan.probe is None:
                plan.probe, plan.probe_expect = ("GET", key), value
        for wallet, state in states.items():
            if state is not None and state.changed:
                plan.writes.append(
                    ("HSET", wallet_key(wallet), "balance", state.balance, "seq", state.seq)
                )
                plan.owners.append(wallet)
        return plan

    # -- the transaction -----------------------------------------------------

    def _transact(
        self,
        label: str,
        watch: Sequence[str],
        reads: Sequence[tuple[Any, ...]],
        plan: Callable[[list[Any]], _Plan],
    ) -> list[Outcome]:
        """WATCH + reads (one round trip), plan, MULTI..EXEC [+ WAIT] (one round trip).

        Retries on conflict with jittered backoff, at most max_attempts times.
        Attempts whose EXEC reply was lost are probed in every later attempt's
        reads (module docstring).
        """
        history = _Attempts()
        conflict: Exception = redis.WatchError("no attempt made")
        for attempt in range(self.retry.max_attempts):
            try:
                outcomes = self._attempt(watch, reads, plan, history)
            except _CONNECTION_ERRORS as exc:
                loading = isinstance(exc.__cause__ or exc, redis.BusyLoadingError)
                if loading or not self.ping():
                    if history.ambiguous:
                        # Neither "applied" nor "nothing changed" would be true.
                        raise OutcomeUnknown(str(exc)) from exc
                    raise StoreUnavailable(str(exc)) from exc
                conflict = exc
            except redis.ResponseError as exc:
                if history.ambiguous:
                    raise OutcomeUnknown(f"{exc} (after an EXEC whose reply was lost)") from exc
                raise _node_error(exc) or exc from exc
            else:
                if outcomes is not None:
                    return outcomes
                conflict = redis.WatchError("watched key changed")
            self.metrics.watch_retry(label)
            time.sleep(self.retry.delay(attempt))
        if history.ambiguous:
            raise OutcomeUnknown(f"an EXEC reply was lost, then {conflict}")
        if isinstance(conflict, _CONNECTION_ERRORS):  # the last attempt lost its connection
            raise StoreUnavailable(f"{self.retry.max_attempts} attempts failed ({conflict})")
        raise ContentionExhausted(f"{self.retry.max_attempts} attempts lost races ({conflict})")

    def _attempt(
        self,
        watch: Sequence[str],
        reads: Sequence[tuple[Any, ...]],
        plan: Callable[[list[Any]], _Plan],
        history: _Attempts,
    ) -> list[Outcome] | None:
        """One attempt on one pooled connection: the outcomes, or None after a
        WATCH conflict. A lost EXEC reply is recorded in `history` and re-raised."""
        pool: Any = self.redis.connection_pool
        decided: _Plan | None = None
        exec_sent = False
        conn: Any = pool.get_connection()
        try:
            probes = [p.probe for p in history.lost if p.probe is not None]
            replies = self._roundtrip(conn, [("WATCH", *watch), *reads, *probes])
            if isinstance(replies[0], redis.ResponseError):
                raise replies[0]
            for earlier, reply in zip(history.lost, replies[1 + len(reads) :], strict=True):
                if _probe_matches(earlier, reply):  # that EXEC landed after all
                    return self._unwatch(conn, earlier, replicated=True)
            decided = plan(replies[1 : 1 + len(reads)])
            if not decided.writes:
                return self._unwatch(conn, decided, replicated=decided.needs_replication)
            block: list[tuple[Any, ...]] = [("MULTI",), *decided.writes, ("EXEC",)]
            if self.min_replicas_ack:
                block.append(("WAIT", self.min_replicas_ack, self.wait_timeout_ms))
            exec_sent = True
            replies = self._roundtrip(conn, block)
            committed = self._committed(decided, replies)
            if committed is not None and self.min_replicas_ack:
                _check_wait(replies[-1], self.min_replicas_ack)
            return committed
        except _CONNECTION_ERRORS as exc:
            conn.disconnect()  # its WATCH state is unknowable now
            self._drop_idle_connections()
            if exec_sent and decided is not None:
                partial = exc.replies if isinstance(exc, _Broken) else []
                at = 1 + len(decided.writes)  # EXEC's reply
                if len(partial) > at and isinstance(partial[at], list):
                    # Committed; the connection broke while WAIT waited.
                    raise OutcomeUnknown(f"committed, replication unknown: {exc}") from exc
                history.ambiguous = True
                if decided.probe is not None:
                    history.lost.append(decided)
            raise
        except BaseException:
            conn.disconnect()  # never hand back a connection still WATCHing
            raise
        finally:
            pool.release(conn)

    def _drop_idle_connections(self) -> None:
        """After a connection error, the pooled connections to the same server are
        likely dead too: a network partition sends no FIN, and each would cost a
        socket timeout before it is found out. Closed, they reconnect when next used,
        through Sentinel (to the current primary) when it is configured."""
        for client in {id(c): c for c in (self.redis, self.health_client)}.values():
            client.connection_pool.disconnect(inuse_connections=False)

    def _committed(self, decided: _Plan, replies: list[Any]) -> list[Outcome] | None:
        """The outcomes of a MULTI..EXEC block, None after a WATCH conflict.

        An error reply while queueing (OOM, READONLY, NOREPLICAS...) means Redis
        discarded the whole transaction (EXECABORT): raised as such. An error
        inside EXEC's reply means that one command failed while the others
        committed (Redis has no rollback); it can only be a wallet key of the
        wrong type, and the ops on that wallet may be half applied.
        """
        at = 1 + len(decided.writes)
        for reply in replies[:at]:
            if isinstance(reply, redis.ResponseError):
                raise reply
        result = replies[at]
        if isinstance(result, redis.ResponseError):
            raise result
        if result is None:
            return None
        outcomes = list(decided.outcomes)
        for owner, reply in zip(decided.owners, result, strict=True):
            if isinstance(reply, redis.ResponseError):
                error = OutcomeUnknown(f"wallet {owner.id!r}: a write failed ({reply})")
                for index in decided.ops_of.get(owner, []):
                    outcomes[index] = Failed(error)
        return outcomes

    def _unwatch(self, conn: Any, decided: _Plan, *, replicated: bool) -> list[Outcome]:
        """End an attempt that writes nothing: UNWATCH, and when its answers report
        stored data (a replay, an earlier attempt's commit), WAIT until enough
        replicas have that data too. WAIT covers the connection's own last write,
        and this one only read: REPLICATION_MARK moves the offset past what it read.
        """
        commands: list[tuple[Any, ...]] = [("UNWATCH",)]
        if replicated and self.min_replicas_ack:
            commands.append(("PUBLISH", REPLICATION_MARK, ""))
            commands.append(("WAIT", self.min_replicas_ack, self.wait_timeout_ms))
        replies = self._roundtrip(conn, commands)
        if len(commands) > 1:
            _check_wait(replies[-1], self.min_replicas_ack)
        return decided.outcomes

    def _roundtrip(self, conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send commands, read every reply: error replies are returned (as
        ResponseError) in their place, so one failing read does not cost the
        others; a broken connection raises _Broken with what was read so far."""
        conn.send_packed_command([_pack(commands)] if _hiredis else conn.pack_commands(commands))
        replies: list[Any] = []
        try:
            for _ in commands:
                try:
                    replies.append(conn.read_response(disconnect_on_error=True))
                except redis.ResponseError as error:
                    replies.append(error)
        except _CONNECTION_ERRORS as exc:
            raise _Broken(exc, replies) from exc
        return replies


def eviction_risk(client: redis.Redis) -> str | None:
    """Why Redis could evict our keys, or None.

    Only ``noeviction`` is safe: ``volatile-*`` policies evict exactly the keys
    with a TTL, the idempotency records, and a retry would then pay twice;
    ``allkeys-*`` would evict ledgers and balances. Read from INFO, which managed
    Redis services allow where they rename CONFIG."""
    policy = str(client.info("memory").get("maxmemory_policy", "noeviction"))
    if policy == "noeviction":
        return None
    return (
        f"Redis maxmemory-policy is {policy!r}: it may evict idempotency records or ledger "
        "entries (a retry would then pay twice); set maxmemory-policy noeviction"
    )


def _check_wait(reply: Any, wanted: int) -> None:
    if isinstance(reply, redis.ResponseError):
        raise OutcomeUnknown(f"committed, but WAIT failed: {reply}")
    if int(reply) < wanted:
        raise OutcomeUnknown(
            f"committed on the primary, but only {reply} of {wanted} replicas confirmed it"
        )


def _probe_matches(decided: _Plan, reply: Any) -> bool:
    if isinstance(reply, redis.ResponseError) or reply is None:
        return False
    if isinstance(reply, float):  # ZSCORE: redis-py parses the score
        reply = str(int(reply))
    return _decode(reply) == decided.probe_expect


def _wallet_state(reply: Any) -> WalletState | None:
    if isinstance(reply, redis.ResponseError):
        raise reply
    currency, balance, seq = reply
    if currency is None:
        return None
    return WalletState(currency.decode(), int(balance or 0), int(seq or 0))


def _wallet_of_key(key: str) -> WalletRef:
    """The wallet of a per-wallet key: w:{w:<tenant>:<id>}..., or w:{w:<id>}... for
    the tenant ``default`` (wallet_key())."""
    tag = key[key.index("{w:") + 3 : key.index("}")]
    tenant, _, wallet_id = tag.rpartition(":")
    return WalletRef(tenant or DEFAULT_TENANT, wallet_id)


def _pack(commands: list[tuple[Any, ...]]) -> bytes:
    # One C call per command: redis-py's pack_commands() costs ~10 us per command
    # in Python, several times per money movement.
    assert _hiredis is not None
    return b"".join([_hiredis.pack_command(command) for command in commands])


def _batch_label(ops: Sequence[Op]) -> str:
    kinds = {op.operation for op in ops}
    return kinds.pop() if len(kinds) == 1 else "mixed"


# -- stored forms ------------------------------------------------------------------
#
# Comma-separated, because size is what limits a primary (README "Capacity"): a
# ledger member with its audit fields is about 100 bytes, under the
# zset-max-listpack-value 128 Redis runs with (compose, chart), which keeps a small
# wallet's sorted set in Redis' listpack encoding, a fraction of a skiplist's
# memory per entry. A member leaves out what its key and score say (wallet id,
# seq) and what a transfer leg derives from its transfer id; uuid hex ids and
# fingerprints are stored as 22 base64url characters, timestamps as epoch ms.
#
#   member   <type code><id>,<amount>,<balance after>,<ms>[,<k>=<v>...]
#            (p=counterparty, x=transfer id when not derivable, k=API key id,
#            r=request id; readers skip keys they do not know, so fields can be added)
#   record   A,<fingerprint>,<currency>,<seq>,<member>                  applied
#            T,<fingerprint>,<currency>,<seq>,<credit seq>,<credit balance>,<debit member>
#            R,<fingerprint>,<refusal slug>,<detail>                   refused
#
# An id or timestamp that is not ours (a test's clock, a hand-made id) is kept as
# "=<text>". Readers also take the JSON forms of earlier releases (members with
# "wallet_id", records with "body"), so data written before stays readable.

_TYPE_CODE = {"deposit": "d", "withdrawal": "w", "transfer_in": "i", "transfer_out": "o"}
_CODE_TYPE = {code: kind for kind, code in _TYPE_CODE.items()}
_LEG_SUFFIX = {"i": "-in", "o": "-out"}
_ISO_MS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_REFUSALS: dict[str, type[DomainRefusal]] = {
    cls.slug: cls for cls in (InsufficientFunds, BalanceLimitExceeded, CurrencyMismatch, SameWallet)
}


def _pack_id(value: str) -> str:
    if _HEX32.fullmatch(value):
        return base64.urlsafe_b64encode(bytes.fromhex(value)).decode()[:22]
    if "," in value:
        raise ValueError(f"cannot store {value!r}")
    return "=" + value


def _unpack_id(stored: str) -> str:
    if stored.startswith("="):
        return stored[1:]
    return base64.urlsafe_b64decode(stored + "==").hex()


def _pack_time(created_at: str, cache: dict[str, str]) -> str:
    """Epoch ms for our ISO timestamps (13 digits instead of 24 characters)."""
    stored = cache.get(created_at)
    if stored is None:
        if _ISO_MS.fullmatch(created_at):
            t = created_at
            seconds = calendar.timegm(
                (int(t[:4]), int(t[5:7]), int(t[8:10]), int(t[11:13]), int(t[14:16]),
                 int(t[17:19]), 0, 0, 0)
            )  # fmt: skip
            stored = str(seconds * 1000 + int(t[20:23]))
        else:
            stored = _pack_id(created_at)  # not ours: kept as it is
        cache[created_at] = stored
    return stored


def _unpack_time(stored: str) -> str:
    if stored.startswith("="):
        return stored[1:]
    return _iso_ms(int(stored))


def encode_entry(entry: LedgerEntry, cache: dict[str, str] | None = None) -> str:
    """A ledger member: unique per entry (its id), read back with its key and score."""
    code = _TYPE_CODE[entry.type]
    entry_id, extra = entry.id, ""
    if entry.transfer_id is not None:
        if entry.id == entry.transfer_id + _LEG_SUFFIX.get(code, "\0"):
            entry_id = entry.transfer_id
        else:
            extra += f",x={_pack_id(entry.transfer_id)}"
    if entry.counterparty is not None:
        extra += f",p={entry.counterparty}"
    if entry.key_id is not None:
        extra += f",k={_pack_id(entry.key_id)}"
    if entry.request_id is not None:
        extra += f",r={_pack_id(entry.request_id)}"
    created = _pack_time(entry.created_at, {} if cache is None else cache)
    return f"{code}{_pack_id(entry_id)},{entry.amount},{entry.balance_after},{created}{extra}"


def decode_entry(member: bytes | str, seq: int, wallet_id: str) -> LedgerEntry:
    text = member.decode() if isinstance(member, bytes) else member
    if text.startswith("{"):  # the JSON form of earlier releases
        return LedgerEntry.from_dict(json.loads(text))
    head, amount, balance, created, *pairs = text.split(",")
    code, entry_id = head[0], _unpack_id(head[1:])
    extra = dict(pair.split("=", 1) for pair in pairs)
    transfer_id = _unpack_id(extra["x"]) if "x" in extra else None
    if code in _LEG_SUFFIX and transfer_id is None:
        transfer_id, entry_id = entry_id, entry_id + _LEG_SUFFIX[code]
    return LedgerEntry(
        id=entry_id,
        wallet_id=wallet_id,
        seq=seq,
        type=_CODE_TYPE[code],
        amount=int(amount),
        balance_after=int(balance),
        created_at=_unpack_time(created),
        transfer_id=transfer_id,
        counterparty=extra.get("p"),
        key_id=_unpack_id(extra["k"]) if "k" in extra else None,
        request_id=_unpack_id(extra["r"]) if "r" in extra else None,
    )


def dump_record(record: IdempotencyRecord, cache: dict[str, str] | None = None) -> str:
    fingerprint = _pack_id(record.fingerprint)
    outcome = record.outcome
    if isinstance(outcome, Applied):
        member = encode_entry(outcome.entry, cache)
        return f"A,{fingerprint},{outcome.currency},{outcome.entry.seq},{member}"
    if isinstance(outcome, TransferApplied):
        debit, credit = outcome.debit, outcome.credit
        member = encode_entry(debit, cache)
        return (
            f"T,{fingerprint},{outcome.currency},{debit.seq},{credit.seq},"
            f"{credit.balance_after},{member}"
        )
    if isinstance(outcome, Refused):
        return f"R,{fingerprint},{outcome.refusal.slug},{outcome.refusal.detail}"
    raise TypeError(f"no stored form for {outcome!r}")


def load_record(raw: bytes | None, key: str) -> IdempotencyRecord | None:
    """The record under `key` (whose wallet is the op's, or a transfer's source)."""
    if raw is None:
        return None
    text = raw.decode()
    if text.startswith("{"):  # the JSON form of earlier releases: the rendered answer
        data = json.loads(text)
        return IdempotencyRecord(
            data["fingerprint"][:32], response=StoredResponse(data["status"], data["body"])
        )
    kind, fingerprint, rest = text.split(",", 2)
    fingerprint = _unpack_id(fingerprint)
    if kind == "R":
        slug, detail = rest.split(",", 1)
        return IdempotencyRecord(fingerprint, Refused(_REFUSALS[slug](detail)))
    wallet_id = _wallet_of_key(key).id
    if kind == "A":
        currency, seq, member = rest.split(",", 2)
        return IdempotencyRecord(
            fingerprint, Applied(decode_entry(member, int(seq), wallet_id), currency)
        )
    if kind != "T":
        raise ValueError(f"unknown record kind {kind!r}")
    currency, seq, credit_seq, credit_balance, member = rest.split(",", 4)
    debit = decode_entry(member, int(seq), wallet_id)
    assert debit.counterparty is not None and debit.transfer_id is not None
    credit = LedgerEntry(
        id=debit.transfer_id + _LEG_SUFFIX["i"],
        wallet_id=debit.counterparty,
        seq=int(credit_seq),
        type="transfer_in",
        amount=debit.amount,
        balance_after=int(credit_balance),
        created_at=debit.created_at,
        transfer_id=debit.transfer_id,
        counterparty=wallet_id,
        key_id=debit.key_id,
        request_id=debit.request_id,
    )
    return IdempotencyRecord(fingerprint, TransferApplied(debit, credit, currency))

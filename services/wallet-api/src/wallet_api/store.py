"""Redis persistence for wallets, ledgers and idempotency records.

Key layout (every key of one wallet carries the hash tag ``{w:<id>}`` so it lives
in one Redis Cluster slot and a single-wallet MULTI is cluster-safe):

    w:{w:<id>}                     HASH   currency, balance, seq, created_at
    w:{w:<id>}:ledger              ZSET   member = entry id, score = seq
    w:{w:<id>}:entries             HASH   entry id -> entry JSON
    w:{w:<id>}:idem:<scope>:<key>  STRING idempotency record JSON, with TTL

A transfer writes two wallets in one MULTI, so on Redis Cluster both wallets
would need the same slot; the supported topology is one primary (standalone or
Sentinel-managed), where any keys may share a transaction.

Every change uses WATCH/MULTI on the pipeline's own connection, retried on
conflict with bounded, jittered backoff. redis-py turns a connection error
while keys are watched (including one while reading EXEC's reply) into a
WatchError, so before any retry the store checks whether its own commit landed
(entry ids and idempotency tokens are written in the same MULTI) and never
applies money twice.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from wallet_api.domain.ledger import (
    CurrencyMismatch,
    DomainRefusal,
    EntryType,
    InsufficientFunds,
    LedgerEntry,
    Wallet,
    WalletExists,
    WalletNotFound,
    apply_entry,
)

_RETRYABLE = (redis.WatchError, redis.ConnectionError, redis.TimeoutError)


class StoreUnavailable(Exception):
    """Redis could not be reached; nothing was changed by this request."""


class ContentionExhausted(Exception):
    """Every WATCH/MULTI attempt lost a race; nothing was changed."""


def wallet_key(wallet_id: str) -> str:
    return f"w:{{w:{wallet_id}}}"


def ledger_key(wallet_id: str) -> str:
    return f"{wallet_key(wallet_id)}:ledger"


def entries_key(wallet_id: str) -> str:
    return f"{wallet_key(wallet_id)}:entries"


def idempotency_key(wallet_id: str, scope: str, key_digest: str) -> str:
    return f"{wallet_key(wallet_id)}:idem:{scope}:{key_digest}"


class StoreMetrics(Protocol):
    def watch_retry(self, operation: str) -> None: ...
    def commit(self, operation: str, seconds: float, batch_size: int) -> None: ...


class _NoMetrics:
    def watch_retry(self, operation: str) -> None:
        pass

    def commit(self, operation: str, seconds: float, batch_size: int) -> None:
        pass


@dataclass(frozen=True)
class StoredResponse:
    """An HTTP outcome kept for idempotent replay."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class IdempotencyClaim:
    """This request's exclusive hold on an idempotency key (state "pending")."""

    redis_key: str
    token: str
    fingerprint: str


@dataclass(frozen=True)
class Replay:
    response: StoredResponse


@dataclass(frozen=True)
class KeyInUse:
    """Another request with the same key is still in flight."""


@dataclass(frozen=True)
class KeyReusedWithDifferentRequest:
    """The key was used before for a different method, path or body."""


IdempotencyDecision = IdempotencyClaim | Replay | KeyInUse | KeyReusedWithDifferentRequest


@dataclass
class MoneyOp:
    """A deposit or withdrawal waiting to be committed."""

    entry_type: EntryType
    wallet_id: str
    amount: int
    claim: IdempotencyClaim | None = None
    entry_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Applied:
    entry: LedgerEntry
    currency: str


@dataclass(frozen=True)
class Refused:
    refusal: DomainRefusal


@dataclass(frozen=True)
class ClaimLost:
    """The idempotency claim expired and was taken over; this op did nothing."""


Outcome = Applied | Refused | ClaimLost
Render = Callable[[MoneyOp, Outcome], StoredResponse]


@dataclass(frozen=True)
class TransferOp:
    source: str
    target: str
    amount: int
    claim: IdempotencyClaim | None = None
    transfer_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class TransferApplied:
    transfer_id: str
    debit: LedgerEntry
    credit: LedgerEntry
    currency: str


TransferOutcome = TransferApplied | Refused | ClaimLost
RenderTransfer = Callable[[TransferOp, TransferOutcome], StoredResponse]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 12
    base_delay: float = 0.002
    max_delay: float = 0.05

    def delay(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retrying replicas apart.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


def _now() -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        + f".{int(time.time() * 1000) % 1000:03d}Z"
    )


def _decode(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class WalletStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        idempotency_ttl: int = 86400,
        claim_ttl: int = 30,
        retry: RetryPolicy | None = None,
        metrics: StoreMetrics | None = None,
        clock: Callable[[], str] = _now,
    ) -> None:
        self.redis = client
        self.idempotency_ttl = idempotency_ttl
        self.claim_ttl = claim_ttl
        self.retry = retry or RetryPolicy()
        self.metrics: StoreMetrics = metrics or _NoMetrics()
        self.clock = clock

    # -- reads -------------------------------------------------------------

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def get_wallet(self, wallet_id: str) -> Wallet | None:
        with _unavailable_as_error():
            raw = self.redis.hmget(wallet_key(wallet_id), "currency", "balance", "created_at")
        currency, balance, created_at = (_decode(v) for v in raw)
        if currency is None or balance is None or created_at is None:
            return None
        return Wallet(wallet_id, currency, int(balance), created_at)

    def history(
        self, wallet_id: str, *, before_seq: int | None, limit: int
    ) -> tuple[list[LedgerEntry], int | None]:
        """Entries newest first; returns (page, seq to pass as the next cursor)."""
        upper: str | int = f"({before_seq}" if before_seq is not None else "+inf"
        with _unavailable_as_error():
            ids = self.redis.zrevrangebyscore(
                ledger_key(wallet_id), upper, "-inf", start=0, num=limit + 1
            )
            raw = self.redis.hmget(entries_key(wallet_id), ids[:limit]) if ids else []
        entries = [LedgerEntry.from_dict(json.loads(r)) for r in raw if r is not None]
        next_cursor = entries[-1].seq if len(ids) > limit and entries else None
        return entries, next_cursor

    # -- wallets -----------------------------------------------------------

    def create_wallet(self, wallet_id: str, currency: str) -> Wallet:
        """Create an empty wallet; WalletExists if the id is taken (by someone else)."""
        created_at = self.clock()
        nonce = uuid.uuid4().hex  # recognises our own commit after a lost EXEC reply
        key = wallet_key(wallet_id)
        for attempt in range(self.retry.max_attempts):
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(key)
                    existing = _decode(pipe.hget(key, "nonce"))
                    if existing == nonce:
                        break
                    if existing is not None or pipe.exists(key):
                        raise WalletExists(f"wallet {wallet_id!r} already exists")
                    pipe.multi()
                    fields = {"currency": currency, "balance": 0, "seq": 0}
                    pipe.hset(key, mapping={**fields, "created_at": created_at, "nonce": nonce})
                    pipe.execute()
                    break
            except _RETRYABLE as exc:
                # The next attempt's read decides who won: us (lost reply) or a rival.
                self._before_retry("create", attempt, exc)
        else:
            raise ContentionExhausted("could not create the wallet")
        return Wallet(wallet_id, currency, 0, created_at)

    # -- idempotency ---------------------------------------------------------

    def claim_idempotency_key(self, redis_key: str, fingerprint: str) -> IdempotencyDecision:
        """Atomically take the key, or report why this request may not proceed."""
        token = uuid.uuid4().hex
        record = json.dumps({"state": "pending", "fingerprint": fingerprint, "token": token})
        with _unavailable_as_error():
            for _ in range(3):
                if self.redis.set(redis_key, record, nx=True, ex=self.claim_ttl):
                    return IdempotencyClaim(redis_key, token, fingerprint)
                existing = self.redis.get(redis_key)
                if existing is None:  # expired between SET NX and GET
                    continue
                stored = json.loads(existing)
                if stored["fingerprint"] != fingerprint:
                    return KeyReusedWithDifferentRequest()
                if stored["state"] == "done":
                    return Replay(StoredResponse(stored["status"], stored["body"]))
                return KeyInUse()
        return KeyInUse()

    def release_claim(self, claim: IdempotencyClaim) -> None:
        """Drop a pending claim we still own so the client can retry at once."""
        try:
            with self.redis.pipeline() as pipe:
                pipe.watch(claim.redis_key)
                if not _claim_is_ours(pipe.get(claim.redis_key), claim):
                    return
                pipe.multi()
                pipe.delete(claim.redis_key)
                pipe.execute()
        except redis.RedisError:
            pass  # the claim's TTL frees it anyway

    # -- money -------------------------------------------------------------

    def commit_batch(self, wallet_id: str, ops: Sequence[MoneyOp], render: Render) -> list[Outcome]:
        """Apply deposits/withdrawals on one wallet, in order, in one MULTI.

        Each op gets its own ledger entry and idempotency record; a refused op
        (e.g. insufficient funds) changes nothing but its record. An unknown
        wallet records nothing: every op comes back Refused(WalletNotFound).
        """
        wkey = wallet_key(wallet_id)
        claims = [op.claim for op in ops if op.claim is not None]
        watched = [wkey, *(c.redis_key for c in claims)]
        started = time.perf_counter()
        for attempt in range(self.retry.max_attempts):
            outcomes: list[Outcome] = []
            probe = _CommitProbe()
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(*watched)
                    currency, balance_raw, seq_raw = (
                        _decode(v) for v in pipe.hmget(wkey, "currency", "balance", "seq")
                    )
                    held = dict(zip(claims, pipe.mget([c.redis_key for c in claims]), strict=True))
                    if currency is None:
                        missing = WalletNotFound(f"wallet {wallet_id!r} does not exist")
                        return [Refused(missing) for _ in ops]
                    balance, seq = int(balance_raw or 0), int(seq_raw or 0)
                    now = self.clock()
                    pipe.multi()
                    for op in ops:
                        if op.claim is not None and not _claim_is_ours(held[op.claim], op.claim):
                            outcomes.append(ClaimLost())
                            continue
                        outcome: Outcome
                        try:
                            balance = apply_entry(balance, op.entry_type, op.amount)
                        except DomainRefusal as refusal:
                            outcome = Refused(refusal)
                        else:
                            seq += 1
                            entry = LedgerEntry(
                                op.entry_id,
                                wallet_id,
                                seq,
                                op.entry_type.value,
                                op.amount,
                                balance,
                                now,
                            )
                            self._queue_entry(pipe, entry)
                            probe.entry = probe.entry or (entries_key(wallet_id), entry.id)
                            outcome = Applied(entry, currency)
                        outcomes.append(outcome)
                        if op.claim is not None:
                            self._queue_record(pipe, op.claim, render(op, outcome))
                            probe.claim = probe.claim or op.claim
                    pipe.hset(wkey, mapping={"balance": balance, "seq": seq})
                    pipe.execute()
            except _RETRYABLE as exc:
                if self._committed(probe):
                    self.metrics.commit("money", time.perf_counter() - started, len(ops))
                    return outcomes
                self._before_retry("money", attempt, exc)
                continue
            self.metrics.commit("money", time.perf_counter() - started, len(ops))
            return outcomes
        raise ContentionExhausted(
            f"{self.retry.max_attempts} conflicting attempts on {wallet_id!r}"
        )

    def transfer(self, op: TransferOp, render: RenderTransfer) -> TransferOutcome:
        """Move money between two wallets atomically (one MULTI, two entries)."""
        src, dst = wallet_key(op.source), wallet_key(op.target)
        watched = [src, dst] + ([op.claim.redis_key] if op.claim else [])
        started = time.perf_counter()
        for attempt in range(self.retry.max_attempts):
            outcome: TransferOutcome = ClaimLost()
            probe = _CommitProbe()
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(*watched)
                    s_cur, s_bal, s_seq = (
                        _decode(v) for v in pipe.hmget(src, "currency", "balance", "seq")
                    )
                    d_cur, d_bal, d_seq = (
                        _decode(v) for v in pipe.hmget(dst, "currency", "balance", "seq")
                    )
                    if op.claim is not None and not _claim_is_ours(
                        pipe.get(op.claim.redis_key), op.claim
                    ):
                        return ClaimLost()
                    if s_cur is None or d_cur is None:
                        which = op.source if s_cur is None else op.target
                        return Refused(WalletNotFound(f"wallet {which!r} does not exist"))
                    pipe.multi()
                    try:
                        if s_cur != d_cur:
                            raise CurrencyMismatch(
                                f"{op.source!r} holds {s_cur}, {op.target!r} holds {d_cur}"
                            )
                        s_after = apply_entry(int(s_bal or 0), EntryType.TRANSFER_OUT, op.amount)
                        d_after = apply_entry(int(d_bal or 0), EntryType.TRANSFER_IN, op.amount)
                    except DomainRefusal as refusal:
                        outcome = Refused(refusal)
                    else:
                        now = self.clock()
                        debit = LedgerEntry(
                            f"{op.transfer_id}-out",
                            op.source,
                            int(s_seq or 0) + 1,
                            EntryType.TRANSFER_OUT.value,
                            op.amount,
                            s_after,
                            now,
                            op.transfer_id,
                            op.target,
                        )
                        credit = LedgerEntry(
                            f"{op.transfer_id}-in",
                            op.target,
                            int(d_seq or 0) + 1,
                            EntryType.TRANSFER_IN.value,
                            op.amount,
                            d_after,
                            now,
                            op.transfer_id,
                            op.source,
                        )
                        for entry in (debit, credit):
                            self._queue_entry(pipe, entry)
                            pipe.hset(
                                wallet_key(entry.wallet_id),
                                mapping={"balance": entry.balance_after, "seq": entry.seq},
                            )
                        probe.entry = (entries_key(op.source), debit.id)
                        outcome = TransferApplied(op.transfer_id, debit, credit, s_cur)
                    if op.claim is not None:
                        self._queue_record(pipe, op.claim, render(op, outcome))
                        probe.claim = op.claim
                    pipe.execute()
            except _RETRYABLE as exc:
                if self._committed(probe):
                    self.metrics.commit("transfer", time.perf_counter() - started, 1)
                    return outcome
                self._before_retry("transfer", attempt, exc)
                continue
            self.metrics.commit("transfer", time.perf_counter() - started, 1)
            return outcome
        raise ContentionExhausted(f"{self.retry.max_attempts} conflicting attempts on a transfer")

    # -- helpers -----------------------------------------------------------

    def _queue_entry(self, pipe: Any, entry: LedgerEntry) -> None:
        pipe.zadd(ledger_key(entry.wallet_id), {entry.id: entry.seq})
        pipe.hset(entries_key(entry.wallet_id), entry.id, json.dumps(entry.to_dict()))

    def _queue_record(self, pipe: Any, claim: IdempotencyClaim, response: StoredResponse) -> None:
        record = {
            "state": "done",
            "fingerprint": claim.fingerprint,
            "token": claim.token,
            "status": response.status,
            "body": response.body,
        }
        pipe.set(claim.redis_key, json.dumps(record), ex=self.idempotency_ttl)

    def _committed(self, probe: _CommitProbe) -> bool:
        """After a failed EXEC: did our MULTI land anyway? (probe = what it wrote)"""
        with _unavailable_as_error():
            if probe.entry is not None:
                return bool(self.redis.hexists(*probe.entry))
            if probe.claim is not None:
                raw = self.redis.get(probe.claim.redis_key)
                if raw is None:
                    return False
                record = json.loads(raw)
                return bool(record.get("token") == probe.claim.token and record["state"] == "done")
        return False

    def _before_retry(self, operation: str, attempt: int, exc: Exception) -> None:
        lost_connection = isinstance(exc, redis.ConnectionError | redis.TimeoutError) or (
            "occurred while watching" in str(exc)  # redis-py's WatchError for a dropped link
        )
        # A lost connection rather than a lost race: fail fast if Redis is gone.
        if lost_connection and not self.ping():
            raise StoreUnavailable(str(exc)) from exc
        self.metrics.watch_retry(operation)
        time.sleep(self.retry.delay(attempt))


@dataclass
class _CommitProbe:
    """What an attempt's MULTI wrote that proves, afterwards, that it committed."""

    entry: tuple[str, str] | None = None
    claim: IdempotencyClaim | None = None


def _claim_is_ours(raw: bytes | str | None, claim: IdempotencyClaim) -> bool:
    if raw is None:
        return False
    record = json.loads(raw)
    return bool(record.get("token") == claim.token and record.get("state") == "pending")


@contextmanager
def _unavailable_as_error() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc


__all__ = [
    "Applied",
    "ClaimLost",
    "ContentionExhausted",
    "IdempotencyClaim",
    "InsufficientFunds",
    "KeyInUse",
    "KeyReusedWithDifferentRequest",
    "MoneyOp",
    "Refused",
    "Replay",
    "StoreUnavailable",
    "StoredResponse",
    "TransferApplied",
    "TransferOp",
    "WalletStore",
]

"""The posting rules of a batch of ops: pure, so they can be read and tested
without Redis.

The store reads the batch's wallets and idempotency records, hands them to
plan_batch() and writes back what it returns, all inside one WATCH/MULTI, so
the rules and the writes see the same balances. Ops are applied in order
against a running state: a withdrawal later in a batch sees the deposits
before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wallet_api.domain.ledger import (
    CurrencyMismatch,
    DomainRefusal,
    EntryType,
    LedgerEntry,
    SameWallet,
    WalletNotFound,
    apply_entry,
)
from wallet_api.domain.operations import (
    Applied,
    Failed,
    Idempotency,
    KeyInUse,
    KeyReused,
    MoneyOp,
    Op,
    Outcome,
    Refused,
    Render,
    Replayed,
    StoredResponse,
    TransferApplied,
    WalletRef,
)


@dataclass
class WalletState:
    """A wallet as the batch sees it: updated op by op while planning."""

    currency: str
    balance: int
    seq: int
    changed: bool = False


@dataclass(frozen=True)
class IdempotencyRecord:
    """What an idempotency key holds: the fingerprint of the request first sent
    with it, and what that request came to.

    The outcome, not the rendered answer: a replay renders it again from the
    outcome and the op in hand (whose fingerprint matched: the same method, path
    and body), so the record keeps a few numbers instead of a whole response
    body. Records written by earlier releases hold the rendered answer
    (``response``)."""

    fingerprint: str
    outcome: Applied | TransferApplied | Refused | None = None
    response: StoredResponse | None = None


@dataclass
class BatchPlan:
    """What a batch decided: one outcome per op and everything to write."""

    outcomes: list[Outcome] = field(default_factory=list)
    # New ledger lines, in order, each with the wallet whose ledger it joins.
    entries: list[tuple[WalletRef, LedgerEntry]] = field(default_factory=list)
    records: list[tuple[str, IdempotencyRecord]] = field(default_factory=list)


def plan_batch(
    ops: Sequence[Op],
    states: Mapping[WalletRef, WalletState | None],
    records: Mapping[str, IdempotencyRecord | None],
    *,
    absent_at_first_read: set[str],
    now: str,
    render: Render,
    broken: Mapping[WalletRef | str, Exception] | None = None,
) -> BatchPlan:
    """Apply ops in order to `states` (mutated: changed wallets are flagged).

    `records` holds the current record of every idempotency key of the batch;
    `absent_at_first_read` the keys that had none when the caller first looked
    (a record there now was written by a concurrent request). A refused op is
    recorded under its key like any answer, except an op on an unknown wallet:
    the wallet may exist by the time the client retries. A key's record from
    before idempotency was scoped per tenant (``Idempotency.legacy_key``)
    answers like its own record would.

    Each op is isolated from the others: an op on a wallet or idempotency key
    listed in `broken` (stored data the caller could not read), or one whose
    planning raises, gets a Failed outcome and leaves `states` as it found them;
    the rest of the batch goes ahead.
    """
    plan = BatchPlan()
    claimed: dict[str, str] = {}  # key -> fingerprint, within this batch
    broken = broken or {}
    for op in ops:
        idem = op.idempotency
        trouble = next((broken[k] for k in _keys_of(op) if k in broken), None)
        if trouble is not None:
            plan.outcomes.append(Failed(trouble))
            continue
        saved = {
            w: (s.balance, s.seq, s.changed) for w in op.wallets if (s := states.get(w)) is not None
        }
        try:
            if idem is not None:
                key, record = idem.key, records.get(idem.key)
                if record is None and idem.legacy_key is not None:
                    key, record = idem.legacy_key, records.get(idem.legacy_key)
                answer = check_record(
                    op, idem, record, claimed, key in absent_at_first_read, render=render
                )
                if answer is not None:
                    plan.outcomes.append(answer)
                    continue
            outcome, entries = apply_op(op, states, now)
        except Exception as exc:  # a bug or bad data: this op's answer, not the batch's
            for w, (balance, seq, changed) in saved.items():
                state = states[w]
                assert state is not None
                state.balance, state.seq, state.changed = balance, seq, changed
            plan.outcomes.append(Failed(exc))
            continue
        plan.outcomes.append(outcome)
        if entries:  # one per posting, in the order of op.wallets
            plan.entries.extend(zip(op.wallets, entries, strict=True))
        unknown_wallet = isinstance(outcome, Refused) and isinstance(
            outcome.refusal, WalletNotFound
        )
        if idem is not None and not unknown_wallet:
            assert isinstance(outcome, Applied | TransferApplied | Refused)
            claimed[idem.key] = idem.fingerprint
            plan.records.append((idem.key, IdempotencyRecord(idem.fingerprint, outcome)))
    return plan


def _keys_of(op: Op) -> tuple[WalletRef | str, ...]:
    """The stored things an op depends on: its wallets and its idempotency record
    (and the record's place from before tenants, which may answer for it)."""
    idem = op.idempotency
    if idem is None:
        return op.wallets
    return (*op.wallets, idem.key, *((idem.legacy_key,) if idem.legacy_key else ()))


def apply_op(
    op: Op, states: Mapping[WalletRef, WalletState | None], now: str
) -> tuple[Outcome, list[LedgerEntry]]:
    """Run the ledger rules for one op against the batch's running state.

    Either every posting of the op applies or none does: balances are computed
    first, and `states` is only touched once the op is known to be allowed.
    Wallets are looked up in the op's own tenant only (op.wallets), so another
    tenant's wallet is not found, exactly like one that does not exist.
    """
    postings: list[tuple[str, EntryType]] = (
        [(op.wallet_id, op.entry_type)]
        if isinstance(op, MoneyOp)
        else [(op.source, EntryType.TRANSFER_OUT), (op.target, EntryType.TRANSFER_IN)]
    )
    ids = [wallet_id for wallet_id, _ in postings]
    wallets: list[WalletState] = []
    for ref in op.wallets:  # the postings' wallets, in the same order
        state = states.get(ref)
        if state is None:
            return Refused(WalletNotFound(f"wallet {ref.id!r} does not exist")), []
        wallets.append(state)
    try:
        if not isinstance(op, MoneyOp) and op.source == op.target:
            # The routes refuse this too; the ledger never trusts its callers.
            raise SameWallet("a transfer needs two different wallets")
        if len({w.currency for w in wallets}) > 1:
            raise CurrencyMismatch(
                f"{postings[0][0]!r} holds {wallets[0].currency}, "
                f"{postings[1][0]!r} holds {wallets[1].currency}"
            )
        # Postings apply one after the other to a running balance per wallet,
        # so no two postings can start from the same balance.
        running = {wallet_id: state.balance for wallet_id, state in zip(ids, wallets, strict=True)}
        after: list[int] = []
        for wallet_id, kind in postings:
            running[wallet_id] = apply_entry(running[wallet_id], kind, op.amount)
            after.append(running[wallet_id])
    except DomainRefusal as refusal:
        return Refused(refusal), []
    entries: list[LedgerEntry] = []
    for (wallet_id, kind), state, balance in zip(postings, wallets, after, strict=True):
        state.balance, state.seq, state.changed = balance, state.seq + 1, True
        transfer = not isinstance(op, MoneyOp)
        entries.append(
            LedgerEntry(
                id=f"{op.id}-{kind.value.split('_')[1]}" if transfer else op.id,
                wallet_id=wallet_id,
                seq=state.seq,
                type=kind.value,
                amount=op.amount,
                balance_after=balance,
                created_at=now,
                transfer_id=op.id if transfer else None,
                counterparty=_counterparty(op, kind),
                key_id=op.actor.key_id,
                request_id=op.actor.request_id,
            )
        )
    currency = wallets[0].currency
    if isinstance(op, MoneyOp):
        return Applied(entries[0], currency), entries
    return TransferApplied(entries[0], entries[1], currency), entries


def _counterparty(op: Op, kind: EntryType) -> str | None:
    if isinstance(op, MoneyOp):
        return None
    return op.target if kind is EntryType.TRANSFER_OUT else op.source


def check_record(
    op: Op,
    idem: Idempotency,
    record: IdempotencyRecord | None,
    claimed: Mapping[str, str],
    was_absent: bool,
    *,
    render: Render,
) -> Outcome | None:
    """None: go ahead. Otherwise the answer for a key already used."""
    if idem.key in claimed:  # the same key twice in one batch
        return KeyInUse() if claimed[idem.key] == idem.fingerprint else KeyReused()
    if record is None:
        return None
    if record.fingerprint != idem.fingerprint:
        return KeyReused()
    if was_absent:  # written by a concurrent request since our first read
        return KeyInUse()
    if record.outcome is not None:
        return Replayed(render(op, record.outcome))
    assert record.response is not None
    return Replayed(record.response)

"""The posting rules of domain.planner, without Redis: the store only persists
what these functions decide."""

from typing import Any

import pytest

from wallet_api.domain.ledger import (
    BalanceLimitExceeded,
    CurrencyMismatch,
    EntryType,
    InsufficientFunds,
    SameWallet,
    WalletNotFound,
)
from wallet_api.domain.money import MAX_SAFE_BALANCE
from wallet_api.domain.operations import (
    Actor,
    Applied,
    Failed,
    Idempotency,
    KeyInUse,
    KeyReused,
    MoneyOp,
    Op,
    Outcome,
    Refused,
    Replayed,
    StoredResponse,
    TransferApplied,
    TransferOp,
    WalletRef,
)
from wallet_api.domain.planner import (
    BatchPlan,
    IdempotencyRecord,
    WalletState,
    apply_op,
    plan_batch,
)

NOW = "2025-01-01T00:00:00.000Z"
ACTOR = Actor("acme", "key_acme1", "req-1")


def ref(wallet_id: str, tenant: str = "acme") -> WalletRef:
    return WalletRef(tenant, wallet_id)


def _render(op: Op, outcome: Outcome) -> StoredResponse:
    return StoredResponse(200 if isinstance(outcome, Applied | TransferApplied) else 409, {})


def _states(**balances: Any) -> dict[WalletRef, WalletState | None]:
    """w=10 -> acme's EUR wallet w with balance 10; w=("USD", 5) -> a USD wallet."""
    states: dict[WalletRef, WalletState | None] = {}
    for wallet_id, spec in balances.items():
        currency, balance = spec if isinstance(spec, tuple) else ("EUR", spec)
        states[ref(wallet_id)] = WalletState(currency, balance, seq=0)
    return states


def _plan(ops: list[Op], states: dict[WalletRef, WalletState | None], **records: Any) -> BatchPlan:
    return plan_batch(
        ops,
        states,
        records,
        absent_at_first_read=set(),
        now=NOW,
        render=_render,
    )


def _total(states: dict[WalletRef, WalletState | None]) -> int:
    return sum(s.balance for s in states.values() if s is not None)


def test_overdraft_is_refused_and_changes_nothing() -> None:
    states = _states(w=10)
    outcome, entries = apply_op(MoneyOp(EntryType.WITHDRAWAL, "w", 11, actor=ACTOR), states, NOW)
    assert isinstance(outcome, Refused) and isinstance(outcome.refusal, InsufficientFunds)
    assert entries == []
    state = states[ref("w")]
    assert state is not None and (state.balance, state.seq, state.changed) == (10, 0, False)


def test_balance_cap_is_the_json_safe_integer_limit() -> None:
    states = _states(w=MAX_SAFE_BALANCE - 1)
    ok, _ = apply_op(MoneyOp(EntryType.DEPOSIT, "w", 1, actor=ACTOR), states, NOW)
    assert isinstance(ok, Applied) and ok.entry.balance_after == MAX_SAFE_BALANCE
    refused, entries = apply_op(MoneyOp(EntryType.DEPOSIT, "w", 1, actor=ACTOR), states, NOW)
    assert isinstance(refused, Refused) and isinstance(refused.refusal, BalanceLimitExceeded)
    assert entries == []
    # A transfer into a full wallet is refused as a whole: the source keeps its money.
    states = _states(src=5, full=MAX_SAFE_BALANCE)
    outcome, _ = apply_op(TransferOp("src", "full", 1, actor=ACTOR), states, NOW)
    assert isinstance(outcome, Refused) and isinstance(outcome.refusal, BalanceLimitExceeded)
    assert _total(states) == 5 + MAX_SAFE_BALANCE
    assert not any(s.changed for s in states.values() if s is not None)


def test_currency_mismatch_is_refused() -> None:
    states = _states(eur=100, usd=("USD", 0))
    outcome, entries = apply_op(TransferOp("eur", "usd", 1, actor=ACTOR), states, NOW)
    assert isinstance(outcome, Refused) and isinstance(outcome.refusal, CurrencyMismatch)
    assert "EUR" in outcome.refusal.detail and "USD" in outcome.refusal.detail
    assert entries == [] and _total(states) == 100


@pytest.mark.parametrize("balance", [0, 1, 100])
@pytest.mark.parametrize("amount", [1, 100, 101])
def test_self_transfer_never_creates_money_below_the_route_check(balance: int, amount: int) -> None:
    states = _states(w=balance)
    outcome, entries = apply_op(TransferOp("w", "w", amount, actor=ACTOR), states, NOW)
    assert isinstance(outcome, Refused) and isinstance(outcome.refusal, SameWallet)
    assert entries == [] and _total(states) == balance
    # The same inside a batch, between other ops on the wallet.
    states = _states(w=balance)
    ops: list[Op] = [
        MoneyOp(EntryType.DEPOSIT, "w", 5, actor=ACTOR),
        TransferOp("w", "w", amount, actor=ACTOR),
        MoneyOp(EntryType.WITHDRAWAL, "w", 5, actor=ACTOR),
    ]
    plan = _plan(ops, states)
    assert [type(o) for o in plan.outcomes] == [Applied, Refused, Applied]
    assert _total(states) == balance
    assert [e.balance_after for _, e in plan.entries] == [balance + 5, balance]


def test_transfers_conserve_money_and_post_both_sides() -> None:
    states = _states(a=100, b=7)
    outcome, entries = apply_op(TransferOp("a", "b", 30, id="t1", actor=ACTOR), states, NOW)
    assert isinstance(outcome, TransferApplied)
    assert (outcome.debit.balance_after, outcome.credit.balance_after) == (70, 37)
    assert [(e.wallet_id, e.type, e.counterparty, e.transfer_id) for e in entries] == [
        ("a", "transfer_out", "b", "t1"),
        ("b", "transfer_in", "a", "t1"),
    ]
    assert [e.id for e in entries] == ["t1-out", "t1-in"]
    assert _total(states) == 107


def test_a_batch_applies_in_order_against_a_running_balance() -> None:
    states = _states(w=0, v=0)
    ops: list[Op] = [
        MoneyOp(EntryType.DEPOSIT, "w", 10, actor=ACTOR),
        MoneyOp(EntryType.WITHDRAWAL, "w", 15, actor=ACTOR),  # only 10 so far
        MoneyOp(EntryType.DEPOSIT, "w", 10, actor=ACTOR),
        MoneyOp(EntryType.WITHDRAWAL, "w", 15, actor=ACTOR),  # fine now
        TransferOp("w", "v", 5, actor=ACTOR),
        MoneyOp(EntryType.DEPOSIT, "ghost", 1, actor=ACTOR),
    ]
    states[ref("ghost")] = None
    plan = _plan(ops, states)
    kinds = [type(o).__name__ for o in plan.outcomes]
    assert kinds == ["Applied", "Refused", "Applied", "Applied", "TransferApplied", "Refused"]
    ghost = plan.outcomes[-1]
    assert isinstance(ghost, Refused) and isinstance(ghost.refusal, WalletNotFound)
    assert [(wallet, e.wallet_id, e.seq) for wallet, e in plan.entries] == [
        (ref("w"), "w", 1),
        (ref("w"), "w", 2),
        (ref("w"), "w", 3),
        (ref("w"), "w", 4),
        (ref("v"), "v", 1),
    ]
    w, v = states[ref("w")], states[ref("v")]
    assert w is not None and v is not None and (w.balance, v.balance) == (0, 5)


def test_idempotency_records_replays_and_conflicts() -> None:
    states = _states(w=0)
    first = Idempotency("k1", "fp1")
    stored = IdempotencyRecord("fp1", response=StoredResponse(200, {"balance": 1}))
    ops: list[Op] = [
        MoneyOp(EntryType.DEPOSIT, "w", 1, first, actor=ACTOR),  # replayed from the record
        MoneyOp(EntryType.DEPOSIT, "w", 1, Idempotency("k1", "other"), actor=ACTOR),  # reused key
        MoneyOp(
            EntryType.WITHDRAWAL, "w", 5, Idempotency("k2", "fp2"), actor=ACTOR
        ),  # refused: recorded
        MoneyOp(
            EntryType.WITHDRAWAL, "w", 5, Idempotency("k2", "fp2"), actor=ACTOR
        ),  # same key, same batch
        MoneyOp(
            EntryType.DEPOSIT, "ghost", 1, Idempotency("k3", "fp3"), actor=ACTOR
        ),  # not recorded
    ]
    states[ref("ghost")] = None
    plan = _plan(ops, states, k1=stored)
    replay, reused, refused, in_use, ghost = plan.outcomes
    assert isinstance(replay, Replayed) and replay.response.body == {"balance": 1}
    assert isinstance(reused, KeyReused)
    assert isinstance(refused, Refused) and isinstance(in_use, KeyInUse)
    assert isinstance(ghost, Refused)
    assert [key for key, _ in plan.records] == ["k2"]
    recorded = plan.records[0][1].outcome
    assert isinstance(recorded, Refused) and isinstance(recorded.refusal, InsufficientFunds)
    assert plan.entries == []


def test_a_record_written_since_the_first_read_means_a_concurrent_winner() -> None:
    record = IdempotencyRecord("fp", response=StoredResponse(200, {}))
    plan = plan_batch(
        [MoneyOp(EntryType.DEPOSIT, "w", 1, Idempotency("k", "fp"), actor=ACTOR)],
        _states(w=0),
        {"k": record},
        absent_at_first_read={"k"},
        now=NOW,
        render=_render,
    )
    assert isinstance(plan.outcomes[0], KeyInUse) and plan.entries == []


def test_the_ledger_never_trusts_non_positive_amounts() -> None:
    with pytest.raises(ValueError):
        apply_op(MoneyOp(EntryType.DEPOSIT, "w", 0, actor=ACTOR), _states(w=1), NOW)


def test_an_op_sees_only_its_own_tenants_wallets() -> None:
    """Another tenant's wallet with the same id is not found, exactly like a
    missing one: same refusal, same detail, nothing posted anywhere."""
    globex = Actor("globex", "key_globex1", "req-2")
    states = _states(w=100, v=0)
    missing, _ = apply_op(MoneyOp(EntryType.WITHDRAWAL, "nobody", 1, actor=globex), states, NOW)
    outcomes = [
        apply_op(MoneyOp(EntryType.WITHDRAWAL, "w", 1, actor=globex), states, NOW),
        apply_op(MoneyOp(EntryType.DEPOSIT, "w", 1, actor=globex), states, NOW),
        apply_op(TransferOp("w", "v", 1, actor=globex), states, NOW),
    ]
    assert isinstance(missing, Refused) and isinstance(missing.refusal, WalletNotFound)
    for outcome, entries in outcomes:
        assert isinstance(outcome, Refused) and isinstance(outcome.refusal, WalletNotFound)
        assert entries == []
    detail = outcomes[0][0].refusal.detail  # type: ignore[union-attr]
    assert detail == missing.refusal.detail.replace("nobody", "w")
    # A transfer from globex's own wallet into acme's is refused as a whole too.
    states[ref("own", "globex")] = WalletState("EUR", 50, seq=0)
    outcome, entries = apply_op(TransferOp("own", "w", 10, actor=globex), states, NOW)
    assert isinstance(outcome, Refused) and isinstance(outcome.refusal, WalletNotFound)
    assert "'w'" in outcome.refusal.detail and entries == []
    assert _total(states) == 150 and not any(s.changed for s in states.values() if s)


def test_every_entry_records_the_key_id_and_request_id() -> None:
    states = _states(a=100, b=0)
    plan = _plan(
        [
            MoneyOp(EntryType.DEPOSIT, "a", 1, actor=ACTOR),
            TransferOp("a", "b", 5, actor=Actor("acme", "key_acme2", "req-9")),
        ],
        states,
    )
    audit = [(e.key_id, e.request_id) for _, e in plan.entries]
    assert audit == [("key_acme1", "req-1"), ("key_acme2", "req-9"), ("key_acme2", "req-9")]
    assert plan.entries[0][1].to_dict()["key_id"] == "key_acme1"


def test_a_record_from_before_tenants_answers_for_its_key() -> None:
    """Idempotency.legacy_key: a request answered before the upgrade (its record
    scoped per API key) is replayed, not applied again; a record under the new
    key wins; a legacy record for another body is a reused key."""
    old = IdempotencyRecord("fp", response=StoredResponse(200, {"balance": 7}))
    new = IdempotencyRecord("fp", response=StoredResponse(200, {"balance": 8}))
    states = _states(w=0)
    ops: list[Op] = [
        MoneyOp(EntryType.DEPOSIT, "w", 1, Idempotency("k1", "fp", "old1"), actor=ACTOR),
        MoneyOp(EntryType.DEPOSIT, "w", 1, Idempotency("k2", "fp", "old2"), actor=ACTOR),
        MoneyOp(EntryType.DEPOSIT, "w", 1, Idempotency("k3", "other", "old3"), actor=ACTOR),
        MoneyOp(EntryType.DEPOSIT, "w", 1, Idempotency("k4", "fp", "old4"), actor=ACTOR),
    ]
    plan = _plan(ops, states, old1=old, k2=new, old2=old, old3=old)
    legacy, current, reused, fresh = plan.outcomes
    assert isinstance(legacy, Replayed) and legacy.response.body == {"balance": 7}
    assert isinstance(current, Replayed) and current.response.body == {"balance": 8}
    assert isinstance(reused, KeyReused)
    assert isinstance(fresh, Applied)
    assert [key for key, _ in plan.records] == ["k4"]  # written under the new key only


def test_an_unreadable_record_from_before_tenants_fails_its_op_only() -> None:
    """A legacy record that cannot be read may be the answer to this very request:
    the op fails rather than being applied (again); its neighbour goes ahead."""
    states = _states(w=0)
    ops: list[Op] = [
        MoneyOp(EntryType.DEPOSIT, "w", 1, Idempotency("k1", "fp", "old1"), actor=ACTOR),
        MoneyOp(EntryType.DEPOSIT, "w", 2, Idempotency("k2", "fp", "old2"), actor=ACTOR),
    ]
    trouble = ValueError("not a record")
    plan = plan_batch(
        ops, states, {}, absent_at_first_read=set(), now=NOW, render=_render,
        broken={"old1": trouble},
    )  # fmt: skip
    failed, applied = plan.outcomes
    assert isinstance(failed, Failed) and failed.error is trouble
    assert isinstance(applied, Applied) and _total(states) == 2
    assert [key for key, _ in plan.records] == ["k2"]

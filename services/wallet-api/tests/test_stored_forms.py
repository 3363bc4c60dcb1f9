"""The compact stored forms of ledger entries and idempotency records: they read
back to exactly what was written, replays answer byte for byte what the first
request got, and data in the verbose forms of earlier releases stays readable."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from tests.helpers import ACTOR, Api, FakeRedis, auth, ref
from wallet_api.domain.ledger import EntryType, InsufficientFunds, LedgerEntry
from wallet_api.domain.operations import Applied, MoneyOp, Refused, TransferApplied
from wallet_api.domain.planner import IdempotencyRecord
from wallet_api.service import render
from wallet_api.store import (
    decode_entry,
    dump_record,
    encode_entry,
    idempotency_key,
    ledger_key,
    legacy_idempotency_key,
    load_record,
)

NOW = "2025-06-30T23:59:59.987Z"
# The audit fields as the API writes them: the key's public id, the request id (a uuid4
# hex unless the client sent a safe X-Request-ID).
AUDIT = {"key_id": "key_3f9a1c0e5b7d2a64", "request_id": "5" * 32}
DEPOSIT = LedgerEntry("0" * 32, "alice", 7, "deposit", 1250, 99_000, NOW, **AUDIT)
OUT = LedgerEntry(
    "a" * 32 + "-out", "alice", 8, "transfer_out", 500, 98_500, NOW, "a" * 32, "bob", **AUDIT
)
IN = LedgerEntry(
    "a" * 32 + "-in", "bob", 3, "transfer_in", 500, 500, NOW, "a" * 32, "alice", **AUDIT
)
BARE = LedgerEntry("0" * 32, "alice", 7, "deposit", 1250, 99_000, NOW)  # before issue 10
CLIENT_ID = LedgerEntry(
    "1" * 32, "alice", 9, "withdrawal", 1, 0, NOW, key_id="key_x-y_z", request_id="req.42:a-b"
)


@pytest.mark.parametrize(
    "entry", [DEPOSIT, OUT, IN, BARE, CLIENT_ID], ids=["deposit", "out", "in", "bare", "client-id"]
)
def test_entries_read_back_exactly(entry: LedgerEntry) -> None:
    member = encode_entry(entry)
    assert decode_entry(member, entry.seq, entry.wallet_id) == entry
    # What the key and the score say is not repeated in the member.
    assert entry.wallet_id not in member.replace(entry.counterparty or "\0", "")
    assert '"seq"' not in member and NOW not in member


def test_entries_are_compact() -> None:
    """At most 128 bytes with the audit fields (64 without): a small wallet's ledger
    then stays a listpack in Redis, whose redis-server runs with
    zset-max-listpack-value 128 (compose and chart; tests/parity)."""
    verbose = json.dumps(DEPOSIT.to_dict())
    member = encode_entry(DEPOSIT)
    assert len(member) <= 128 and len(verbose) > 250, (len(member), len(verbose))
    assert max(len(encode_entry(e)) for e in (OUT, IN, CLIENT_ID)) <= 128
    assert len(encode_entry(BARE)) <= 64


def test_a_foreign_timestamp_is_kept_as_it_is() -> None:
    odd = LedgerEntry("x", "w", 1, "withdrawal", 1, 0, "yesterday")
    assert decode_entry(encode_entry(odd), 1, "w") == odd


def test_verbose_entries_of_earlier_releases_are_read() -> None:
    assert decode_entry(json.dumps(OUT.to_dict()), OUT.seq, "ignored") == OUT


@pytest.mark.parametrize(
    "outcome",
    [
        Applied(DEPOSIT, "EUR"),
        TransferApplied(OUT, IN, "EUR"),
        Refused(InsufficientFunds("balance is 10, 15 requested")),
    ],
    ids=["applied", "transfer", "refused"],
)
def test_records_read_back_exactly(outcome: Applied | TransferApplied | Refused) -> None:
    key = idempotency_key(ref("alice"), "digest")
    record = IdempotencyRecord("f" * 32, outcome)
    loaded = load_record(dump_record(record).encode(), key)
    assert loaded is not None and loaded.fingerprint == record.fingerprint
    if isinstance(outcome, Refused):
        assert isinstance(loaded.outcome, Refused)
        assert type(loaded.outcome.refusal) is InsufficientFunds
        assert loaded.outcome.refusal.detail == outcome.refusal.detail
    else:
        assert loaded.outcome == outcome


def test_a_deposit_record_is_a_few_numbers_not_a_response() -> None:
    """The entry's member plus the fingerprint, currency and seq; the rendered answer
    (what earlier releases stored, with more) is over twice that."""
    record = IdempotencyRecord("f" * 32, Applied(DEPOSIT, "EUR"))
    value = dump_record(record)
    assert len(value) <= len(encode_entry(DEPOSIT)) + 32, value
    rendered = json.dumps(
        render(MoneyOp(EntryType.DEPOSIT, "alice", 1250, actor=ACTOR), record.outcome).body
    )
    assert len(rendered) > 2 * len(value), (len(rendered), len(value))


def test_replays_answer_byte_for_byte(api: Api, client: FlaskClient) -> None:
    api.create(wallet_id="a")
    api.create(wallet_id="b")
    api.move("deposit", "a", 100)
    calls = [
        ("/wallets/a/deposit", {"amount": 5}),
        ("/wallets/a/withdraw", {"amount": 500}),  # refused
        ("/transfers", {"from": "a", "to": "b", "amount": 7}),
    ]
    for n, (path, body) in enumerate(calls):
        headers = auth(**{"Idempotency-Key": f"k{n}"})
        first = client.post(path, json=body, headers=headers)
        api.move("deposit", "a", 1_000)  # later state must not leak into the replay
        again = client.post(path, json=body, headers=headers)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.status_code == first.status_code
        first_body, again_body = first.get_json(), again.get_json()
        if first.status_code >= 400:  # instance/request_id are per request
            for field in ("request_id",):
                first_body.pop(field), again_body.pop(field)
        assert again_body == first_body


def test_verbose_records_of_earlier_releases_are_replayed(
    api: Api, client: FlaskClient, fake_redis: FakeRedis
) -> None:
    """A record as 1.0 wrote it (fingerprint = full SHA-256, the rendered answer)."""
    import hashlib

    from wallet_api.service import fingerprint

    api.create(wallet_id="old")
    scope = hashlib.sha256(b"test-key-0123456789abcdef").digest().hex()[:16]
    digest = hashlib.sha256(b"legacy-key").hexdigest()[:32]
    full = hashlib.sha256(b'POST /wallets/old/deposit\n{"amount":3}').hexdigest()
    assert fingerprint("POST", "/wallets/old/deposit", {"amount": 3}) == full[:32]
    entry = LedgerEntry("0" * 32, "old", 1, "deposit", 3, 3, NOW)
    body = {"wallet_id": "old", "currency": "EUR", "balance": 3, "transaction": entry.to_dict()}
    fake_redis.set(
        legacy_idempotency_key(ref("old"), scope, digest),  # scoped per API key then
        json.dumps({"fingerprint": full, "op": "o", "status": 200, "body": body}),
    )
    r = api.move("deposit", "old", 3, key="legacy-key")
    assert r.status_code == 200 and r.headers["Idempotent-Replayed"] == "true"
    assert r.get_json() == body
    assert api.balance("old") == 0


def test_the_ledger_key_holds_compact_members(api: Api, fake_redis: FakeRedis) -> None:
    api.create(wallet_id="w")
    api.move("deposit", "w", 42)
    (member,) = fake_redis.zrange(ledger_key(ref("w")), 0, -1)
    assert member.startswith(b"d") and b",42,42," in member and b"wallet_id" not in member

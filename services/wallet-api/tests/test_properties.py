"""Property tests: generated bodies, query strings, path ids and headers, aimed
at the classes of bug of issue 9 (control characters, trailing newlines,
Unicode digits, huge numbers, deep nesting).

For every request: never a 5xx; the status is one the OpenAPI document lists
for the operation, with a matching body, media type and headers
(helpers.check); and a refused request changes no stored state at all (none of
these requests sends an Idempotency-Key that could record a refusal, except
the header test, whose body can only be applied or refused by validation).
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import Api, auth, check

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    # The app fixture is shared by a test's examples on purpose: state built up
    # by accepted requests makes later refusals meaningful.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WALLET = "prop"
MONEY_URLS = (f"/wallets/{WALLET}/deposit", f"/wallets/{WALLET}/withdraw", "/transfers")

# -- strategies ------------------------------------------------------------------

TRICKY = ["\n", "\r\n", "\x00", "\x1f", "\x7f", "\t", " ", "\u2028", "\u00a0", "\ufeff"]
# Unicode digits (superscript two, Arabic-Indic three, fullwidth one, Bengali three,
# mathematical bold nine, Arabic-Indic ten) and what int() accepts but the API must not.
DIGITS = ["\u00b2", "\u0663", "\uff11", "\u09e9", "\U0001d7d7", "\u0661\u0660"]
DIGITS += ["1_0", "+5", "-1", " 5", "5 ", "0x10", "1e3"]
IDS = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=70)
tricky_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(TRICKY + DIGITS),
    st.builds(lambda s, t: s + t, IDS, st.sampled_from(TRICKY)),  # "abc\n" and friends
    st.builds(lambda t, s: t + s, st.sampled_from(TRICKY), IDS),
    st.sampled_from(["EUR", "EUR\n", "eur", "\uff25\uff35\uff32", WALLET, WALLET + "\n"]),
)
huge_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**53 - 3, max_value=2**53 + 3),
    st.sampled_from([0, 1, -1, 2**63, -(2**63), 10**30, 10**400]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    tricky_text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = ["amount", "currency", "id", "from", "to"]
VALID = {
    "/wallets": {"currency": "EUR", "id": "fresh"},
    "/transfers": {"from": WALLET, "to": "other", "amount": 5},
}
suffixed = st.builds(
    lambda v, t: v + t, st.sampled_from(["EUR", WALLET, "5"]), st.sampled_from(TRICKY)
)
near_values = st.one_of(json_values, tricky_text, suffixed, st.sampled_from(DIGITS), huge_ints)
arbitrary_bodies = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), tricky_text), json_values, max_size=4
)


@st.composite
def near_valid_bodies(draw: st.DrawFn, url: str) -> dict[str, Any]:
    """A valid body for `url` with one field changed, dropped or added: the
    requests most likely to slip past a rule."""
    body = dict(VALID.get(url, {"amount": 5}))
    field = draw(st.sampled_from([*body, "extra"]))
    action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
    if action == "drop":
        body.pop(field, None)
    elif action == "add":
        body[draw(st.one_of(st.sampled_from(FIELDS), tricky_text))] = draw(near_values)
    else:
        body[field] = draw(near_values)
    return body


def bodies_for(url: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(near_valid_bodies(url), arbitrary_bodies)


bodies = st.sampled_from(("/wallets", *MONEY_URLS)).flatmap(
    lambda url: st.tuples(st.just(url), bodies_for(url))
)
deep = st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "1" + "]" * n)
raw_bodies = st.one_of(
    arbitrary_bodies.map(json.dumps),
    deep,
    deep.map(lambda nested: '{"amount": ' + nested + "}"),
    st.sampled_from(
        ["[" * 100_000, '{"amount": 1e400}', '{"amount": NaN}', '{"amount": ' + "9" * 5000 + "}"]
    ),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    st.builds(
        lambda a, b: json.dumps(a)[:-1] + ", " + json.dumps(b)[1:], bodies, bodies
    ),  # dup keys
)
path_ids = st.one_of(
    tricky_text.filter(bool), IDS, st.sampled_from(["..", ".", "%", "a/b", WALLET])
)
query_values = st.one_of(
    st.sampled_from(DIGITS + TRICKY + ["1", "20", "100", "101", "0", ""]),
    st.builds(
        lambda d, t: d + t, st.sampled_from(["1", "5", "99"]), st.sampled_from(TRICKY + DIGITS)
    ),
    huge_ints.map(str),
    tricky_text,
)
query_pairs = st.lists(
    st.tuples(st.one_of(st.sampled_from(["limit", "cursor"]), tricky_text), query_values),
    max_size=3,
)

# -- helpers ---------------------------------------------------------------------


@pytest.fixture
def seeded(api: Api, client: FlaskClient) -> Api:
    api.create("EUR", WALLET)
    api.create("EUR", "other")
    api.move("deposit", WALLET, 500)
    return api


def _state(redis: fakeredis.FakeRedis) -> dict[bytes, Any]:
    return {key: redis.dump(key) for key in redis.keys("*")}


def _send(
    client: FlaskClient, redis: fakeredis.FakeRedis, method: str, url: str, **kwargs: Any
) -> int:
    before = _state(redis)
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code < 500, (url, response.get_json())
    check(method, url, response)
    if response.status_code >= 400:
        assert _state(redis) == before, (url, response.status_code, "a refusal changed state")
    return int(response.status_code)


# -- properties ------------------------------------------------------------------


@PROPERTY
@given(request=bodies)
@example(request=("/wallets", {"currency": "EUR", "id": "abc\n"}))  # issue 9: 500 after a write
@example(request=("/wallets", {"currency": "EUR\n"}))  # issue 9: 201
@example(request=("/transfers", {"from": WALLET, "to": WALLET, "amount": 1}))
def test_generated_json_bodies(
    seeded: Api, client: FlaskClient, fake_redis: fakeredis.FakeRedis, request: tuple[str, Any]
) -> None:
    url, body = request
    _send(client, fake_redis, "post", url, data=json.dumps(body), headers=auth(**_json_type()))


@PROPERTY
@given(url=st.sampled_from(("/wallets", *MONEY_URLS)), raw=raw_bodies)
def test_raw_bodies_deep_nesting_and_huge_numbers(
    seeded: Api, client: FlaskClient, fake_redis: fakeredis.FakeRedis, url: str, raw: str
) -> None:
    status = _send(client, fake_redis, "post", url, data=raw, headers=auth(**_json_type()))
    assert status in (200, 201, 400, 404, 409, 413, 422)


@PROPERTY
@given(pairs=query_pairs)
@example(pairs=[("limit", "\u00b2")])  # issue 9: 500
@example(pairs=[("cursor", "\u00b2")])  # issue 9: 500
@example(pairs=[("limit", "5\n")])
def test_generated_query_strings(
    seeded: Api, client: FlaskClient, fake_redis: fakeredis.FakeRedis, pairs: list[tuple[str, str]]
) -> None:
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    before = _state(fake_redis)
    status = _send(
        client, fake_redis, "get", f"/wallets/{WALLET}/transactions?{query}", headers=auth()
    )
    assert status in (200, 422)
    assert _state(fake_redis) == before  # a read never writes


@PROPERTY
@given(wallet_id=path_ids, kind=st.sampled_from(["", "/transactions", "/deposit", "/withdraw"]))
@example(wallet_id=WALLET + "\n", kind="/deposit")
@example(wallet_id="/" + WALLET, kind="")  # was a 308 redirect to the valid id
@example(wallet_id="/" + WALLET, kind="/deposit")
def test_generated_path_ids(
    seeded: Api, client: FlaskClient, fake_redis: fakeredis.FakeRedis, wallet_id: str, kind: str
) -> None:
    url = f"/wallets/{quote(wallet_id, safe='')}{kind}"
    if kind in ("/deposit", "/withdraw"):
        status = _send(client, fake_redis, "post", url, json={"amount": 1}, headers=auth())
    else:
        status = _send(client, fake_redis, "get", url, headers=auth())
    if status < 400:
        assert wallet_id in (WALLET, "other")  # only real ids are found


@PROPERTY
@given(key=st.one_of(tricky_text.filter(lambda k: "\n" not in k and "\r" not in k), IDS))
def test_generated_idempotency_keys(
    seeded: Api, client: FlaskClient, fake_redis: fakeredis.FakeRedis, key: str
) -> None:
    try:
        headers = auth(**{"Idempotency-Key": key})
        status = _send(
            client,
            fake_redis,
            "post",
            f"/wallets/{WALLET}/deposit",
            json={"amount": 1},
            headers=headers,
        )
    except UnicodeEncodeError:
        return  # not sendable as an HTTP header at all: nothing reached the API
    assert status in (200, 422)


def _json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}

"""API key definitions: who a key is, what it may do, and how its token is known.

A key has a public id (``key_...``: what logs and ledger entries show), a
tenant (the wallets it can see and move money in), a set of scopes, and the
SHA-256 digest of its secret token -- never the token itself.

Definitions come from the file named by WALLET_API_KEYS_FILE (JSON or YAML, read
once at start; ``stackctl keys create`` writes them)::

    keys:
      - id: key_3f9a1c0e5b7d2a64
        tenant: acme
        scopes: [wallets:read, wallets:create, money:move]
        digest: sha256:<64 hex digits of sha256(token)>
        description: payments backend        # optional, never interpreted

or, for development, from WALLET_API_KEYS=token,...: each token is a key of
tenant ``default`` with every scope, whose id is derived from its digest.

Why a plain SHA-256 and not a password hash (bcrypt, argon2): the tokens are
random secrets of 256 bits (``stackctl keys create``), not passwords a person
chose, so nobody can guess one from its digest however fast the hash is, and
checking a key costs a microsecond per request instead of milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wallet_api.domain.operations import DEFAULT_TENANT

WALLETS_READ = "wallets:read"
WALLETS_CREATE = "wallets:create"
MONEY_MOVE = "money:move"
# What each scope allows: the wallet routes (routes/wallets.py) declare theirs.
SCOPES = {
    WALLETS_READ: "read wallets and their transactions",
    WALLETS_CREATE: "create wallets",
    MONEY_MOVE: "deposit, withdraw and transfer",
}
MIN_TOKEN_LENGTH = 16
DIGEST_PREFIX = "sha256:"
# Tenants and key ids become parts of Redis keys and log fields: no ':', '{',
# '}' or spaces (store.py relies on the absence of ':').
TENANT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
KEY_ID_PATTERN = r"^key_[A-Za-z0-9_-]{4,64}$"


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    scopes: frozenset[str]
    digest: bytes  # sha256(token)

    @property
    def legacy_scope(self) -> str:
        """How idempotency records were scoped before tenants: per API key."""
        return self.digest.hex()[:16]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def development_key(token: str) -> ApiKey:
    """A WALLET_API_KEYS token: tenant `default`, every scope, an id derived
    from its digest (so it is the same on every replica and every restart)."""
    digest = token_digest(token)
    return ApiKey("key_" + digest.hex()[:16], DEFAULT_TENANT, frozenset(SCOPES), digest)


def parse_tokens(raw: str) -> tuple[ApiKey, ...]:
    """WALLET_API_KEYS: comma-separated tokens of at least MIN_TOKEN_LENGTH characters."""
    tokens = tuple(k.strip() for k in raw.split(",") if k.strip())
    if not tokens:
        raise ValueError("set at least one bearer token (comma-separated)")
    short = [i for i, k in enumerate(tokens) if len(k) < MIN_TOKEN_LENGTH]
    if short:
        raise ValueError(f"key #{short[0] + 1} is shorter than {MIN_TOKEN_LENGTH} characters")
    return _unique(tuple(development_key(t) for t in tokens))


# -- the definitions file ---------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class KeyDefinition(_Strict):
    id: Annotated[str, Field(pattern=KEY_ID_PATTERN)]
    tenant: Annotated[str, Field(pattern=TENANT_PATTERN)]
    scopes: Annotated[
        list[Literal["wallets:read", "wallets:create", "money:move"]], Field(min_length=1)
    ]
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    description: str | None = None


class KeysFile(_Strict):
    keys: Annotated[list[KeyDefinition], Field(min_length=1)]


def load_file(path: str) -> tuple[ApiKey, ...]:
    """The key definitions of a JSON or YAML file; ValueError in one line otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        # JSON by its first character, else YAML (PyYAML, YAML 1.1, misreads some JSON).
        data = json.loads(text) if text.lstrip()[:1] in ("{", "[") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not valid JSON or YAML ({first_line})") from None
    try:
        parsed = KeysFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        raise ValueError(f"{path}: {where.lstrip('.') or 'document'}: {error['msg']}") from None
    keys = tuple(
        ApiKey(
            d.id,
            d.tenant,
            frozenset(d.scopes),
            bytes.fromhex(d.digest.removeprefix(DIGEST_PREFIX)),
        )
        for d in parsed.keys
    )
    try:
        return _unique(keys)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _unique(keys: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
    """Ids must be unique (logs and ledgers name keys by them), and so must
    digests: one token with two definitions would be ambiguous."""
    seen_ids: set[str] = set()
    seen_digests: set[bytes] = set()
    for key in keys:
        if key.id in seen_ids:
            raise ValueError(f"key id {key.id} is defined twice")
        if key.digest in seen_digests:
            raise ValueError(f"key {key.id} has the same token (digest) as another key")
        seen_ids.add(key.id)
        seen_digests.add(key.digest)
    return keys

"""`stackctl keys` (`make key`): the wallet-api's key definitions (WALLET_API_KEYS_FILE).

    stackctl keys create --tenant acme --scopes wallets:read,money:move [--description TEXT]
    stackctl keys list
    stackctl keys revoke key_...

`create` makes a random token, prints it once (stdout, nothing else there) and
writes only its SHA-256 digest into the definitions, with a new public id
(`key_...`), the tenant and the scopes. `revoke` removes a definition. The
default file is `.secrets/api-keys.yaml`, which compose mounts into wallet-api as
a secret; `--file` edits any other (e.g. the file of the chart's existingSecret).
wallet-api reads the file at start: restart it (compose) or roll it out (chart).

`make secrets` keeps the development keys of `.env` (WALLET_API_KEYS: tenant
`default`, every scope) in the same file: it adds the digest of each token there
and removes those of tokens no longer there. Such a definition is recognised by
its id, which is derived from its digest (`key_` + its first 16 hex digits),
exactly as wallet-api derives the id of a WALLET_API_KEYS token; `create` makes
random ids, so the two kinds never mix.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import yaml

# As wallet-api defines them (services/wallet-api/src/wallet_api/keys.py; a test
# keeps the two in step).
SCOPES = ("wallets:read", "wallets:create", "money:move")
DEFAULT_TENANT = "default"
TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")
FILE_MODE = 0o644
DEVELOPMENT = "development key: WALLET_API_KEYS in .env (make secrets)"
HEADER = """\
# wallet-api key definitions (WALLET_API_KEYS_FILE): digests of the tokens, never the tokens.
# Edit with `stackctl keys` (make key); `make secrets` keeps the development keys of
# WALLET_API_KEYS in .env here. wallet-api reads this file at start.
"""


class KeysError(ValueError):
    """A bad request or file; the message is one line."""


def token_digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def development_id(digest: str) -> str:
    return "key_" + digest.removeprefix("sha256:")[:16]


def read(path: Path) -> list[dict[str, Any]]:
    """The definitions of `path` ([] when it does not exist)."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise KeysError(f"{path}: cannot read it ({str(exc).splitlines()[0]})") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(
        isinstance(k, dict) and isinstance(k.get("id"), str) and isinstance(k.get("digest"), str)
        for k in keys
    ):
        raise KeysError(f"{path}: not a key definitions file (a `keys:` list of definitions)")
    return keys


def write(path: Path, keys: list[dict[str, Any]]) -> None:
    """Replace `path` atomically (wallet-api never reads half a file).

    Mode 644: compose bind-mounts the file into the container, whose user (uid
    10001) must read it. It holds digests only, and `.secrets/` (700) keeps the
    other users of this machine out."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = HEADER + yaml.safe_dump({"keys": keys}, sort_keys=False, default_flow_style=None)
    fd, tmp = tempfile.mkstemp(prefix=".api-keys-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_scopes(raw: str) -> list[str]:
    scopes = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise KeysError(
            f"scopes must be a comma-separated subset of {','.join(SCOPES)}, got {raw!r}"
        )
    return list(dict.fromkeys(scopes))


def create(
    path: Path, tenant: str, scopes: list[str], description: str | None = None
) -> tuple[dict[str, Any], str]:
    """Add a new key to `path`; returns its definition and its token."""
    if not TENANT.fullmatch(tenant):
        raise KeysError(
            f"tenant must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-', got {tenant!r}"
        )
    keys = read(path)
    token = "wsk_" + secrets.token_urlsafe(32)  # 256 random bits
    definition: dict[str, Any] = {
        "id": "key_" + secrets.token_hex(8),
        "tenant": tenant,
        "scopes": scopes,
        "digest": token_digest(token),
    }
    if description:
        definition["description"] = description
    write(path, [*keys, definition])
    return definition, token


def revoke(path: Path, key_id: str) -> dict[str, Any]:
    keys = read(path)
    kept = [k for k in keys if k["id"] != key_id]
    if len(kept) == len(keys):
        raise KeysError(f"{path}: no key {key_id}")
    if not kept:
        raise KeysError(f"{key_id} is the last key in {path}: wallet-api would accept none")
    write(path, kept)
    return next(k for k in keys if k["id"] == key_id)


def sync_development(path: Path, tokens: list[str]) -> tuple[int, int]:
    """Make the development keys in `path` those of `tokens` (see the module
    docstring); other definitions are kept as they are. Returns (added, removed)."""
    keys = read(path)
    wanted = {token_digest(t) for t in tokens}
    kept = [k for k in keys if k["id"] != development_id(k["digest"]) or k["digest"] in wanted]
    present = {k["digest"] for k in kept}
    added = [
        {
            "id": development_id(d),
            "tenant": DEFAULT_TENANT,
            "scopes": list(SCOPES),
            "digest": d,
            "description": DEVELOPMENT,
        }
        for d in sorted(wanted - present)
    ]
    removed = len(keys) - len(kept)
    if added or removed or not path.exists():
        write(path, kept + added)
    return len(added), removed


def describe(key: dict[str, Any]) -> str:
    scopes = ", ".join(key.get("scopes") or [])
    text = f"{key['id']}  tenant {key.get('tenant')}  scopes {scopes}"
    return text + (f"  ({key['description']})" if key.get("description") else "")

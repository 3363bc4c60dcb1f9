"""Bearer API keys: which key is calling (401 if none), and may it (403)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from wallet_api.keys import ApiKey
from wallet_api.problems import ProblemError, problem

_REALM = 'Bearer realm="wallet-api"'


class ApiKeys:
    def __init__(self, keys: Sequence[ApiKey]) -> None:
        # Only digests are held: the tokens never reach this process when the
        # keys come from WALLET_API_KEYS_FILE.
        self._keys = tuple(keys)

    def authenticate(self, header: str | None) -> ApiKey:
        """The caller's key, or 401."""
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("send Authorization: Bearer <api key>")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found: ApiKey | None = None
        for key in self._keys:  # every digest compared, in constant time: no early exit
            if hmac.compare_digest(key.digest, digest):
                found = key
        if found is None:
            raise _unauthorized("the API key is not valid")
        return found


def require_scope(key: ApiKey, scope: str) -> None:
    """403 unless the key has the scope; checked before the request is read any
    further, so nothing changes and nothing is revealed (RFC 6750 section 3.1)."""
    if scope not in key.scopes:
        raise ProblemError(
            problem(
                403,
                "insufficient-scope",
                "Insufficient scope",
                f"this API key lacks the scope {scope!r}",
            ),
            {"WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope}"'},
        )


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        problem(401, "unauthorized", "Unauthorized", detail), {"WWW-Authenticate": _REALM}
    )

"""Bearer API keys, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from wallet_api.problems import ProblemError, problem


class ApiKeys:
    def __init__(self, keys: Sequence[str]) -> None:
        # Compare digests, not raw keys: equal-length inputs for compare_digest,
        # and the raw keys need not stay referenced by request-handling code.
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def authenticate(self, header: str | None) -> str:
        """Return the caller's scope (a stable, non-secret key id) or raise 401."""
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("send Authorization: Bearer <api key>")
        digest = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for candidate in self._digests:  # no early exit: timing says nothing
            matched |= hmac.compare_digest(candidate, digest)
        if not matched:
            raise _unauthorized("the API key is not valid")
        return digest.hex()[:16]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        problem(401, "unauthorized", "Unauthorized", detail),
        {"WWW-Authenticate": 'Bearer realm="wallet-api"'},
    )

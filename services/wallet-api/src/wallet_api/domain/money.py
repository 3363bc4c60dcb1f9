"""Money is an integer count of minor units (cents) plus an ISO 4217 code.

Floats never represent money here: JSON floats, numeric strings and booleans are
refused at the edge (models.py, strict mode), so arithmetic below is exact
integer arithmetic.
"""

from __future__ import annotations

# Balances stay within the integers a JavaScript client can hold exactly
# (Number.MAX_SAFE_INTEGER), so no consumer of the JSON silently rounds money.
MAX_SAFE_BALANCE = 2**53 - 1

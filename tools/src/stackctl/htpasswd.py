"""The basic-auth users file Traefik reads: one bcrypt line for BASIC_AUTH_USER.

bcrypt (not Apache's MD5 or SHA1) because Traefik verifies it and a leaked file then
costs an attacker real work per guess; cost 10 keeps a login check near 50 ms on the
shared Traefik. The `$2y$` prefix is what `htpasswd -B` writes; bcrypt's `$2b$` is the
same algorithm and Traefik accepts both.
"""

from __future__ import annotations

from pathlib import Path

import bcrypt

from stackctl.tls import write_file

COST = 10


def line(user: str, password: str, cost: int = COST) -> str:
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return f"{user}:{digest.replace('$2b$', '$2y$', 1)}"


def is_current(path: Path, user: str, password: str) -> bool:
    """True when the file holds exactly `user` with `password` (then it is kept: a new
    salt on every run would needlessly change a file Traefik has mounted)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    if len(lines) != 1 or ":" not in lines[0]:
        return False
    name, digest = lines[0].split(":", 1)
    if name != user:
        return False
    try:
        return bcrypt.checkpw(password.encode(), digest.replace("$2y$", "$2b$", 1).encode())
    except ValueError:
        return False


def ensure(path: Path, user: str, password: str) -> str | None:
    """Write the file unless it is current. Returns None when kept, else "created" or
    "rewritten" (in place: a running Traefik's bind mount sees it)."""
    if is_current(path, user, password):
        return None
    existed = write_file(path, (line(user, password) + "\n").encode(), 0o600)
    return "rewritten" if existed else "created"

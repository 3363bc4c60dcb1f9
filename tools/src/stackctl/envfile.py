"""The stack's secret settings in `.env`: which exist, what they may contain, how a
missing one is generated, and how a value is resolved (environment > .env > generated).

Compose reads `.env` itself, so the file is the single place the stack's secrets live;
python-dotenv parses and rewrites it (comments, `export`, quotes and every other line
are kept). Values are written unquoted when they only use characters that mean nothing
to compose or a POSIX shell, else single-quoted, which compose takes literally; the few
characters that no quoting survives in both (newline, `'`, `\\`) are refused.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values, set_key

_SAFE_UNQUOTED = re.compile(r"[A-Za-z0-9._~:/@+,%=-]*")
_NEVER = re.compile(r"[\n\r'\\]")


class SettingError(ValueError):
    """A supplied value is not acceptable; the message is one line naming the setting."""


@dataclass(frozen=True)
class Setting:
    """One secret setting of `.env`."""

    name: str
    pattern: str
    rule: str
    generate: Callable[[], str]

    def check(self, value: str) -> str:
        if not value:
            raise SettingError(f"{self.name} is empty")
        if _NEVER.search(value):
            raise SettingError(
                f"{self.name} must not contain newlines, single quotes or backslashes"
            )
        if not re.fullmatch(self.pattern, value):
            raise SettingError(f"{self.name} {self.rule}")
        return value


# wallet-api refuses a WALLET_API_KEYS token shorter than this (keys.MIN_TOKEN_LENGTH),
# but compose only hands it the digests `make secrets` writes, so the check is made here
# too (tools/tests/test_keys.py keeps the two equal).
MIN_API_KEY_LENGTH = 16
_API_KEY_CHARS = rf"[A-Za-z0-9._~+/=-]{{{MIN_API_KEY_LENGTH},}}"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "BASIC_AUTH_USER",
        r"[A-Za-z0-9._-]+",
        "may only use letters, digits, '.', '_' and '-'",
        lambda: "admin",
    ),
    Setting(
        "BASIC_AUTH_PASSWORD",
        r"[^\x00-\x1f\x7f]+",
        "must not contain control characters",
        lambda: secrets.token_hex(18),
    ),
    # Goes verbatim into REDIS_URL=redis://:PASSWORD@redis:6379/0.
    Setting(
        "REDIS_PASSWORD",
        r"[A-Za-z0-9._~-]+",
        "may only use URL-safe characters [A-Za-z0-9._~-]",
        lambda: secrets.token_hex(24),
    ),
    # Redis ACL users besides the app's `default`: operators/backups/replication, and
    # redis_exporter (docker-compose.yml lists their rules).
    Setting(
        "REDIS_ADMIN_PASSWORD",
        r"[A-Za-z0-9._~-]+",
        "may only use URL-safe characters [A-Za-z0-9._~-]",
        lambda: secrets.token_hex(24),
    ),
    Setting(
        "REDIS_EXPORTER_PASSWORD",
        r"[A-Za-z0-9._~-]+",
        "may only use URL-safe characters [A-Za-z0-9._~-]",
        lambda: secrets.token_hex(24),
    ),
    Setting(
        "WALLET_API_KEYS",
        rf"{_API_KEY_CHARS}(,{_API_KEY_CHARS})*",
        f"must be comma-separated tokens of at least {MIN_API_KEY_LENGTH} characters "
        "of [A-Za-z0-9._~+/=-]",
        lambda: secrets.token_hex(32),
    ),
)


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from: `environment`, `.env` or `generated`."""

    value: str
    source: str


def read(path: Path) -> dict[str, str]:
    """`.env` as compose reads it: last occurrence wins, empty values count as unset."""
    if not path.is_file():
        return {}
    try:
        values = dotenv_values(path, interpolate=False)
    except UnicodeDecodeError as exc:
        raise SettingError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    return {k: v for k, v in values.items() if v}


def write(path: Path, name: str, value: str) -> None:
    """Set NAME in `.env` in place, keeping every other line; the file stays mode 600."""
    if not path.exists():
        path.touch(mode=0o600)
    quote = "never" if _SAFE_UNQUOTED.fullmatch(value) else "always"
    set_key(path, name, value, quote_mode=quote)
    path.chmod(0o600)


def resolve(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, Resolved]:
    """Every setting's value: a non-empty environment variable wins (and is written to
    `.env`), then `.env`, else a new random value (written to `.env`). Supplied values
    are checked before anything is written, so a bad one changes nothing."""
    env = os.environ if environ is None else environ
    current = read(path)
    plan: dict[str, Resolved] = {}
    for setting in SETTINGS:
        if env.get(setting.name):
            plan[setting.name] = Resolved(setting.check(env[setting.name]), "environment")
        elif setting.name in current:
            plan[setting.name] = Resolved(setting.check(current[setting.name]), ".env")
        else:
            plan[setting.name] = Resolved(setting.generate(), "generated")
    for name, resolved in plan.items():
        if resolved.source != ".env" and current.get(name) != resolved.value:
            write(path, name, resolved.value)
    return plan

"""`stackctl secrets` (`make secrets`): everything local and secret the stack needs.

    .env                       BASIC_AUTH_USER, BASIC_AUTH_PASSWORD, REDIS_PASSWORD, WALLET_API_KEYS
    .secrets/htpasswd          bcrypt users file of Traefik's basic-auth middleware
    .secrets/api-keys.yaml     wallet-api key definitions (compose: WALLET_API_KEYS_FILE), the
                               digests of the WALLET_API_KEYS tokens (tenant `default`, every
                               scope) and of the keys `stackctl keys create` added (keys.py)
    .secrets/certs/ca.crt      local, name-constrained CA (trust it or `curl --cacert`)
    .secrets/certs/ca.key
    .secrets/certs/localhost.crt, localhost.key   the certificate of the *.localhost hosts

Idempotent: supplied values win (environment over `.env`), generated ones are kept on
later runs, certificates are renewed only when needed. Files are mode 600 (certificates
and the key digests 644: containers read them) in directories of mode 700. Secrets are
never printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from stackctl import envfile, htpasswd, keys, tls


def run(
    root: Path,
    *,
    force_certs: bool = False,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Create or refresh the secrets under `root`; raises envfile.SettingError (nothing
    written) on a bad supplied value."""
    env_path = root / ".env"
    secrets_dir = root / ".secrets"
    old_umask = os.umask(0o077)
    try:
        existed = env_path.exists()
        values = envfile.resolve(env_path, environ)
        if not existed:
            say("secrets: created .env")
        env_path.chmod(0o600)
        for name, resolved in values.items():
            if resolved.source == "generated":
                say(f"secrets: {name}: generated")
            elif resolved.source == "environment":
                say(f"secrets: {name}: taken from the environment")

        secrets_dir.mkdir(mode=0o700, exist_ok=True)
        secrets_dir.chmod(0o700)
        user = values["BASIC_AUTH_USER"].value
        did = htpasswd.ensure(secrets_dir / "htpasswd", user, values["BASIC_AUTH_PASSWORD"].value)
        say(
            "secrets: .secrets/htpasswd: "
            + ("up to date" if did is None else f"{did} (bcrypt, user {user})")
        )

        tokens = [t.strip() for t in values["WALLET_API_KEYS"].value.split(",") if t.strip()]
        added, removed = keys.sync_development(secrets_dir / "api-keys.yaml", tokens)
        say(
            "secrets: .secrets/api-keys.yaml: "
            + (
                f"development keys of WALLET_API_KEYS: {added} added, {removed} removed"
                if added or removed
                else "up to date"
            )
        )

        outcome = tls.ensure(tls.Paths(secrets_dir / "certs"), force=force_certs)
        if outcome.ca is not None:
            say(f"secrets: .secrets/certs/ca.crt: new local CA ({outcome.ca})")
            if outcome.ca != "missing":
                say("secrets:   trust the new ca.crt again where you had trusted the old one")
        if outcome.leaf is None:
            say("secrets: .secrets/certs/localhost.crt: up to date")
        else:
            say(
                f"secrets: .secrets/certs/localhost.crt: issued for {' '.join(tls.HOSTS)} "
                f"(valid {tls.LEAF_DAYS} days; {outcome.leaf})"
            )
        if removed or (added and existed):
            say("secrets: wallet-api reads its keys at start; if it runs:")
            say("secrets:   docker compose -f docker-compose.traefik.yml -f docker-compose.yml \\")
            say("secrets:     restart wallet-api")
        if did == "rewritten" or outcome.replaced_mounted_files:
            say("secrets: Traefik reads credentials and certificate at start; if it runs:")
            say("secrets:   docker compose -f docker-compose.traefik.yml restart traefik")
    finally:
        os.umask(old_umask)
    say("secrets: done. They live in .env and .secrets/ (gitignored: never commit them).")
    say("  basic-auth login (traefik/prometheus/whoami.localhost): grep BASIC_AUTH .env")
    say("  API key for wallet.localhost:                           grep WALLET_API_KEYS .env")

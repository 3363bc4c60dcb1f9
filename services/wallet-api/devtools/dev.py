"""`make dev`: the API under gunicorn on 127.0.0.1:$PORT, for people without Docker.

Uses REDIS_URL when set; otherwise starts a throwaway redis-server (Debian:
apt-get install redis-server). Without WALLET_API_KEYS_FILE or WALLET_API_KEYS
it generates a development key (tenant `default`, every scope) for this run and
prints it. Ctrl-C stops both.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from devtools.local_servers import SERVICE_DIR, redis_server


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    try:
        with redis_server() as server:
            print(f"dev: started redis-server on {server.url} (data is thrown away on exit)")
            yield server.url
    except RuntimeError as exc:
        sys.exit(f"dev: {exc}; or set REDIS_URL")


def main() -> int:
    port = os.environ.get("PORT", "8000")
    keys = {
        name: os.environ[name]
        for name in ("WALLET_API_KEYS_FILE", "WALLET_API_KEYS")
        if os.environ.get(name)
    }
    if not keys:
        keys = {"WALLET_API_KEYS": secrets.token_urlsafe(24)}
        print(f"dev: API key for this run: {keys['WALLET_API_KEYS']}")
    with _redis() as redis_url:
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            **keys,
            "HOST": "127.0.0.1",
            "PORT": port,
            "PROMETHEUS_MULTIPROC_DIR": os.environ.get(
                "PROMETHEUS_MULTIPROC_DIR",
                os.path.join(tempfile.gettempdir(), f"wallet-api-dev-{os.getuid()}"),
            ),
        }
        print(f"dev: http://127.0.0.1:{port}/status  docs: http://127.0.0.1:{port}/docs")
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(SERVICE_DIR / "gunicorn.conf.py")]
        with subprocess.Popen(cmd, env=env) as proc:  # noqa: S603
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
                return proc.wait()


if __name__ == "__main__":
    sys.exit(main())

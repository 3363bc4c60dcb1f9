"""wallet-stack repository tools.

`python -m stackctl secrets` creates what the compose stack needs and must never be
committed: `.env` values, the basic-auth htpasswd, a local CA and the TLS certificate
of the `*.localhost` hosts. It replaced a shell script that carried its own `.env`
parser, two bcrypt code paths (htpasswd or a Python module found on the machine) and
openssl configuration files; here those are the pinned libraries python-dotenv, bcrypt
and cryptography from the project's lock file, so a fresh machine needs nothing else.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (this package is installed editable from tools/src/stackctl).
REPO_ROOT = Path(__file__).resolve().parents[3]

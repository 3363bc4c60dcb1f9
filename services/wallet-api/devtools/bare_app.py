"""The bare Flask baseline of `make bench`: {"ok": true} and nothing else.

Served by the same gunicorn.conf.py as the API (worker class, workers, keep-alive,
logging: devtools.local_servers.api_server with app="devtools.bare_app:app"), so the
ratio "deposit / bare Flask" isolates what the API itself costs per request: routing
through its blueprints, auth, validation, metrics, the JSON access log and Redis.
gunicorn's own access log is switched on for it (to the same /dev/null as the API's
log), so the baseline does not skip logging altogether.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/healthz")
@app.get("/readyz")
def ok() -> dict[str, bool]:
    return {"ok": True}

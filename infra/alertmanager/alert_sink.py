#!/usr/bin/env python3
"""The stack's default alert receiver: Alertmanager's webhook, one JSON line per alert.

Why it exists: an alert that nobody receives is not an alert. Until an operator adds a
real receiver (email, chat, pager) to alertmanager.yml, every notification is written
to this service's log, where `make logs` shows it. It also answers GET /alerts with the
last 100 notifications, which the end-to-end test reads.

Standard library only; runs in the wallet-api base image (PYTHON_IMAGE).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20
RECENT: deque[dict[str, object]] = deque(maxlen=100)
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "alert-sink"

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        raw_length = self.headers.get("Content-Length") or "0"
        length = int(raw_length) if raw_length.isdigit() else -1
        if self.path != "/alerts" or not 0 < length <= MAX_BODY:
            self._send(400, {"error": "POST /alerts with a JSON body"})
            return
        try:
            notification = json.loads(self.rfile.read(length))
        except ValueError:
            self._send(400, {"error": "not JSON"})
            return
        alerts = notification.get("alerts", []) if isinstance(notification, dict) else []
        alerts = [a for a in alerts if isinstance(a, dict)] if isinstance(alerts, list) else []
        with LOCK:
            for alert in alerts:
                line = {
                    "status": alert.get("status"),
                    "alertname": (alert.get("labels") or {}).get("alertname"),
                    "severity": (alert.get("labels") or {}).get("severity"),
                    "summary": (alert.get("annotations") or {}).get("summary"),
                    "runbook_url": (alert.get("annotations") or {}).get("runbook_url"),
                    "startsAt": alert.get("startsAt"),
                    "labels": alert.get("labels"),
                }
                RECENT.append(line)
                print(json.dumps({"alert": line}), flush=True)
        self._send(200, {"received": len(alerts)})

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/alerts":
            with LOCK:
                self._send(200, list(RECENT))
        elif self.path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "GET /alerts or /healthz"})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per alert is the log; no access log


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9095
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()  # noqa: S104


if __name__ == "__main__":
    main()

"""infra/alertmanager/alert_sink.py, the stack's default alert receiver: what Alertmanager
sends is logged and listed; anything else gets a 400, never a dropped connection."""

from __future__ import annotations

import http.client
import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from stackctl import REPO_ROOT


@pytest.fixture
def sink() -> Iterator[tuple[str, int]]:
    spec = importlib.util.spec_from_file_location(
        "alert_sink", REPO_ROOT / "infra" / "alertmanager" / "alert_sink.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = ThreadingHTTPServer(("127.0.0.1", 0), module.Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _post(sink: tuple[str, int], body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*sink, timeout=5)
    conn.putrequest("POST", "/alerts", skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders(body)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_a_notification_is_listed(sink: tuple[str, int]) -> None:
    body = json.dumps(
        {"alerts": [{"status": "firing", "labels": {"alertname": "RedisDown"}}, 7]}
    ).encode()
    assert _post(sink, body, {"Content-Length": str(len(body))}) == (200, {"received": 1})
    conn = http.client.HTTPConnection(*sink, timeout=5)
    conn.request("GET", "/alerts")
    assert json.loads(conn.getresponse().read())[-1]["alertname"] == "RedisDown"


@pytest.mark.parametrize(
    ("body", "length"),
    [(b"{}", "abc"), (b"{}", "-2"), (b"{}", "0"), (b"not json", "8")],
)
def test_bad_requests_get_a_400(sink: tuple[str, int], body: bytes, length: str) -> None:
    status, answer = _post(sink, body, {"Content-Length": length})
    assert status == 400 and "error" in answer

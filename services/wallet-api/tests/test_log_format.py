"""The JSON log line: what it holds does not depend on the cached timestamp or on the
logging look-ups configure_logging switches off."""

from __future__ import annotations

import json
import logging
import time

import pytest

from wallet_api.observability import JsonFormatter, configure_logging


def _record(created: float, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "wallet_api.access", logging.INFO, __file__, 1, "request", None, None
    )
    record.created, record.msecs = created, (created - int(created)) * 1000
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.mark.parametrize(
    "times",
    [
        [1_700_000_000.123, 1_700_000_000.999, 1_700_000_001.0, 1_700_000_000.5],  # back too
        [0.0, 59.999, 60.001, 86_399.5, 86_400.25],  # minute and day boundaries
    ],
)
def test_each_line_has_its_own_records_time(times: list[float]) -> None:
    formatter = JsonFormatter()
    for t in times:
        record = _record(t)
        second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
        expected = f"{second}.{int(record.msecs):03d}Z"
        assert json.loads(formatter.format(record))["ts"] == expected


def test_a_line_holds_the_message_and_the_extra_fields_only() -> None:
    line = json.loads(
        JsonFormatter().format(_record(1_700_000_000.5, route="/healthz", status=200))
    )
    assert line == {
        "ts": "2023-11-14T22:13:20.500Z",
        "level": "info",
        "logger": "wallet_api.access",
        "message": "request",
        "route": "/healthz",
        "status": 200,
    }


def test_lines_are_the_same_without_caller_thread_and_process_lookups(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    try:
        assert logging.logThreads is False and logging.logProcesses is False
        logging.getLogger("wallet_api.test").info("hello", extra={"n": 1})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("wallet_api.test").exception("failed")
        first, second = (json.loads(x) for x in capsys.readouterr().out.splitlines())
        assert {k: first[k] for k in ("level", "message", "n")} == {
            "level": "info",
            "message": "hello",
            "n": 1,
        }
        assert "ValueError: boom" in second["exc_info"]  # tracebacks are still there
    finally:
        logging.getLogger().handlers.clear()

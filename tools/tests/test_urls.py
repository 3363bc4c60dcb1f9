"""`stackctl urls`: the lines `make up` ends with."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stackctl import envfile, tls, urls


def test_default_port_has_no_suffix(tmp_path: Path) -> None:
    out = urls.lines(tmp_path, wallet=True, environ={})
    assert out[-1] == "  curl --cacert .secrets/certs/ca.crt https://wallet.localhost/status"
    assert any("https://traefik.localhost/dashboard/" in line for line in out)


def test_port_from_env_file_then_environment(tmp_path: Path) -> None:
    envfile.write(tmp_path / ".env", "HTTPS_PORT", "8443")
    assert urls.lines(tmp_path, wallet=True, environ={})[-1].endswith(
        "https://wallet.localhost:8443/status"
    )
    assert urls.lines(tmp_path, wallet=True, environ={"HTTPS_PORT": "9443"})[-1].endswith(
        "https://wallet.localhost:9443/status"
    )


def test_edge_only_prints_no_wallet_and_no_smoke_test(tmp_path: Path) -> None:
    out = urls.lines(tmp_path, wallet=False, environ={})
    assert not any("wallet.localhost" in line for line in out)


@pytest.mark.parametrize("bad", ["https", "0", "70000"])
def test_bad_port_is_one_line(tmp_path: Path, bad: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stackctl", "urls", "--root", str(tmp_path)],
        env={"HTTPS_PORT": bad, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"stackctl urls: error: HTTPS_PORT must be a port number, got '{bad}'\n"


@pytest.mark.parametrize("command", ["urls", "secrets"])
def test_an_env_file_that_is_not_utf8_is_one_line_and_unchanged(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / ".env").write_bytes(b"X=\xff\n")
    proc = subprocess.run(
        [sys.executable, "-m", "stackctl", command, "--root", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr
        == f"stackctl {command}: error: {tmp_path / '.env'} is not UTF-8 text (byte 2)\n"
    )
    assert (tmp_path / ".env").read_bytes() == b"X=\xff\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


class _Server:
    """A TLS server on 127.0.0.1 with the stack's certificate, answering each connection
    with the next status of `statuses` (the last one repeats)."""

    def __init__(self, root: Path, statuses: list[int]) -> None:
        paths = tls.Paths(root / ".secrets" / "certs")
        tls.ensure(paths)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(paths.cert, paths.key)
        self.statuses = statuses
        self.seen: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            try:
                with self.context.wrap_socket(conn, server_side=True) as c:
                    self.seen.append(c.recv(4096))
                    c.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.listener.close()


def test_wait_routed_polls_until_traefik_routes(tmp_path: Path) -> None:
    server = _Server(tmp_path, [404, 404, 200])
    try:
        sleeps: list[float] = []
        urls.wait_routed(
            tmp_path, wallet=True, timeout=30,
            environ={"HTTPS_PORT": str(server.port)}, sleep=sleeps.append,
        )  # fmt: skip
        assert len(sleeps) == 2
        assert server.seen[-1].startswith(b"GET /status HTTP/1.1\r\nHost: wallet.localhost\r\n")
    finally:
        server.close()


def test_wait_routed_gives_up_with_one_line(tmp_path: Path) -> None:
    server = _Server(tmp_path, [404])
    try:
        with pytest.raises(
            envfile.SettingError, match=r"did not answer 200 within 0s \(last: HTTP 404\)"
        ):
            urls.wait_routed(
                tmp_path, wallet=True, timeout=0, environ={"HTTPS_PORT": str(server.port)}
            )
    finally:
        server.close()


def test_wait_routed_edge_only_wants_the_password_prompt(tmp_path: Path) -> None:
    server = _Server(tmp_path, [401])
    try:
        urls.wait_routed(
            tmp_path, wallet=False, timeout=5, environ={"HTTPS_PORT": str(server.port)}
        )
        assert b"Host: whoami.localhost" in server.seen[0]
    finally:
        server.close()

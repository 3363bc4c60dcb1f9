"""A TCP proxy in front of Redis that can make Redis "go away" right after a commit.

Runs inside a container (stdlib only): ``python cut_proxy.py UP_HOST UP_PORT LISTEN CONTROL``.
Control port, one command per connection, answered with one line:

* ``arm``   -- the next client chunk containing ``EXEC`` is forwarded to Redis (so the
  transaction commits), its reply is dropped, the listener closes and every proxied
  connection is cut: to the client, Redis vanished mid-EXEC and stays unreachable.
* ``hold``  -- a late EXEC: the next client chunk containing ``EXEC`` is NOT forwarded;
  the client's connection is cut (its reply is lost) while the proxy keeps that
  connection's upstream side open, WATCH state and all. The client's next chunk
  containing ``WATCH`` (its next attempt: the check for the lost write) is forwarded;
  its chunk after that (the next MULTI..EXEC) waits until the held bytes have been sent
  upstream on the old connection and Redis has answered them. So the held EXEC
  reaches Redis exactly between the client's check and its next commit.
* ``state`` -- ``armed``, ``cut`` (EXEC forwarded and connections closed), ``holding``,
  ``checked`` (the next WATCH went through), ``released:<first byte of the late
  EXEC's reply>`` (``*`` = it committed, ``*-1`` = WATCH aborted it) or ``idle``.
* ``heal``  -- accept connections again (and forget a hold).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time

UPSTREAM = (sys.argv[1], int(sys.argv[2]))
LISTEN, CONTROL = int(sys.argv[3]), int(sys.argv[4])

lock = threading.Lock()
state = {"mode": "idle"}
held: dict[str, object] = {}  # hold mode: the held bytes and their upstream socket
pumps_stopped = threading.Event()  # the held connection's downstream pump let go of it
conns: set[socket.socket] = set()
listening: list[socket.socket] = []  # the current listener, if any


def close(sock: socket.socket) -> None:
    # shutdown() first: on Linux, close() alone neither wakes a thread blocked in
    # accept()/recv() on the socket nor stops a listening socket from accepting.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def open_listener() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", LISTEN))
    sock.listen(128)
    listening[:] = [sock]
    threading.Thread(target=accept_loop, args=(sock,), daemon=True).start()


def accept_loop(sock: socket.socket) -> None:
    while True:
        try:
            client, _ = sock.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(UPSTREAM, timeout=5)
            upstream.settimeout(None)
        except OSError:
            close(client)
            continue
        drop = threading.Event()  # set: replies on this connection are swallowed
        with lock:
            conns.update((client, upstream))
        threading.Thread(target=pump_up, args=(client, upstream, drop), daemon=True).start()
        threading.Thread(target=pump_down, args=(upstream, client, drop), daemon=True).start()


def release_held() -> None:
    """Send the held EXEC upstream on its own (old) connection and wait for the answer:
    MULTI's +OK, a +QUEUED per command, then EXEC's reply (an array: committed; *-1:
    WATCH aborted it; an error)."""
    upstream = held["upstream"]
    assert isinstance(upstream, socket.socket)
    pumps_stopped.wait(5)
    upstream.settimeout(10)
    upstream.sendall(held["data"])  # type: ignore[arg-type]
    reply = b""
    lines: list[bytes] = []
    try:
        while not any(line[:1] in (b"*", b"-") for line in lines):
            chunk = upstream.recv(65536)
            if not chunk:
                break
            reply += chunk
            lines = reply.split(b"\r\n")
    except OSError:
        pass
    first = next((line for line in lines if line[:1] in (b"*", b"-")), b"?")
    with lock:
        state["mode"] = "released:" + ("*-1" if first == b"*-1" else first[:1].decode())
    close(upstream)


def pump_up(client: socket.socket, upstream: socket.socket, drop: threading.Event) -> None:
    try:
        while data := client.recv(65536):
            with lock:
                mode = state["mode"]
                if mode == "hold" and b"EXEC" in data:
                    state["mode"] = "holding"
                    held.update(data=data, upstream=upstream)
            if mode == "hold" and b"EXEC" in data:
                # The client's reply is lost; the upstream side stays open (WATCH and all).
                drop.set()
                with lock:
                    conns.discard(upstream)
                close(client)
                return
            if mode == "holding" and b"WATCH" in data:
                upstream.sendall(data)  # the next attempt's reads: the check
                with lock:
                    state["mode"] = "checked"
                continue
            if mode == "checked":
                release_held()  # the late EXEC lands after the check, before this commit
            with lock:
                cut = state["mode"] == "armed" and b"EXEC" in data
                if cut:
                    state["mode"] = "cutting"
            if cut:
                drop.set()
                for sock in listening:
                    close(sock)  # no new connections from now on
                upstream.sendall(data)  # Redis runs MULTI..EXEC ...
                time.sleep(0.5)  # ... and answers; pump_down swallows the answer
                with lock:
                    victims = list(conns)
                    conns.clear()
                for sock in victims:
                    close(sock)
                with lock:
                    state["mode"] = "cut"
                return
            upstream.sendall(data)
    except OSError:
        pass
    finally:
        close(client)
        if held.get("upstream") is not upstream:
            close(upstream)


def pump_down(upstream: socket.socket, client: socket.socket, drop: threading.Event) -> None:
    # Short reads, so that on a held connection this pump stops reading before
    # release_held() reads the late EXEC's reply from the same socket.
    upstream.settimeout(0.1)
    try:
        while not (drop.is_set() and held.get("upstream") is upstream):
            try:
                data = upstream.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            if not drop.is_set():
                client.sendall(data)
    except OSError:
        pass
    finally:
        close(client)
        if held.get("upstream") is upstream:
            pumps_stopped.set()
        else:
            close(upstream)


def control() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", CONTROL))
    server.listen(8)
    while True:
        conn, _ = server.accept()
        with conn:
            command = conn.recv(64).decode().strip()
            with lock:
                mode = state["mode"]
            if command == "arm":
                with lock:
                    state["mode"] = "armed"
            elif command == "hold":
                with lock:
                    state["mode"] = "hold"
                    held.clear()
                    pumps_stopped.clear()
            elif command == "heal":
                if mode in ("cut", "cutting"):
                    open_listener()
                with lock:
                    state["mode"] = "idle"
                    held.clear()
            with lock:
                reply = state["mode"]
            conn.sendall(f"{reply}\n".encode())


if __name__ == "__main__":
    open_listener()
    print(f"cut_proxy: :{LISTEN} -> {UPSTREAM[0]}:{UPSTREAM[1]}, control :{CONTROL}", flush=True)
    control()

"""A TCP proxy in front of Redis that can make Redis "go away" right after a commit.

Runs inside a container (stdlib only): ``python cut_proxy.py UP_HOST UP_PORT LISTEN CONTROL``.
Control port, one command per connection, answered with one line:

* ``arm``   -- the next client chunk containing ``EXEC`` is forwarded to Redis (so the
  transaction commits), its reply is dropped, the listener closes and every proxied
  connection is cut: to the client, Redis vanished mid-EXEC and stays unreachable.
* ``state`` -- ``armed``, ``cut`` (EXEC forwarded and connections closed) or ``idle``.
* ``heal``  -- accept connections again.
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


def pump_up(client: socket.socket, upstream: socket.socket, drop: threading.Event) -> None:
    try:
        while data := client.recv(65536):
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
        for sock in (client, upstream):
            close(sock)


def pump_down(upstream: socket.socket, client: socket.socket, drop: threading.Event) -> None:
    try:
        while data := upstream.recv(65536):
            if not drop.is_set():
                client.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (client, upstream):
            close(sock)


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
            elif command == "heal":
                if mode in ("cut", "cutting"):
                    open_listener()
                with lock:
                    state["mode"] = "idle"
            with lock:
                reply = state["mode"]
            conn.sendall(f"{reply}\n".encode())


if __name__ == "__main__":
    open_listener()
    print(f"cut_proxy: :{LISTEN} -> {UPSTREAM[0]}:{UPSTREAM[1]}, control :{CONTROL}", flush=True)
    control()

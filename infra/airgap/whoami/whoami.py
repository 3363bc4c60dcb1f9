#!/usr/bin/env python3
"""Air-gapped stand-in for traefik/whoami (stdlib only).

Mirrors the parts of upstream's behaviour the stack relies on:
  GET /            plain-text echo: "Hostname:", "IP:" lines, "RemoteAddr:", then the
                   request line and headers (as Go's Request.Write prints them)
  GET /api         the same information as JSON
  /health          GET/HEAD answer with the current health status (200 by default);
                   POST an integer body (e.g. 500) to change it
  GET /bench       always "1"
  GET /data?size=n&unit=KB|MB|GB  n bytes of filler
Flags: --port (env WHOAMI_PORT_NUMBER, default 80), --name (env WHOAMI_NAME),
--cert/--key (TLS), --cacert (mutual TLS), --verbose. Go-style single-dash flags work too.
Not implemented: /echo (WebSocket), gRPC, OpenTelemetry.
"""

import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

UNITS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_health_lock = threading.Lock()
_health_status = 200


def _ipv4_addresses():
    """Local IPv4 addresses from /proc/net/fib_trie (no third-party modules)."""
    found = []
    try:
        with open("/proc/net/fib_trie", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return found
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            addr = lines[i - 1].split()[-1]
            if addr not in found:
                found.append(addr)
    # loopback first, like the interface order upstream reports
    return sorted(found, key=lambda a: (not a.startswith("127."), a))


def _ipv6_addresses():
    found = []
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            for line in fh:
                raw = line.split()[0]
                packed = bytes.fromhex(raw)
                addr = socket.inet_ntop(socket.AF_INET6, packed)
                if addr not in found:
                    found.append(addr)
    except (OSError, ValueError):
        pass
    return sorted(found, key=lambda a: a != "::1")


def local_ips():
    v4 = _ipv4_addresses()
    v6 = _ipv6_addresses()
    loop = [a for a in v4 if a.startswith("127.")] + [a for a in v6 if a == "::1"]
    rest = [a for a in v4 if not a.startswith("127.")] + [a for a in v6 if a != "::1"]
    return loop + rest


def canonical(name):
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "whoami-standin"
    sys_version = ""
    opts = None  # set in main()

    # --- helpers -------------------------------------------------------
    def _remote_addr(self):
        host, port = self.client_address[0], self.client_address[1]
        if host.startswith("::ffff:"):
            host = host[len("::ffff:"):]
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status, body=b"", ctype="text/plain; charset=utf-8", extra=None):
        self.send_response(status)
        if body or ctype:
            self.send_header("Content-Type", ctype)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def log_message(self, fmt, *args):  # quiet unless --verbose, like upstream
        if self.opts.verbose:
            sys.stderr.write("%s - - [%s] %s\n" % (self._remote_addr(), self.log_date_time_string(), fmt % args))

    # --- routing -------------------------------------------------------
    def _dispatch(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        if path == "/health":
            return self._health()
        body = self._body()
        if path == "/bench":
            return self._send(200, b"1", extra={"Connection": "keep-alive"})
        if path == "/api":
            return self._api(url, query)
        if path == "/data":
            return self._data(query)
        if path == "/echo":
            return self._send(501, b"websocket echo is not implemented by the air-gapped stand-in\n")
        return self._whoami(query, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch

    def _health(self):
        global _health_status
        if self.command == "POST":
            try:
                code = int(json.loads(self._body() or b"null"))
                if not 100 <= code <= 599:
                    raise ValueError(code)
            except (ValueError, TypeError) as exc:
                return self._send(400, f"{exc}\n".encode())
            print(f"Update health check status code [{code}]", flush=True)
            with _health_lock:
                _health_status = code
            return self._send(200, b"", ctype=None)
        with _health_lock:
            status = _health_status
        return self._send(status, b"", ctype=None)

    def _request_dump(self, body):
        # Go's Request.Write: request line, Host, User-Agent, then the other headers sorted.
        lines = [f"{self.command} {self.path} HTTP/1.1"]
        lines.append(f"Host: {self.headers.get('Host', '')}")
        if self.headers.get("User-Agent") is not None:
            lines.append(f"User-Agent: {self.headers.get('User-Agent')}")
        others = {}
        for key, value in self.headers.items():
            if key.lower() in ("host", "user-agent"):
                continue
            others.setdefault(canonical(key), []).append(value)
        for key in sorted(others):
            for value in others[key]:
                lines.append(f"{key}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _whoami(self, query, body):
        wait = (query.get("wait") or [""])[0]
        if wait:
            delay = _parse_duration(wait)
            if delay:
                time.sleep(delay)
        out = []
        if self.opts.name:
            out.append(f"Name: {self.opts.name}")
        out.append(f"Hostname: {socket.gethostname()}")
        out.extend(f"IP: {ip}" for ip in local_ips())
        out.append(f"RemoteAddr: {self._remote_addr()}")
        payload = ("\n".join(out) + "\n").encode() + self._request_dump(body)
        if (query.get("env") or [""])[0].lower() in ("1", "t", "true"):
            payload += "".join(f"{k}={v}\n" for k, v in os.environ.items()).encode()
        self._send(200, payload)

    def _api(self, url, query):
        data = {
            "hostname": socket.gethostname(),
            "ip": local_ips(),
            "headers": {canonical(k): self.headers.get_all(k) for k in set(self.headers.keys())},
            "url": self.path,
            "host": self.headers.get("Host", ""),
            "method": self.command,
            "remoteAddr": self._remote_addr(),
        }
        if self.opts.name:
            data["name"] = self.opts.name
        if (query.get("env") or [""])[0].lower() in ("1", "t", "true"):
            data["environ"] = dict(os.environ)
        self._send(200, (json.dumps(data) + "\n").encode(), ctype="application/json",
                   extra={"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "*"})

    def _data(self, query):
        try:
            size = max(0, int((query.get("size") or ["1"])[0]))
        except ValueError:
            size = 1
        size *= UNITS.get((query.get("unit") or [""])[0].lower(), 1)
        size = min(size, 64 << 20)  # keep the stand-in's memory bounded
        charset = b"-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        buf = bytearray((charset * (size // len(charset) + 1))[:size])
        if size:
            buf[0] = buf[-1] = ord("|")
        self._send(200, bytes(buf), ctype="text/plain; charset=utf-8")


def _parse_duration(text):
    """Subset of Go's time.ParseDuration: a number with ns/us/ms/s/m/h."""
    for suffix, factor in (("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            try:
                return max(0.0, min(float(text[: -len(suffix)]) * factor, 300.0))
            except ValueError:
                return None
    return None


class DualStackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class DualStackServer6(DualStackServer):
    address_family = socket.AF_INET6


def parse_args(argv):
    # Accept Go-style "-port 80" as well as "--port=80".
    argv = ["-" + a if a.startswith("-") and not a.startswith("--") else a for a in argv]
    parser = argparse.ArgumentParser(prog="whoami", description="whoami stand-in (air-gapped)")
    parser.add_argument("--port", default=os.environ.get("WHOAMI_PORT_NUMBER") or "80", help="give me a port number")
    parser.add_argument("--name", default=os.environ.get("WHOAMI_NAME", ""), help="give me a name")
    parser.add_argument("--cert", default="", help="give me a certificate")
    parser.add_argument("--key", default="", help="give me a key")
    parser.add_argument("--cacert", default="", help="give me a CA chain, enforces mutual TLS")
    parser.add_argument("--verbose", action="store_true", help="enable verbose logging")
    parser.add_argument("--allowed-origins", default=os.environ.get("WHOAMI_ALLOWED_ORIGINS", "*"))
    return parser.parse_args(argv)


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    # As PID 1 in a container, SIGTERM is ignored unless handled: exit promptly like upstream.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Handler.opts = opts
    port = int(opts.port)
    server = None
    if socket.has_ipv6:
        try:
            server = DualStackServer6(("::", port), Handler)
        except OSError:  # IPv6 disabled in this network namespace
            server = None
    if server is None:
        server = DualStackServer(("0.0.0.0", port), Handler)
    if opts.cert and opts.key:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.cert, opts.key)
        if opts.cacert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(opts.cacert)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        print(f"Starting up with TLS on port {port}", flush=True)
    else:
        print(f"Starting up on port {port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The edge: basic auth on the admin hosts, TLS with the local CA, http -> https."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests
import stack_support as ss

pytestmark = pytest.mark.stack

# host, path: the basic-auth protected hosts (acceptance: 401 without, 200 with credentials)
PROTECTED = [
    ("traefik.localhost", "/dashboard/"),
    ("prometheus.localhost", "/"),
    ("whoami.localhost", "/"),
    ("alertmanager.localhost", "/"),
]


@pytest.mark.parametrize(("host", "path"), PROTECTED, ids=[h for h, _ in PROTECTED])
def test_basic_auth_required(stack: ss.Stack, http: requests.Session, host: str, path: str) -> None:
    url = stack.url(host, path)

    anonymous = http.get(url, timeout=ss.HTTP_TIMEOUT, allow_redirects=False)
    assert anonymous.status_code == 401, anonymous.text[:200]
    assert anonymous.headers.get("WWW-Authenticate", "").startswith("Basic "), anonymous.headers

    wrong = http.get(url, auth=(stack.user, stack.password + "x"), timeout=ss.HTTP_TIMEOUT)
    assert wrong.status_code == 401

    # Prometheus answers / with 302 -> /graph: followed, with the credentials kept
    # (same host).
    ok = http.get(url, auth=stack.basic_auth, timeout=ss.HTTP_TIMEOUT)
    assert ok.status_code == 200, f"{ok.url}: HTTP {ok.status_code} {ok.text[:200]}"
    final = urlsplit(ok.url).path
    ss.note(f"basic auth {host}{path}: 401 anonymous, 401 wrong password, 200 at {final}")


def test_prometheus_root_redirect_and_health(stack: ss.Stack, http: requests.Session) -> None:
    root = http.get(
        stack.url("prometheus.localhost", "/"),
        auth=stack.basic_auth,
        timeout=ss.HTTP_TIMEOUT,
        allow_redirects=False,
    )
    # Prometheus 2.x: /graph (Debian's build without the React UI: /classic/graph);
    # Prometheus 3.x: /query.
    assert root.status_code == 302
    assert urlsplit(root.headers["Location"]).path in {"/graph", "/classic/graph", "/query"}
    healthy = http.get(
        stack.url("prometheus.localhost", "/-/healthy"),
        auth=stack.basic_auth,
        timeout=ss.HTTP_TIMEOUT,
    )
    assert healthy.status_code == 200


def _curl(stack: ss.Stack, url: str, with_credentials: bool) -> subprocess.CompletedProcess[str]:
    # Credentials go through a config on stdin (-K -), not argv: `ps` must not show them.
    config = ""
    if with_credentials:
        user = f"{stack.user}:{stack.password}".replace("\\", "\\\\").replace('"', '\\"')
        config = f'user = "{user}"\n'
    return subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--cacert",
            str(stack.ca_file),
            "-K",
            "-",
            "--write-out",
            "\nHTTP_CODE=%{http_code}",
            url,
        ],
        input=config,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_whoami_through_curl(stack: ss.Stack) -> None:
    """Acceptance: `curl --cacert .secrets/certs/ca.crt -u user:pass https://whoami.localhost/`
    (curl resolves *.localhost to loopback itself)."""
    url = stack.url("whoami.localhost", "/")
    ok = _curl(stack, url, with_credentials=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.rstrip().endswith("HTTP_CODE=200"), ok.stdout[-300:]
    assert "Hostname:" in ok.stdout
    # The basic-auth middleware removes the credentials before proxying (removeHeader).
    assert "authorization:" not in ok.stdout.lower()
    anonymous = _curl(stack, url, with_credentials=False)
    assert anonymous.returncode == 0, anonymous.stderr
    assert anonymous.stdout.rstrip().endswith("HTTP_CODE=401")
    hostname = next(line for line in ok.stdout.splitlines() if line.startswith("Hostname:"))
    ss.note(f"curl https://whoami.localhost/: 200 with credentials ({hostname}), 401 without")


def test_tls_is_verified_against_the_local_ca(stack: ss.Stack, http: requests.Session) -> None:
    """The certificate check is real: the stack's certificate is not trusted by the
    public CA bundle, and it does not cover a name outside its SANs."""
    public = stack.session()
    public.verify = True  # the default CA bundle, not the stack's CA
    with public, pytest.raises(requests.exceptions.SSLError):
        public.get(stack.url("whoami.localhost", "/"), timeout=ss.HTTP_TIMEOUT)
    with pytest.raises(requests.exceptions.SSLError):
        http.get(stack.url("not-in-the-certificate.localhost", "/"), timeout=ss.HTTP_TIMEOUT)


@pytest.mark.parametrize(
    "host", ["wallet.localhost", "whoami.localhost", "traefik.localhost", "prometheus.localhost"]
)
def test_http_redirects_to_https(stack: ss.Stack, http: requests.Session, host: str) -> None:
    path = "/status?probe=1" if host == "wallet.localhost" else "/some/path?probe=1"
    r = http.get(
        stack.url(host, path, scheme="http"), timeout=ss.HTTP_TIMEOUT, allow_redirects=False
    )
    assert r.status_code in (301, 308), f"HTTP {r.status_code}"
    assert r.headers["Location"] == stack.url(host, path), r.headers["Location"]
    if host == "wallet.localhost":
        followed = http.get(stack.url(host, "/status", scheme="http"), timeout=ss.HTTP_TIMEOUT)
        assert followed.status_code == 200
        assert followed.url == stack.url(host, "/status")
        ss.note(f"http://{host}/status -> {r.status_code} {r.headers['Location']}")


@pytest.mark.parametrize("page", ["/targets", "/alerts", "/rules"])
def test_prometheus_pages_the_readme_names_work_in_either_mode(
    stack: ss.Stack, http: requests.Session, page: str
) -> None:
    """Upstream Prometheus serves these at the root; the air-gapped stand-in under
    /classic/, where Traefik redirects (PROMETHEUS_UI_MIDDLEWARE in .airgap.env)."""
    r = http.get(
        stack.url("prometheus.localhost", page), auth=stack.basic_auth, timeout=ss.HTTP_TIMEOUT
    )
    assert r.status_code == 200, f"{r.url}: HTTP {r.status_code}"
    ss.note(f"prometheus {page}: 200 at {urlsplit(r.url).path}")


# -- edge protection ---------------------------------------------------------------

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


@pytest.mark.parametrize(
    ("host", "path"),
    [("wallet.localhost", "/status"), *PROTECTED],
    ids=["wallet", *[h for h, _ in PROTECTED]],
)
def test_security_headers_on_every_router(
    stack: ss.Stack, http: requests.Session, host: str, path: str
) -> None:
    r = http.get(stack.url(host, path), auth=stack.basic_auth, timeout=ss.HTTP_TIMEOUT)
    assert r.status_code == 200, r.status_code
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (name, r.headers.get(name))


def _burst(
    http: requests.Session, url: str, n: int, workers: int, **kw: object
) -> list[requests.Response]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: http.get(url, timeout=ss.HTTP_TIMEOUT, **kw), range(n)))


def _drain(seconds: float) -> None:
    """Let the token bucket refill, so later tests start under the limit."""
    time.sleep(seconds)


@pytest.mark.parametrize(
    ("host", "path", "average", "burst"),
    [
        ("whoami.localhost", "/", 10, 30),
        ("wallet.localhost", "/healthz", 100, 200),
    ],
    ids=["basic-auth-route", "wallet-route"],
)
def test_rate_limit_passes_under_and_refuses_over_the_limit(
    stack: ss.Stack,
    http: requests.Session,
    host: str,
    path: str,
    average: int,
    burst: int,
) -> None:
    url = stack.url(host, path)
    ok_status = 401 if host != "wallet.localhost" else 200  # no credentials: the 401 is fine
    # Under the limit: average/2 requests per second for 2 seconds.
    for _ in range(average):
        r = http.get(url, timeout=ss.HTTP_TIMEOUT)
        assert r.status_code == ok_status, r.status_code
        time.sleep(2 / average)
    _drain(burst / average + 1)
    # Over it: 2.5 x the burst as fast as 16 threads go (bounded: at most 500 requests).
    answers = _burst(http, url, min(500, int(burst * 2.5)), 16)
    refused = [r for r in answers if r.status_code == 429]
    passed = [r for r in answers if r.status_code == ok_status]
    _drain(burst / average + 1)
    assert refused, [r.status_code for r in answers][:20]
    assert len(passed) >= burst // 2, (len(passed), len(refused))
    assert all(r.headers.get("Retry-After") for r in refused), refused[0].headers
    assert {r.status_code for r in answers} <= {ok_status, 429}
    ss.note(f"rate limit {host}: {len(passed)} passed, {len(refused)} x 429 "
            f"(Retry-After {refused[0].headers['Retry-After']})")  # fmt: skip


def _tls_socket(stack: ss.Stack, server_name: str | None, **ctx_kw: object) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(stack.ca_file))
    # The client would speak old protocols: a refusal must come from Traefik.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    for key, value in ctx_kw.items():
        setattr(ctx, key, value)
    if server_name is None:
        ctx.check_hostname = False
    raw = socket.create_connection((ss.LOOPBACK, stack.https_port), timeout=ss.HTTP_TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def test_slow_header_client_is_cut_off(stack: ss.Stack) -> None:
    """Slowloris: header bytes one per second. Traefik's readTimeout (10 s) closes the
    connection; no answer is ever sent."""
    started = time.monotonic()
    with _tls_socket(stack, "wallet.localhost") as conn:
        conn.settimeout(2)
        request = b"GET /status HTTP/1.1\r\nHost: wallet.localhost\r\nX-Slow: " + b"a" * 40
        closed_after = None
        for byte in request:
            try:
                conn.sendall(bytes([byte]))
                if conn.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue  # nothing to read yet: keep trickling
            except (ssl.SSLError, OSError):
                closed_after = time.monotonic() - started
                break
            if time.monotonic() - started > 25:
                break
    assert closed_after is not None, "the slow client was never cut off"
    assert 8 <= closed_after <= 16, closed_after
    ss.note(f"slow header client: cut off after {closed_after:.1f}s")


@pytest.mark.parametrize(
    ("server_name", "ctx_kw", "alert"),
    [
        (None, {}, "TLSV1_UNRECOGNIZED_NAME"),
        ("other.localhost", {"check_hostname": False}, "TLSV1_UNRECOGNIZED_NAME"),
        ("wallet.localhost", {"maximum_version": ssl.TLSVersion.TLSv1_1,
                              "minimum_version": ssl.TLSVersion.TLSv1}, "TLSV1_ALERT_PROTOCOL_VERSION"),
    ],
    ids=["no-sni", "unknown-name", "tls1.1"],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")  # on purpose
def test_tls_refuses(stack: ss.Stack, server_name: str | None, ctx_kw: dict, alert: str) -> None:
    """sniStrict (no SNI, or a name no certificate covers) and TLS >= 1.2: the TLS alert
    Traefik sends, not a refusal of the client's own."""
    with pytest.raises(ssl.SSLError) as refused:
        _tls_socket(stack, server_name, **ctx_kw).close()
    assert refused.value.reason == alert, refused.value
    ss.note(f"TLS refused (SNI {server_name}): {alert}")

"""The local CA and certificate: renewal rules, file modes, and name constraints that a
real TLS client (OpenSSL through Python's ssl module) enforces."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from stackctl import tls


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def test_fresh_directory_gets_ca_and_leaf_with_modes(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path / "certs")
    outcome = tls.ensure(paths)
    assert (outcome.ca, outcome.leaf) == ("missing", "missing")
    assert _mode(paths.directory) == 0o700
    assert _mode(paths.ca_key) == 0o600 and _mode(paths.key) == 0o600
    assert _mode(paths.ca_cert) == 0o644 and _mode(paths.cert) == 0o644


def test_second_run_keeps_everything(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    before = {p: p.read_bytes() for p in (paths.ca_cert, paths.ca_key, paths.cert, paths.key)}
    outcome = tls.ensure(paths)
    assert (outcome.ca, outcome.leaf) == (None, None)
    assert {p: p.read_bytes() for p in before} == before


def test_each_host_is_its_own_san_plus_loopback(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(tls.HOSTS)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert not any("*" in h for h in san.get_values_for_type(x509.DNSName))


def test_ca_is_name_constrained_critical_and_cannot_sign_cas(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert x509.DNSName("localhost") in (nc.value.permitted_subtrees or [])
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and basic.path_length == 0


@pytest.mark.parametrize(
    ("age_days", "renewed"),
    [(tls.LEAF_DAYS - 29, True), (tls.LEAF_DAYS - 31, False)],
)
def test_leaf_renewed_below_30_days(tmp_path: Path, age_days: int, renewed: bool) -> None:
    """A leaf issued `age_days` ago has LEAF_DAYS - age_days left."""
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    ca = tls._load_pair(paths.ca_cert, paths.ca_key)
    assert ca is not None
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
    cert, key = tls.issue_leaf(ca[0], ca[1], now=old)
    paths.cert.write_bytes(_pem(cert))
    paths.key.write_bytes(tls._key_pem(key))
    outcome = tls.ensure(paths)
    assert outcome.ca is None
    assert (outcome.leaf == "expires within 30 days") is renewed
    assert (paths.cert.read_bytes() != _pem(cert)) is renewed


def test_expiring_ca_is_renewed_with_its_leaf(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=tls.CA_DAYS - 10)
    ca_cert, ca_key = tls.issue_ca(now=old)
    paths.ca_cert.write_bytes(_pem(ca_cert))
    paths.ca_key.write_bytes(tls._key_pem(ca_key))
    outcome = tls.ensure(paths)
    assert outcome.ca == "expires within 30 days"
    assert outcome.leaf is not None
    new_ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    x509.load_pem_x509_certificate(paths.cert.read_bytes()).verify_directly_issued_by(new_ca)


def test_unconstrained_ca_from_an_older_version_is_replaced(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    # What the former shell script made: a CA without NameConstraints.
    ca = tls._load_pair(paths.ca_cert, paths.ca_key)
    assert ca is not None
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca[0].subject)
        .issuer_name(ca[0].subject)
        .public_key(ca[1].public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca[0].not_valid_before_utc)
        .not_valid_after(ca[0].not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    from cryptography.hazmat.primitives import hashes

    paths.ca_cert.write_bytes(_pem(builder.sign(ca[1], hashes.SHA256())))
    outcome = tls.ensure(paths)
    assert outcome.ca is not None and "no name constraints" in outcome.ca
    assert outcome.leaf == "not signed by the current CA"
    new_ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    x509.load_pem_x509_certificate(paths.cert.read_bytes()).verify_directly_issued_by(new_ca)


def test_leaf_missing_a_host_or_signed_by_another_ca_is_reissued(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    ca = tls._load_pair(paths.ca_cert, paths.ca_key)
    assert ca is not None
    cert, key = tls.issue_leaf(ca[0], ca[1], hosts=tls.HOSTS[:-1])
    paths.cert.write_bytes(_pem(cert))
    paths.key.write_bytes(tls._key_pem(key))
    assert tls.ensure(paths).leaf == f"lacks {tls.HOSTS[-1]}"

    other_ca = tls.issue_ca()
    cert, key = tls.issue_leaf(*other_ca)
    paths.cert.write_bytes(_pem(cert))
    paths.key.write_bytes(tls._key_pem(key))
    assert tls.ensure(paths).leaf == "not signed by the current CA"


def test_key_not_matching_its_certificate_is_replaced(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    paths.key.write_bytes(tls._key_pem(tls._new_key()))
    assert tls.ensure(paths).leaf == "missing"


def test_rewrite_keeps_the_inode_for_bind_mounts(tmp_path: Path) -> None:
    paths = tls.Paths(tmp_path)
    tls.ensure(paths)
    inode = paths.cert.stat().st_ino
    outcome = tls.ensure(paths, force=True)
    assert outcome.replaced_mounted_files
    assert paths.cert.stat().st_ino == inode


# -- the name constraints, as a TLS client enforces them ---------------------------


@contextmanager
def _tls_server(cert_pem: bytes, key_pem: bytes, tmp_path: Path) -> Iterator[int]:
    """A one-connection TLS server on 127.0.0.1 serving this certificate."""
    (tmp_path / "srv.crt").write_bytes(cert_pem)
    (tmp_path / "srv.key").write_bytes(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(timeout=5)


def _handshake(ca_pem: Path, port: int, server_name: str) -> None:
    client = ssl.create_default_context(cafile=str(ca_pem))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=server_name) as conn,
    ):
        conn.sendall(b"x")


@pytest.mark.parametrize("host", ["wallet.localhost", "localhost"])
def test_client_trusting_the_ca_accepts_the_stack_hosts(tmp_path: Path, host: str) -> None:
    paths = tls.Paths(tmp_path / "certs")
    tls.ensure(paths)
    with _tls_server(paths.cert.read_bytes(), paths.key.read_bytes(), tmp_path) as port:
        _handshake(paths.ca_cert, port, host)


@pytest.mark.parametrize("victim", ["bank.example", "localhost.example.com", "example.com"])
def test_stolen_ca_key_cannot_impersonate_other_sites(tmp_path: Path, victim: str) -> None:
    """Sign a certificate for another site with the CA's own key: a client that
    trusts the CA still refuses it, because of the CA's name constraints."""
    paths = tls.Paths(tmp_path / "certs")
    tls.ensure(paths)
    ca = tls._load_pair(paths.ca_cert, paths.ca_key)
    assert ca is not None
    forged, forged_key = tls.issue_leaf(ca[0], ca[1], hosts=(victim,))
    forged.verify_directly_issued_by(ca[0])  # the signature itself is valid
    with (
        _tls_server(_pem(forged), tls._key_pem(forged_key), tmp_path) as port,
        pytest.raises(ssl.SSLCertVerificationError, match=r"(?i)subtree violation|name constraint"),
    ):
        _handshake(paths.ca_cert, port, victim)

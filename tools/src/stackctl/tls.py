"""A local CA and the TLS certificate Traefik serves for the stack's `*.localhost` hosts.

Why a CA and not one self-signed certificate: users trust the CA once (or pass
`--cacert`), and the leaf can be renewed without trusting anything again.

Why name constraints: trusting a CA normally lets whoever holds its key impersonate
any site. This CA carries a critical X.509 NameConstraints extension that permits only
`localhost` and the names below it (RFC 5280: a DNS constraint matches the name and its
subdomains) and the loopback addresses, so even a stolen `ca.key` cannot mint a
certificate that verifying clients (OpenSSL, NSS, browsers) accept for another site.

Every host is its own subjectAltName: curl (and RFC 6125 clients) refuse a wildcard
directly under the `localhost` label.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names Traefik routes (compose labels and the file provider); tests/tools checks
#: that every Host() rule of the compose stack is here.
HOSTS: tuple[str, ...] = (
    "localhost",
    "traefik.localhost",
    "prometheus.localhost",
    "whoami.localhost",
    "wallet.localhost",
    "alertmanager.localhost",
    "grafana.localhost",
)
LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
PERMITTED_DNS = "localhost"
CA_DAYS = 3650
LEAF_DAYS = 365  # must stay <= 397 (CA/Browser Forum limit that browsers enforce)
RENEW_BEFORE = dt.timedelta(days=30)
_ORG = "wallet-stack (local development)"


@dataclass(frozen=True)
class Paths:
    """Where the CA and the leaf live (`.secrets/certs/` of the repository)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert(self) -> Path:
        return self.directory / "localhost.crt"

    @property
    def key(self) -> Path:
        return self.directory / "localhost.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: accepted by every TLS client Traefik serves; generated instantly.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def name_constraints() -> x509.NameConstraints:
    """Permitted subtrees: `localhost` (and every name below it) and the loopback hosts."""
    return x509.NameConstraints(
        permitted_subtrees=[
            x509.DNSName(PERMITTED_DNS),
            x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
            x509.IPAddress(ipaddress.ip_network("::1/128")),
        ],
        excluded_subtrees=None,
    )


def issue_ca(
    now: dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new CA: may sign end-entity certificates only (pathlen 0), name-constrained."""
    now = now or _now()
    key = _new_key()
    name = _name("wallet-stack local CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(name_constraints(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hosts: Sequence[str] = HOSTS,
    now: dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for `hosts` (one SAN each) and the loopback addresses."""
    now = now or _now()
    key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    sans += [x509.IPAddress(ip) for ip in LOOPBACK]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its key, or None when either is missing, unreadable, not an
    EC key or not the certificate's key (a half-written or foreign pair is replaced)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key() != key.public_key():
        return None
    return cert, key


def _fresh(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def ca_problem(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, now: dt.datetime
) -> str | None:
    """Why the CA must be (re)created, or None when it is usable as is."""
    if ca is None:
        return "missing"
    cert, _ = ca
    if not _fresh(cert, now):
        return "expires within 30 days"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return "has no name constraints (created by an older version)"
    if not constraints.critical or constraints.value != name_constraints():
        return "has other name constraints"
    return None


def leaf_problem(
    leaf: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    now: dt.datetime,
) -> str | None:
    """Why the certificate must be (re)issued, or None when it is usable as is."""
    if leaf is None:
        return "missing"
    cert, _ = leaf
    if not _fresh(cert, now):
        return "expires within 30 days"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "has no subjectAltName"
    missing = set(hosts) - set(names.get_values_for_type(x509.DNSName))
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    return None


def write_file(path: Path, data: bytes, mode: int) -> bool:
    """Write `data` with `mode`; an existing file is rewritten in place (same inode), so a
    running container's bind mount of it sees the new content. True if it existed."""
    existed = path.exists()
    if existed:
        path.chmod(0o600)
        with path.open("r+b") as f:
            f.write(data)
            f.truncate()
    else:
        fd = path.open("xb")
        with fd:
            fd.write(data)
    path.chmod(mode)
    return existed


@dataclass(frozen=True)
class Outcome:
    """What `ensure` did: `None` = kept as is, else why it was (re)created."""

    ca: str | None
    leaf: str | None
    replaced_mounted_files: bool


def ensure(
    paths: Paths,
    hosts: Sequence[str] = HOSTS,
    *,
    force: bool = False,
    now: dt.datetime | None = None,
) -> Outcome:
    """Keep a usable CA and certificate, else (re)create them. Keys are written mode 600
    and certificates 644 in a directory of mode 700."""
    now = now or _now()
    paths.directory.mkdir(parents=True, exist_ok=True)
    paths.directory.chmod(0o700)

    ca = _load_pair(paths.ca_cert, paths.ca_key)
    ca_why = "forced" if force else ca_problem(ca, now)
    if ca is None or ca_why is not None:
        ca = issue_ca(now)
        write_file(paths.ca_key, _key_pem(ca[1]), 0o600)
        write_file(paths.ca_cert, ca[0].public_bytes(serialization.Encoding.PEM), 0o644)

    leaf = _load_pair(paths.cert, paths.key)
    leaf_why = "forced" if force else leaf_problem(leaf, ca[0], hosts, now)
    if ca_why is not None and leaf_why is None:
        leaf_why = "the CA was renewed"
    mounted = False
    if leaf_why is not None:
        cert, key = issue_leaf(ca[0], ca[1], hosts, now)
        mounted |= write_file(paths.key, _key_pem(key), 0o600)
        mounted |= write_file(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return Outcome(ca_why, leaf_why, mounted)

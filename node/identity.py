"""Federation CA, node certificates and signing keys.

* The federation CA (``pcnode federation init``) is an ECDSA P-256 key and a
  self-signed certificate. P-256 is used for TLS because every gRPC/BoringSSL
  build supports it.
* Each node has an Ed25519 *signing* key (ledger entries, receipts, job
  requests) and a separate P-256 *TLS* key. Its certificate, signed by the CA,
  carries the node name (CN and DNS SAN) and, in a pcnode extension, the
  node's Ed25519 public key, so a verified certificate binds name, TLS key and
  signing key together. Peers learn each other's signing key only from
  certificates that chain to the federation CA.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.files import SECRET_MODE, atomic_write
from pcnode.errors import AuthenticationError, ConfigError

#: OID of the certificate extension holding the node's raw Ed25519 public key.
#: Under the 2.25 (UUID) arc, which needs no registration (ITU-T X.667).
SIGNING_KEY_OID = x509.ObjectIdentifier("2.25.181605223327893826185658046613046581961")

#: Node certificates expire after a year: long enough for operations, short
#: enough that a leaked key does not stay valid indefinitely.
NODE_CERT_DAYS = 365
#: The CA lives ten years; rotating it means re-issuing every node certificate.
CA_CERT_DAYS = 3650

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_federation(directory: str | Path, name: str = "pcnode federation") -> Path:
    """Create the CA key and certificate in ``directory``; refuse to overwrite."""
    directory = Path(directory)
    cert_path = directory / CA_CERT_NAME
    if cert_path.exists():
        raise ConfigError(
            f"{cert_path} exists already",
            hint="a federation is created once; choose another directory",
        )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    atomic_write(directory / CA_KEY_NAME, _pem_key(key), SECRET_MODE)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


@dataclass(frozen=True)
class NodeKeys:
    """Paths of a node's key material inside its home."""

    ca_cert: Path
    tls_cert: Path
    tls_key: Path
    signing_key: Path


def issue_node_identity(
    home: Path,
    name: str,
    federation: str | Path,
    *,
    days: int = NODE_CERT_DAYS,
    not_before: dt.datetime | None = None,
) -> NodeKeys:
    """Create the node's signing key, TLS key and CA-signed certificate under ``home``."""
    federation = Path(federation)
    ca_cert = load_certificate(federation / CA_CERT_NAME)
    ca_key_path = federation / CA_KEY_NAME
    try:
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(
            f"{ca_key_path}: no such file",
            hint="create the federation with: pcnode federation init DIR",
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{ca_key_path}: not a PEM private key: {exc}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_key_path}: expected an ECDSA CA key")

    signing = ed25519.Ed25519PrivateKey.generate()
    tls = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - dt.timedelta(minutes=5))
    raw_signing_pub = signing.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(tls.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.UnrecognizedExtension(SIGNING_KEY_OID, raw_signing_pub), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    keys = NodeKeys(
        ca_cert=home / "tls" / "ca.pem",
        tls_cert=home / "tls" / "node.pem",
        tls_key=home / "tls" / "node.key",
        signing_key=home / "keys" / "signing.key",
    )
    atomic_write(keys.signing_key, _pem_key(signing), SECRET_MODE)
    atomic_write(keys.tls_key, _pem_key(tls), SECRET_MODE)
    atomic_write(keys.tls_cert, cert.public_bytes(serialization.Encoding.PEM))
    atomic_write(keys.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    return keys


def load_certificate(path: str | Path) -> x509.Certificate:
    """Read a PEM certificate, with a clear error if missing or malformed."""
    path = Path(path)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM certificate: {exc}") from None


def load_signing_key(path: str | Path) -> ed25519.Ed25519PrivateKey:
    """Read the node's Ed25519 signing key."""
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load the signing key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path}: expected an Ed25519 private key")
    return key


@dataclass(frozen=True)
class PeerIdentity:
    """What a verified certificate tells us about a node."""

    name: str
    signing_key: ed25519.Ed25519PublicKey
    certificate_pem: bytes
    fingerprint: str


def verify_node_certificate(
    cert_pem: bytes, ca_cert: x509.Certificate, *, at: dt.datetime | None = None
) -> PeerIdentity:
    """Check that ``cert_pem`` is a current node certificate issued by ``ca_cert``.

    Raises AuthenticationError naming the failed check (issuer, signature,
    validity window, missing name or signing key).
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise AuthenticationError(f"peer certificate is malformed: {exc}") from None
    if cert.issuer != ca_cert.subject:
        raise AuthenticationError(
            "peer certificate was issued by another CA",
            hint="the peer must be enrolled in this federation (pcnode init --federation DIR)",
            issuer=cert.issuer.rfc4514_string(),
        )
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise AuthenticationError("peer certificate signature does not verify against our CA") from None
    now = at or _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthenticationError(
            "peer certificate is outside its validity period",
            hint="re-issue the peer's certificate",
            not_after=cert.not_valid_after_utc.isoformat(),
        )
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise AuthenticationError("peer certificate has no common name")
    try:
        raw = cert.extensions.get_extension_for_oid(SIGNING_KEY_OID).value.value
        signing_key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except (x509.ExtensionNotFound, ValueError):
        raise AuthenticationError("peer certificate carries no pcnode signing key") from None
    return PeerIdentity(
        name=str(names[0].value),
        signing_key=signing_key,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )

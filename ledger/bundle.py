"""Signed export bundles: one node's ledger, carried to a regulator.

A bundle is a JSON Lines file (UTF-8; every line canonical JSON ending in
``\\n``):

1. ``{"type":"header", "format":"pcnode.ledger-bundle", "v":1, "node":...,
   "public_key":<hex raw Ed25519>, "certificate":<PEM or null>,
   "created":<RFC 3339>, "entries":<n>}``
2. ``n`` lines ``{"type":"entry", "index":i, "body":<canonical body text>,
   "leaf_hash":<hex>, "signature":<hex>}`` for entries ``0 .. n-1``;
3. ``{"type":"checkpoint", "checkpoint":{...}}`` with ``tree_size`` = n;
4. ``{"type":"signature", "digest":<hex>, "signature":<hex>}`` where digest
   is SHA-256 of every byte before this line and the signature is
   Ed25519(node key, "pcnode/ledger/bundle/v1" || 0x00 || digest).

It is written to a temporary file in the target directory, fsynced and
renamed into place, so a reader never sees half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from pcnode.errors import InvalidInput, LedgerError, LedgerIntegrityError

from .checkpoint import Checkpoint, _hex_bytes
from .ed25519 import make_checker
from .encoding import canonical_json
from .entry import Entry
from .events import check_node
from .keys import PublicKeyLike, key_id, load_public_key, public_key_raw
from .log import Ledger
from .merkle import HASH_SIZE
from .store.base import EntryRecord
from .timefmt import format_time, now_us
from .verify import Problem, VerifyReport, verify_records

BUNDLE_FORMAT = "pcnode.ledger-bundle"
BUNDLE_VERSION = 1
#: Domain separator: a bundle signature is never valid as any other signature.
BUNDLE_SIGNING_DOMAIN = b"pcnode/ledger/bundle/v1\x00"
#: Longest line accepted when reading (an entry is at most ~100 kB); guards a
#: reader against a hostile file with one enormous line.
MAX_LINE_BYTES = 1 << 20
_ENTRY_PREFIX = b'{"body":'


@dataclass(frozen=True)
class BundleInfo:
    """What :func:`export_bundle` wrote."""

    path: str
    node: str
    entries: int
    root_hash: bytes
    digest: str
    public_key: bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "node": self.node, "entries": self.entries,
                "root": self.root_hash.hex(), "digest": self.digest,
                "public_key": self.public_key.hex()}


def _line(obj: dict[str, Any]) -> bytes:
    return canonical_json(obj) + b"\n"


def export_bundle(ledger: Ledger, path: str | os.PathLike[str], *,
                  certificate_pem: str | None = None) -> BundleInfo:
    """Write a signed bundle of ``ledger`` to ``path`` atomically.

    A fresh checkpoint is taken first (and recorded in the ledger); the bundle
    holds exactly the entries that checkpoint covers. ``certificate_pem`` is
    the node's X.509 certificate, carried for the regulator's information.
    """
    if certificate_pem is not None:
        _certificate_names(certificate_pem)  # refuse unreadable PEM early
    cp = ledger.checkpoint()
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise LedgerError(f"directory {directory} does not exist", hint="create it first")
    key_raw = public_key_raw(ledger.public_key)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=".ledger-bundle-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            def emit(data: bytes) -> None:
                digest.update(data)
                out.write(data)

            emit(_line({"type": "header", "format": BUNDLE_FORMAT, "v": BUNDLE_VERSION,
                        "node": ledger.node, "public_key": key_raw.hex(),
                        "certificate": certificate_pem, "created": format_time(now_us()),
                        "entries": cp.tree_size}))
            written = 0
            for rec in ledger.store.read(0, cp.tree_size):
                emit(_line({"type": "entry", "index": rec.index,
                            "body": rec.body.decode("utf-8"), "leaf_hash": rec.leaf_hash.hex(),
                            "signature": rec.signature.hex()}))
                written += 1
            emit(_line({"type": "checkpoint", "checkpoint": cp.to_dict()}))
            hexdigest = digest.hexdigest()
            sig = ledger._sign(BUNDLE_SIGNING_DOMAIN + bytes.fromhex(hexdigest))
            out.write(_line({"type": "signature", "digest": hexdigest, "signature": sig.hex()}))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        _unlink(tmp)
        raise LedgerError(f"could not write the bundle to {target}: {exc.strerror}",
                          hint="check the directory is writable and has space") from None
    except BaseException:
        _unlink(tmp)
        raise
    if written != cp.tree_size:
        raise LedgerIntegrityError(
            f"the ledger holds {written} of the {cp.tree_size} entries its checkpoint covers",
            hint="entries are missing; run `pcnode ledger verify`", index=written,
            expected=cp.tree_size, actual=written, check="index")
    return BundleInfo(target, ledger.node, cp.tree_size, cp.root_hash, hexdigest, key_raw)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _certificate_names(pem: str) -> list[str]:
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidInput("certificate must be PEM text",
                           hint="pass the node certificate file's contents")
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise InvalidInput("certificate PEM cannot be read") from None
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        names += [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    return names


def _lines(path: str) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while True:
                line = f.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES:
                    raise InvalidInput(f"bundle {path} has a line longer than {MAX_LINE_BYTES}")
                yield line
    except OSError as exc:
        raise LedgerError(f"cannot read bundle {path}: {exc.strerror}",
                          hint="check the path") from None


def _parse(line: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError:
        raise InvalidInput(f"bundle {what} line is not JSON") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"bundle {what} line is not an object")
    return obj


def read_bundle_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header object of a bundle (node, public key, certificate, entry count)."""
    for line in _lines(os.fspath(path)):
        header = _parse(line, "header")
        if header.get("type") != "header" or header.get("format") != BUNDLE_FORMAT:
            raise InvalidInput(f"{path} is not a pcnode ledger bundle",
                               hint="pass files written by `pcnode ledger export`")
        if header.get("v") != BUNDLE_VERSION:
            raise InvalidInput(f"bundle version {header.get('v')!r} is not supported",
                               hint="upgrade pcnode")
        check_node(header.get("node"))
        return header
    raise InvalidInput(f"{path} is empty")


@dataclass
class BundleReport:
    """Outcome of checking one bundle completely."""

    path: str
    node: str | None
    public_key: bytes | None
    key_trusted: bool
    entries: int
    checkpoint: Checkpoint | None
    digest: str | None
    errors: list[LedgerIntegrityError] = field(default_factory=list)
    ledger: VerifyReport | None = None
    certificate_names: list[str] = field(default_factory=list)
    certificate_matches_node: bool | None = None
    leaf_hashes: bytes = b""

    @property
    def ok(self) -> bool:
        """True iff the bundle's signature, structure and every entry verify."""
        return not self.errors and self.ledger is not None and self.ledger.ok

    def all_errors(self) -> list[LedgerIntegrityError]:
        """Bundle-level problems followed by ledger problems."""
        return [*self.errors, *(self.ledger.errors if self.ledger else [])]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "node": self.node, "ok": self.ok,
                "public_key": self.public_key.hex() if self.public_key else None,
                "key_trusted": self.key_trusted, "entries": self.entries,
                "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
                "digest": self.digest, "certificate_names": self.certificate_names,
                "certificate_matches_node": self.certificate_matches_node,
                "errors": [e.to_dict() for e in self.all_errors()]}


def _bundle_error(path: str, message: str, hint: str = "", **details: Any) -> LedgerIntegrityError:
    details.setdefault("index", None)
    details.setdefault("expected", None)
    details.setdefault("actual", None)
    return LedgerIntegrityError(f"bundle {os.path.basename(path)}: {message}", hint=hint,
                                **details)


def verify_bundle(path: str | os.PathLike[str], trusted_key: PublicKeyLike | None = None, *,
                  on_entry: Callable[[Entry], None] | None = None,
                  keep_leaf_hashes: bool = False) -> BundleReport:
    """Check a bundle completely: header, signature over the digest, every entry, checkpoint.

    The entries are verified with ``trusted_key`` when given (and a header key
    that differs is an error), else with the key in the header. ``on_entry``
    sees every entry that decodes.
    """
    path = os.fspath(path)
    header = read_bundle_header(path)
    node = header["node"]
    report = BundleReport(path, node, None, trusted_key is not None, 0, None, None)
    try:
        header_key = load_public_key(header.get("public_key") or "")
        report.public_key = public_key_raw(header_key)
    except InvalidInput as exc:
        report.errors.append(_bundle_error(path, f"header public key: {exc.message}",
                                           check="bundle_header"))
        return report
    key: PublicKeyLike = header_key
    if trusted_key is not None:
        key = load_public_key(trusted_key)
        if public_key_raw(key) != report.public_key:
            report.errors.append(_bundle_error(
                path, f"signed with key {key_id(header_key)}, not {node}'s trusted key "
                f"{key_id(key)}", hint="the bundle was re-signed by someone else",
                check="bundle_key", expected=key_id(key), actual=key_id(header_key)))
    cert = header.get("certificate")
    if cert is not None:
        try:
            report.certificate_names = _certificate_names(cert)
            report.certificate_matches_node = node in report.certificate_names
        except InvalidInput as exc:
            report.errors.append(_bundle_error(path, f"certificate: {exc.message}",
                                               check="bundle_certificate"))

    # pass 1: structure, digest and bundle signature
    digest = hashlib.sha256()
    checkpoint: Checkpoint | None = None
    signature_seen = False
    count = 0
    try:
        for n, line in enumerate(_lines(path)):
            if signature_seen:
                raise InvalidInput("data after the signature line")
            if n > 0 and line.startswith(_ENTRY_PREFIX):
                count += 1
                digest.update(line)
                continue
            obj = _parse(line, "control")
            kind = obj.get("type")
            if kind == "signature":
                signature_seen = True
                report.digest = digest.hexdigest()
                if obj.get("digest") != report.digest:
                    report.errors.append(_bundle_error(
                        path, "digest does not match the content", check="bundle_digest",
                        hint="the bundle was altered after export",
                        expected=obj.get("digest"), actual=report.digest))
                sig = _hex_bytes(obj.get("signature"), 64, "bundle signature")
                if not make_checker(header_key)(sig, BUNDLE_SIGNING_DOMAIN
                                                + bytes.fromhex(report.digest)):
                    report.errors.append(_bundle_error(
                        path, "bundle signature does not verify", check="bundle_signature",
                        hint="the bundle was altered after export",
                        expected=f"signature by key {key_id(header_key)}", actual=sig.hex()))
                continue
            digest.update(line)
            if n == 0:
                continue
            if kind == "checkpoint":
                if checkpoint is not None:
                    raise InvalidInput("two checkpoint lines")
                checkpoint = Checkpoint.from_dict(obj.get("checkpoint"))
            else:
                raise InvalidInput(f"unexpected line type {kind!r}")
    except InvalidInput as exc:
        report.errors.append(_bundle_error(path, f"malformed: {exc.message}",
                                           check="bundle_format",
                                           hint="the file is damaged or not a bundle"))
        return report
    if not signature_seen:
        report.errors.append(_bundle_error(path, "has no signature line (truncated file?)",
                                           check="bundle_signature"))
    if checkpoint is None:
        report.errors.append(_bundle_error(path, "has no checkpoint", check="bundle_format"))
    elif checkpoint.tree_size != count:
        report.errors.append(_bundle_error(
            path, f"holds {count} entries but its checkpoint covers {checkpoint.tree_size}",
            check="bundle_entries", expected=checkpoint.tree_size, actual=count))
    if header.get("entries") != count:
        report.errors.append(_bundle_error(
            path, f"header announces {header.get('entries')} entries, found {count}",
            check="bundle_entries", expected=header.get("entries"), actual=count))
    report.checkpoint = checkpoint
    report.entries = count

    # pass 2: every entry, as the verifier does
    problems: list[Problem] = []

    def records() -> Iterator[EntryRecord]:
        for n, line in enumerate(_lines(path)):
            if n == 0 or not line.startswith(_ENTRY_PREFIX):
                continue
            try:
                obj = _parse(line, "entry")
                index = obj["index"]
                if isinstance(index, bool) or not isinstance(index, int):
                    raise InvalidInput("index is not an integer")
                yield EntryRecord(index, str(obj["body"]).encode("utf-8"),
                                  _hex_bytes(obj["leaf_hash"], HASH_SIZE, "leaf_hash"),
                                  bytes.fromhex(obj["signature"]), "", 0)
            except (InvalidInput, KeyError, ValueError, TypeError):
                problems.append(Problem(n - 1, "bundle_format", f"entry line {n + 1} is malformed",
                                        "entry line", "unreadable"))

    report.ledger = verify_records(records(), key, checkpoint, node=node, on_entry=on_entry,
                                   check_columns=False, keep_leaf_hashes=keep_leaf_hashes)
    report.errors.extend(p.error() for p in problems)
    report.leaf_hashes = report.ledger.leaf_hashes
    return report

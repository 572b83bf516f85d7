"""``pcnode ledger ...``: verify, checkpoint, proof, check-proof, export, replay, show.

Verification and replay open the stores read-only and trust nothing but the
node's public key, taken from its CA-issued certificate: they work without a
running node, on a copy of the files, which is what a regulator has.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from node import config as node_config
from node.cli.main import cli
from node.cli.output import console, emit, home_argument, json_option, table
from node.identity import load_certificate, verify_node_certificate
from pcnode.errors import InvalidInput, LedgerIntegrityError


@cli.group()
def ledger() -> None:
    """Audit ledger: verify, checkpoint, prove, export and replay."""


def _public_key(cfg: node_config.NodeConfig):
    """The node's signing key, as certified by the federation CA (not as stored in HOME)."""
    pem = cfg.tls_cert.read_bytes()
    return verify_node_certificate(pem, load_certificate(cfg.ca_cert), at=_cert_time(pem)).signing_key


def _cert_time(pem: bytes) -> dt.datetime:
    """A moment inside the certificate's validity: audit of old logs ignores expiry."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc + dt.timedelta(seconds=1)


def _open(home: str):
    from ledger import open_store

    cfg = node_config.load(home)
    return cfg, open_store(cfg.ledger_url)


@ledger.command("verify")
@home_argument
@click.option("--checkpoint", "checkpoint_file", type=click.Path(dir_okay=False, exists=True),
              help="a checkpoint saved earlier; truncation below it is detected")
@json_option
def verify_cmd(home: str, checkpoint_file: str | None, as_json: bool) -> None:
    """Recompute every hash, signature, chain link and root. Exit 0 intact, 1 not."""
    from ledger import Checkpoint, verify_store

    cfg, store = _open(home)
    cp = Checkpoint.from_json(Path(checkpoint_file).read_text()) if checkpoint_file else None
    report = verify_store(store, _public_key(cfg), cp, node=cfg.name)
    store.close()

    def human() -> None:
        if report.ok:
            console.print(f"[green]ledger of {cfg.name} intact[/]: {report.entries} entries, "
                          f"root {report.root_hash.hex()}, {report.checkpoints_checked} "
                          f"checkpoints checked in {report.seconds:.2f} s")
            return
        console.print(f"[red]ledger of {cfg.name} FAILED verification[/] "
                      f"({len(report.errors) + report.omitted_errors} problems)")
        for err in report.errors[:20]:
            d = err.details
            console.print(f"  index {d.get('index', '?')}: {err.message}"
                          + (f"\n    expected {d['expected']}\n    actual   {d['actual']}"
                             if "expected" in d else ""))

    emit(report.to_dict(), as_json, human)
    if not report.ok:
        sys.exit(1)


@ledger.command("checkpoint")
@home_argument
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="file to write")
@json_option
def checkpoint_cmd(home: str, out: str, as_json: bool) -> None:
    """Make a signed checkpoint now and save it to --out."""
    from node.files import atomic_write
    from node.services import NodeServices

    services = NodeServices(home)
    cp = services.ledger.checkpoint()
    atomic_write(out, cp.to_json().encode())
    emit(cp.to_dict(), as_json, lambda: console.print(
        f"checkpoint of {cp.node}: size {cp.tree_size}, root {cp.root_hash.hex()} → {out}"))


@ledger.command("proof")
@home_argument
@click.option("--index", type=int, required=True, help="entry index to prove")
@click.option("--size", "tree_size", type=int, default=None, help="tree size (default: latest)")
@click.option("--out", type=click.Path(dir_okay=False), help="also write the proof to this file")
def proof_cmd(home: str, index: int, tree_size: int | None, out: str | None) -> None:
    """Print an inclusion proof (JSON) for entry --index; check it offline with check-proof."""
    from node.files import atomic_write
    from node.services import NodeServices

    text = NodeServices(home).ledger.inclusion_proof(index, tree_size).to_json()
    if out:
        atomic_write(out, text.encode())
    click.echo(text)


@ledger.command("check-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--checkpoint", "checkpoint_file", type=click.Path(dir_okay=False, exists=True),
              help="checkpoint whose root the proof must reach")
@click.option("--certificate", type=click.Path(dir_okay=False, exists=True),
              help="the node's certificate, to check the checkpoint signature")
@json_option
def check_proof_cmd(proof_file: str, checkpoint_file: str | None, certificate: str | None,
                    as_json: bool) -> None:
    """Check an inclusion proof offline (no node needed). Exit 0 valid, 1 not."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from ledger import Checkpoint, InclusionProof, verify_inclusion
    from node.identity import SIGNING_KEY_OID

    proof = InclusionProof.from_json(Path(proof_file).read_text())
    cp = Checkpoint.from_json(Path(checkpoint_file).read_text()) if checkpoint_file else None
    key = None
    if certificate:
        cert = x509.load_pem_x509_certificate(Path(certificate).read_bytes())
        key = ed25519.Ed25519PublicKey.from_public_bytes(
            cert.extensions.get_extension_for_oid(SIGNING_KEY_OID).value.value)
    try:
        verify_inclusion(proof, checkpoint=cp, public_key=key)
    except LedgerIntegrityError as exc:
        problem = exc.to_dict()
        emit({"ok": False, "error": problem}, as_json,
             lambda: console.print(f"[red]proof INVALID[/]: {problem['message']}"))
        sys.exit(1)
    emit({"ok": True, "leaf_index": proof.leaf_index, "tree_size": proof.tree_size}, as_json,
         lambda: console.print(f"[green]proof valid[/]: entry {proof.leaf_index} is in the tree of "
                               f"size {proof.tree_size} with root {proof.root_hash.hex()}"))


@ledger.command("export")
@home_argument
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="bundle file to write")
@json_option
def export_cmd(home: str, out: str, as_json: bool) -> None:
    """Write a signed bundle (entries + checkpoint + certificate) for a regulator."""
    from ledger import export_bundle
    from node.services import NodeServices

    services = NodeServices(home)
    info = export_bundle(services.ledger, out,
                         certificate_pem=services.config.tls_cert.read_text())
    emit(info.to_dict(), as_json, lambda: console.print(
        f"exported {info.to_dict().get('entries', '?')} entries of {services.name} → {out}"))


@ledger.command("replay")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False, exists=True),
              help="federation CA certificate: take each node's key from its CA-issued "
                   "certificate (without it, bundle keys prove integrity but not authorship)")
@json_option
def replay_cmd(bundles: tuple[str, ...], ca_file: str | None, as_json: bool) -> None:
    """Rebuild the timeline of joint jobs across nodes' bundles; exit 1 on any finding."""
    from ledger import read_bundle_header, replay

    trusted = None
    if ca_file:
        ca = load_certificate(ca_file)
        trusted = {}
        for path in bundles:
            header = read_bundle_header(path)
            pem = (header.get("certificate") or "").encode()
            if not pem:
                raise InvalidInput(f"{path}: bundle carries no certificate; replay without --ca")
            ident = verify_node_certificate(pem, ca, at=_cert_time(pem))
            trusted[ident.name] = ident.signing_key
    report = replay(bundles, trusted_keys=trusted)
    data = report.to_dict()

    def human() -> None:
        s = data["summary"]
        rows = []
        for job in data["jobs"]:
            if not job.get("joint", True):
                continue
            rows.append([job["job_id"][:12], ",".join(job.get("parties", [])),
                         (job.get("transcript_hash") or "")[:12],
                         "ok" if not job["findings"] else
                         "; ".join(f["kind"] for f in job["findings"])])
        table(f"joint jobs across {s['bundles']} ledgers",
              ["job", "parties", "transcript", "status"], rows)
        for f in report.problems():
            console.print(f"[red]{f.kind}[/]: {f.message}")
        console.print(("[green]all joint jobs consistent[/]" if report.ok else
                       f"[red]{s['jobs_with_findings']} jobs with findings[/]")
                      + ("" if trusted else " (keys taken from the bundles; pass --ca to check "
                                            "authorship)"))

    emit(data, as_json, human)
    if not report.ok:
        sys.exit(1)

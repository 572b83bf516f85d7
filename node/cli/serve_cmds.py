"""``pcnode serve`` and ``pcnode status``."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from node.cli.main import cli
from node.cli.output import console, emit, home_argument, json_option, table
from node.services import NodeServices
from pcnode.errors import PcnodeError

log = logging.getLogger(__name__)

#: Seconds running calls get to finish after SIGTERM before they are cancelled.
SHUTDOWN_GRACE_S = 10.0


@cli.command()
@home_argument
def serve(home: str) -> None:
    """Run the node: gRPC for peers (mTLS) and the HTTP API; stop cleanly on SIGTERM."""
    from node.http.server import HttpServer
    from node.jobs.manager import JobManager
    from node.transport.server import build_server

    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    services = NodeServices(home, user="pcnode-serve")
    services.ledger  # noqa: B018 - open (and create) the ledger before accepting calls
    server, port, health = build_server(services, JobManager(services))
    http = HttpServer(services)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    http.start()
    cfg = services.config
    click.echo(f"pcnode {cfg.name} serving gRPC on {cfg.grpc_host}:{port} "
               f"and HTTP on {cfg.http_host}:{http.port}", err=False)
    import sys

    sys.stdout.flush()
    stop.wait()
    health.enter_graceful_shutdown()
    http.stop()
    server.stop(SHUTDOWN_GRACE_S).wait()
    services.close()
    click.echo(f"pcnode {cfg.name} stopped")


@cli.command()
@home_argument
@json_option
def status(home: str, as_json: bool) -> None:
    """Show this node's identity and which peers answer the health check."""
    services = NodeServices(home)
    ident = services.identity
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(ident.certificate_pem)
    peers = []
    for name, p in sorted(services.config.peers.items()):
        try:
            state = services.peer(name).health()
            error = ""
        except PcnodeError as exc:
            state, error = "UNREACHABLE", str(exc)
        peers.append({"peer": name, "address": p.address, "health": state, "error": error})
    data = {
        "name": services.name,
        "grpc": services.config.grpc_address,
        "http_port": services.config.http_port,
        "certificate_sha256": ident.fingerprint,
        "certificate_expires": cert.not_valid_after_utc.isoformat(),
        "peers": peers,
    }

    def human() -> None:
        console.print(f"node [bold]{data['name']}[/] gRPC {data['grpc']} HTTP :{data['http_port']}")
        console.print(f"certificate sha256 {ident.fingerprint[:16]}… expires "
                      f"{data['certificate_expires']}")
        table("peers", ["peer", "address", "health", "error"],
              [[p["peer"], p["address"], p["health"], p["error"]] for p in peers])

    emit(data, as_json, human)

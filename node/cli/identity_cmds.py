"""``pcnode federation init``, ``pcnode init`` and ``pcnode peer add``."""

from __future__ import annotations

from pathlib import Path

import click

from node import config as node_config
from node.cli.main import cli
from node.cli.output import console, emit, home_argument, json_option
from node.identity import init_federation, issue_node_identity
from pcnode.errors import ConfigError

DEFAULT_GRPC_PORT = 50051
DEFAULT_HTTP_PORT = 8080


@cli.group()
def federation() -> None:
    """Manage the federation CA (operator)."""


@federation.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="pcnode federation", show_default=True, help="CA display name")
@json_option
def federation_init(directory: Path, name: str, as_json: bool) -> None:
    """Create the federation CA key and certificate in DIRECTORY."""
    cert = init_federation(directory, name)
    emit({"ca_certificate": str(cert), "ca_key": str(directory / "ca.key")}, as_json,
         lambda: console.print(f"created federation CA [bold]{cert}[/] (key {directory / 'ca.key'}, "
                               "mode 0600: keep it offline)"))


@cli.command("init")
@home_argument
@click.option("--name", required=True, help="node name, as it will appear in its certificate")
@click.option("--federation", "federation_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="federation CA directory")
@click.option("--grpc-port", default=DEFAULT_GRPC_PORT, show_default=True, type=int)
@click.option("--http-port", default=DEFAULT_HTTP_PORT, show_default=True, type=int)
@json_option
def init_node(home: str, name: str, federation_dir: Path, grpc_port: int, http_port: int,
              as_json: bool) -> None:
    """Create a node: signing key, TLS key, CA-signed certificate and node.toml in HOME."""
    home_path = Path(home).resolve()
    node_config.validate_name(name)
    for port, field in ((grpc_port, "--grpc-port"), (http_port, "--http-port")):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{field}: must be 1-65535, got {port}")
    if (home_path / node_config.CONFIG_NAME).exists():
        raise ConfigError(f"{home_path / node_config.CONFIG_NAME} exists already",
                          hint="a node is initialised once; choose another HOME")
    keys = issue_node_identity(home_path, name, federation_dir)
    node_config.write_initial(home_path, name, grpc_port, http_port)
    cfg = node_config.load(home_path)
    emit({"home": str(home_path), "name": name, "certificate": str(keys.tls_cert),
          "grpc": cfg.grpc_address, "http_port": cfg.http_port}, as_json,
         lambda: console.print(f"initialised node [bold]{name}[/] in {home_path} "
                               f"(gRPC {cfg.grpc_address}, HTTP port {cfg.http_port})"))


@cli.group()
def peer() -> None:
    """Manage this node's peers."""


@peer.command("add")
@home_argument
@click.argument("name")
@click.argument("address")
@json_option
def peer_add(home: str, name: str, address: str, as_json: bool) -> None:
    """Register peer NAME at ADDRESS (HOST:PORT)."""
    p = node_config.add_peer(home, name, address)
    emit({"peer": p.name, "address": p.address}, as_json,
         lambda: console.print(f"peer [bold]{p.name}[/] at {p.address}"))


@peer.command("list")
@home_argument
@json_option
def peer_list(home: str, as_json: bool) -> None:
    """List configured peers."""
    cfg = node_config.load(home)
    data = [{"peer": p.name, "address": p.address} for p in cfg.peers.values()]
    emit(data, as_json, lambda: [console.print(f"{d['peer']}\t{d['address']}") for d in data])

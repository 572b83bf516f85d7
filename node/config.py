"""``node.toml``: loading, validation and writing.

Every problem names the file and the field, e.g.
``/srv/tax/node.toml: [grpc] port: must be an integer 1-65535, got "abc"``.
Relative paths in the file are relative to the node's home directory.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from node.files import atomic_write
from pcnode.errors import ConfigError

CONFIG_NAME = "node.toml"

#: Node names appear in certificates, ledger entries and file names, so they are
#: restricted to a conservative alphabet.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Peer:
    """A configured peer: its name (as in its certificate) and gRPC address."""

    name: str
    address: str


@dataclass(frozen=True)
class NodeConfig:
    """A validated node.toml."""

    home: Path
    name: str
    grpc_host: str
    grpc_port: int
    http_host: str
    http_port: int
    ca_cert: Path
    tls_cert: Path
    tls_key: Path
    signing_key: Path
    ledger_url: str
    catalog_url: str
    peers: dict[str, Peer] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The node.toml file."""
        return self.home / CONFIG_NAME

    @property
    def grpc_address(self) -> str:
        """host:port the gRPC server listens on."""
        return f"{self.grpc_host}:{self.grpc_port}"

    def peer(self, name: str) -> Peer:
        """The configured peer ``name``; ConfigError naming the fix if absent."""
        try:
            return self.peers[name]
        except KeyError:
            raise ConfigError(
                f"{self.path}: no peer named {name!r}",
                hint=f"add it with: pcnode peer add {self.home} {name} HOST:PORT",
            ) from None


def validate_name(name: str, what: str = "node name") -> str:
    """Return ``name`` if it is a valid node name, else raise ConfigError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}",
            hint="use 1-63 lowercase letters, digits, '-' or '_', starting with a letter",
        )
    return name


def parse_address(value: str, where: str) -> tuple[str, int]:
    """Split HOST:PORT, validating the port."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: expected HOST:PORT, got {value!r}")
    host, _, port = value.rpartition(":")
    return host.strip("[]"), _port(port, where)


def _port(value: Any, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: must be an integer 1-65535, got {value!r}") from None
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise ConfigError(f"{where}: must be an integer 1-65535, got {value!r}")
    return port


def load(home: str | Path) -> NodeConfig:
    """Load and validate ``HOME/node.toml``."""
    home = Path(home).resolve()
    path = home / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such file",
            hint=f"create the node with: pcnode init {home} --name NAME --federation DIR",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    def section(name: str) -> dict[str, Any]:
        value = raw.get(name)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: missing section [{name}]")
        return value

    def string(sec: str, key: str) -> str:
        value = section(sec).get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: [{sec}] {key}: required string is missing or empty")
        return value

    def key_file(sec: str, key: str) -> Path:
        p = (home / string(sec, key)).resolve()
        if not p.is_file():
            raise ConfigError(
                f"{path}: [{sec}] {key}: file {p} does not exist",
                hint="restore it from backup or re-create the node with pcnode init",
            )
        return p

    name = string("node", "name")
    try:
        validate_name(name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: [node] name: {exc.message}", hint=exc.hint) from None
    peers: dict[str, Peer] = {}
    raw_peers = raw.get("peers", {})
    if not isinstance(raw_peers, dict):
        raise ConfigError(f"{path}: [peers] must be a table of [peers.NAME] sections")
    for peer_name, body in raw_peers.items():
        where = f"{path}: [peers.{peer_name}] address"
        if not isinstance(body, dict) or "address" not in body:
            raise ConfigError(f"{where}: missing")
        try:
            validate_name(peer_name, "peer name")
        except ConfigError as exc:
            raise ConfigError(f"{path}: [peers.{peer_name}]: {exc.message}") from None
        parse_address(body["address"], where)
        peers[peer_name] = Peer(peer_name, body["address"])

    return NodeConfig(
        home=home,
        name=name,
        grpc_host=section("grpc").get("host", "127.0.0.1"),
        grpc_port=_port(section("grpc").get("port"), f"{path}: [grpc] port"),
        http_host=section("http").get("host", "127.0.0.1"),
        http_port=_port(section("http").get("port"), f"{path}: [http] port"),
        ca_cert=key_file("tls", "ca_cert"),
        tls_cert=key_file("tls", "cert"),
        tls_key=key_file("tls", "key"),
        signing_key=key_file("signing", "key"),
        ledger_url=_db_url(home, section("ledger").get("url", "sqlite:///ledger.db")),
        catalog_url=_db_url(home, section("catalog").get("url", "sqlite:///catalog.db")),
        peers=peers,
    )


def _db_url(home: Path, url: str) -> str:
    """Resolve a relative ``sqlite:///name.db`` against the home directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        return prefix + str(home / url[len(prefix):])
    return url


def write_initial(home: Path, name: str, grpc_port: int, http_port: int) -> Path:
    """Write a fresh node.toml (used by ``pcnode init``)."""
    doc = {
        "node": {"name": name},
        "grpc": {"host": "127.0.0.1", "port": grpc_port},
        "http": {"host": "127.0.0.1", "port": http_port},
        "tls": {"ca_cert": "tls/ca.pem", "cert": "tls/node.pem", "key": "tls/node.key"},
        "signing": {"key": "keys/signing.key"},
        "ledger": {"url": "sqlite:///ledger.db"},
        "catalog": {"url": "sqlite:///catalog.db"},
        "peers": {},
    }
    path = home / CONFIG_NAME
    atomic_write(path, tomli_w.dumps(doc).encode())
    return path


def add_peer(home: str | Path, name: str, address: str) -> Peer:
    """Register (or update) a peer in node.toml, keeping the rest of the file."""
    cfg = load(home)
    validate_name(name, "peer name")
    parse_address(address, f"{cfg.path}: peer {name} address")
    if name == cfg.name:
        raise ConfigError(f"{cfg.path}: a node cannot be its own peer ({name!r})")
    raw = tomllib.loads(cfg.path.read_text(encoding="utf-8"))
    raw.setdefault("peers", {})[name] = {"address": address}
    atomic_write(cfg.path, tomli_w.dumps(raw).encode())
    return Peer(name, address)

"""``NodeServices``: everything one node process needs, opened from its home directory.

Both ``pcnode serve`` (inbound calls) and CLI commands (local changes and
outbound jobs) build one of these. Shared state lives in the databases, which
serialise writers, so several processes of the same node can run at once.
"""

from __future__ import annotations

import functools
import getpass
import weakref
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from node import config as node_config
from node.identity import PeerIdentity, load_certificate, load_signing_key, verify_node_certificate

if TYPE_CHECKING:
    from ledger import Ledger
    from node.catalog import Catalog
    from node.transport.client import PeerClient


_open_services: weakref.WeakSet[NodeServices] = weakref.WeakSet()
#: Pools are held strongly: one whose NodeServices was already garbage-collected
#: must still be shut down, or the interpreter's exit hook writes to its closed pipe.
_open_pools: list[ProcessPoolExecutor] = []


def _shutdown_pool(pool: ProcessPoolExecutor) -> None:
    # wait for the workers to exit, or the interpreter's own exit hook
    # later writes to the pool's closed wake-up pipe
    pool.shutdown(wait=True, cancel_futures=True)
    if pool in _open_pools:
        _open_pools.remove(pool)


def close_all() -> None:
    """Close every NodeServices and process pool this process opened (the CLI calls this on exit)."""
    for services in list(_open_services):
        services.close()
    for pool in list(_open_pools):
        _shutdown_pool(pool)


class NodeServices:
    """Lazily opened services of one node: config, keys, ledger, catalog, peer clients."""

    def __init__(self, home: str | Path, user: str | None = None) -> None:
        self._config = node_config.load(home)
        self._config_mtime = self._config.path.stat().st_mtime_ns
        self.user = user or _os_user()
        _open_services.add(self)

    @property
    def config(self) -> node_config.NodeConfig:
        """The node's configuration, re-read when node.toml changes (e.g. ``pcnode peer add``)."""
        try:
            mtime = self._config.path.stat().st_mtime_ns
        except OSError:
            return self._config
        if mtime != self._config_mtime:
            self._config = node_config.load(self._config.home)
            self._config_mtime = mtime
        return self._config

    @property
    def name(self) -> str:
        """This node's name."""
        return self.config.name

    @functools.cached_property
    def signing_key(self) -> ed25519.Ed25519PrivateKey:
        """The node's Ed25519 signing key."""
        return load_signing_key(self.config.signing_key)

    @functools.cached_property
    def ca_certificate(self) -> x509.Certificate:
        """The federation CA certificate."""
        return load_certificate(self.config.ca_cert)

    @functools.cached_property
    def identity(self) -> PeerIdentity:
        """This node's own certificate identity (name, signing key, fingerprint)."""
        return verify_node_certificate(self.config.tls_cert.read_bytes(), self.ca_certificate)

    @functools.cached_property
    def ledger(self) -> Ledger:
        """The node's audit ledger (opened on first use)."""
        from ledger import Ledger, open_store

        return Ledger(open_store(self.config.ledger_url), self.signing_key, self.name)

    @functools.cached_property
    def catalog(self) -> Catalog:
        """The dataset catalog, applications and grants (opened on first use)."""
        from node.catalog import Catalog

        return Catalog(self.config.catalog_url, ledger=self.ledger, node=self.name)

    @functools.cached_property
    def pool(self) -> ProcessPoolExecutor:
        """One process pool (spawn start method: gRPC is not fork-safe) for CPU-heavy protocol work.

        Started on first use and shared by every job this process runs, so each
        job does not pay interpreter start-up for its workers.
        """
        from protocols.he.pool import PROTOCOL_MODULES, spawn_pool

        pool = spawn_pool(preload=PROTOCOL_MODULES)
        _open_pools.append(pool)
        return pool

    def peer(self, name: str) -> PeerClient:
        """An mTLS client for the configured peer ``name``."""
        from node.transport.client import PeerClient

        return PeerClient(self, name)

    def close(self) -> None:
        """Release database handles."""
        for attr in ("ledger", "catalog"):
            obj = self.__dict__.pop(attr, None)
            if obj is not None and hasattr(obj, "close"):
                obj.close()
        pool = self.__dict__.pop("pool", None)
        if pool is not None:
            _shutdown_pool(pool)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

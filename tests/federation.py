"""Test helpers: a throwaway federation of nodes on loopback with free ports."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from node import config as node_config
from node.identity import init_federation, issue_node_identity

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port the OS says is free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Fed:
    """A federation directory and its node homes."""

    root: Path
    ca_dir: Path
    homes: dict[str, Path]


def make_federation(root: Path, names: list[str], **identity_kwargs: object) -> Fed:
    """Create a CA and one home per name, each listing all the others as peers."""
    ca_dir = root / "federation"
    init_federation(ca_dir)
    homes: dict[str, Path] = {}
    for name in names:
        home = root / name
        issue_node_identity(home, name, ca_dir, **identity_kwargs)  # type: ignore[arg-type]
        node_config.write_initial(home, name, free_port(), free_port())
        homes[name] = home
    for name, home in homes.items():
        for other, other_home in homes.items():
            if other != name:
                port = node_config.load(other_home).grpc_port
                node_config.add_peer(home, other, f"127.0.0.1:{port}")
    return Fed(root, ca_dir, homes)


@contextlib.contextmanager
def serving(homes: dict[str, Path]) -> Iterator[dict[str, object]]:
    """Run in-process gRPC servers for ``homes``; yield their NodeServices by name."""
    from node.jobs.manager import JobManager
    from node.services import NodeServices
    from node.transport import client
    from node.transport.server import build_server

    servers = []
    services = {}
    try:
        for name, home in homes.items():
            svc = NodeServices(home, user=f"test-{name}")
            server, _, _ = build_server(svc, JobManager(svc))
            server.start()
            servers.append(server)
            services[name] = svc
        yield services
    finally:
        for s in servers:
            s.stop(None)
        client.close_all()
        for svc in services.values():
            svc.close()


@contextlib.contextmanager
def serve_process(home: Path) -> Iterator[subprocess.Popen[str]]:
    """Run `pcnode serve HOME` in a subprocess; wait for its ready line; stop it afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "serve", str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "serving" not in line:
            proc.kill()
            raise RuntimeError(f"serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def pcnode(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `pcnode` CLI in a subprocess; with ``check``, fail with its output on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "node.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"pcnode {args} failed (exit {proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc

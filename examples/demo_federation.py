"""The local three-node federation: `make demo` runs this.

It creates a federation CA and three nodes on loopback -- ``tax`` (a
government data provider), ``bank`` (a partner) and ``operator`` (the
platform, arbiter in three-party jobs) -- starts them, runs what pcnode can
do, prints each command and what happened, and shuts everything down.

Everything lives under ``.demo/`` and is recreated on each run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
NODES = ("tax", "bank", "operator")
console = Console()


def free_port() -> int:
    """A currently free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pcnode(*args: object, check: bool = True, show: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one pcnode command, echoing it and its output like a terminal session."""
    argv = [str(a) for a in args]
    if show:
        console.print(f"[bold cyan]$ pcnode {' '.join(_short(a) for a in argv)}[/]")
    proc = subprocess.run([sys.executable, "-m", "node.cli", *argv], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "COLUMNS": "110"})
    if show:
        if proc.stdout.strip():
            console.print(proc.stdout.rstrip(), markup=False, highlight=False)
        if proc.stderr.strip():
            console.print(proc.stderr.rstrip(), style="yellow", markup=False, highlight=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo step failed (exit {proc.returncode}): pcnode {' '.join(argv)}")
    return proc


def _short(arg: str) -> str:
    return arg.replace(str(DEMO) + "/", ".demo/")


def home(name: str) -> Path:
    """A node's home directory."""
    return DEMO / name


class Federation:
    """Starts and stops the three `pcnode serve` processes."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self) -> None:
        """Start every node and wait for its ready line."""
        for name in NODES:
            log = open(DEMO / f"{name}.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "node.cli", "serve", str(home(name))],
                                    stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            line = proc.stdout.readline() if proc.stdout else ""
            if "serving" not in line:
                raise SystemExit(f"{name} did not start; see {DEMO / (name + '.log')}")
            console.print(f"  {line.strip()}")
            self.procs[name] = proc

    def stop(self) -> None:
        """SIGTERM every node and wait for a clean exit."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                out, _ = proc.communicate(timeout=30)
                console.print(f"  {name}: {out.strip() or 'stopped'} (exit {proc.returncode})")
            except subprocess.TimeoutExpired:
                proc.kill()
                console.print(f"  {name}: killed after 30 s")


def section(title: str) -> None:
    """Print a section heading."""
    console.print(Rule(f"[bold]{title}"))


def main() -> None:
    """Run the demo end to end."""
    started = time.monotonic()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    section("1. Federation CA and three node identities")
    pcnode("federation", "init", DEMO / "federation", "--name", "Chengdu demo federation")
    ports = {n: (free_port(), free_port()) for n in NODES}
    for n in NODES:
        pcnode("init", home(n), "--name", n, "--federation", DEMO / "federation",
               "--grpc-port", ports[n][0], "--http-port", ports[n][1])
    for n in NODES:
        for other in NODES:
            if other != n:
                pcnode("peer", "add", home(n), other, f"127.0.0.1:{ports[other][0]}", show=False)
    console.print("  every node lists the other two as peers (pcnode peer add)")

    fed = Federation()
    section("2. Start the nodes (mTLS gRPC + HTTP API)")
    fed.start()
    try:
        run_steps()
    finally:
        section("Shut down (SIGTERM, graceful)")
        fed.stop()
    console.print(f"[bold green]demo finished in {time.monotonic() - started:.0f} s[/]; "
                  f"node homes and logs are in {DEMO}")


def run_steps() -> None:
    """The demo's steps, in the order a federation would use them."""
    section("3. Mutual authentication: status and health of peers")
    pcnode("status", home("bank"))

    section("4. A three-party job over the streaming Channel (secure sum self-test)")
    out = json.loads(pcnode("selftest", home("bank"), "--peers", "tax,operator",
                            "--length", 1 << 20, "--json").stdout)
    console.print(f"  bank's transcript hash: {out['transcript_hash']}")
    console.print("  every party compared link digests and final transcript hashes before "
                  "signing receipts; a mismatch would have failed the job")

    section("5. A node with a certificate from a foreign CA is refused")
    foreign = DEMO / "foreign"
    pcnode("federation", "init", foreign / "federation", "--name", "Not our federation", show=False)
    pcnode("init", foreign / "bank", "--name", "bank", "--federation", foreign / "federation",
           "--grpc-port", free_port(), "--http-port", free_port(), show=False)
    tax_port = _grpc_port(home("tax"))
    pcnode("peer", "add", foreign / "bank", "tax", f"127.0.0.1:{tax_port}", show=False)
    proc = pcnode("status", foreign / "bank", "--json", check=False)
    peers = json.loads(proc.stdout)["peers"] if proc.returncode == 0 else []
    refused = [p for p in peers if p["health"] == "UNREACHABLE"]
    console.print(f"  impostor 'bank' (foreign CA) → tax: {refused[0]['error'] if refused else proc.stderr}")
    if not refused:
        raise SystemExit("the foreign node was not refused")


def _grpc_port(node_home: Path) -> int:
    import tomllib

    return int(tomllib.loads((node_home / "node.toml").read_text())["grpc"]["port"])


if __name__ == "__main__":
    main()

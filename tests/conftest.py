"""Session fixtures shared by every test package.

``postgres_url``: a throwaway PostgreSQL cluster for the backend tests. It is
created in a temporary directory, owned by the ``postgres`` user when we run as
root (PostgreSQL refuses to run as root, and CI runs as root), listens on a
free port on 127.0.0.1, and is stopped and removed at the end of the session.
Without server binaries the tests that need it are skipped, saying how to
install them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_TOOLS = ("initdb", "pg_ctl", "pg_isready")
#: Seconds to wait for the cluster to accept connections before giving up.
PG_START_TIMEOUT_S = 60.0
#: The cluster is thrown away and the server is never crashed by a test (crash
#: tests kill the *client*), so fsync buys nothing here but minutes of test time.
PG_TEST_SETTINGS = "-c fsync=off -c full_page_writes=off"
SKIP_NO_POSTGRES = ("PostgreSQL server binaries not found (initdb/pg_ctl); run "
                    "scripts/install_postgres.sh as root to install them")


def _pg_bindir() -> Path | None:
    """A directory holding initdb, pg_ctl and pg_isready (PATH first, then Debian's layout)."""
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    candidates += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                                           key=lambda d: int(d.split("/")[-2])
                                           if d.split("/")[-2].isdigit() else 0)]
    for d in candidates:
        if all((d / tool).is_file() and os.access(d / tool, os.X_OK) for tool in PG_TOOLS):
            return d
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, check=False,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL (``postgresql+psycopg://``) of a superuser on a throwaway cluster's ``postgres`` DB."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(SKIP_NO_POSTGRES)
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root but there is no 'postgres' user to run the server; "
                        "run scripts/install_postgres.sh")
    base = Path(tempfile.mkdtemp(prefix="pcnode-pg-"))
    if os.geteuid() == 0:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log = base / "data", base / "server.log"
    _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "pcnode", "-E", "UTF8",
          "--locale=C", "--no-sync"], "initdb")
    port = _free_port()
    _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-W", "-o",
          f"-p {port} -k {base} -c listen_addresses=127.0.0.1 {PG_TEST_SETTINGS}", "start"],
         "pg_ctl start")
    try:
        deadline = time.monotonic() + PG_START_TIMEOUT_S
        while True:
            ready = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                                    str(port)], check=False, timeout=30)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not become ready on port {port}: {tail}")
            time.sleep(0.1)
        yield f"postgresql+psycopg://pcnode@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True, check=False,
                       timeout=120)
        shutil.rmtree(base, ignore_errors=True)

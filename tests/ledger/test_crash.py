"""Crash safety: kill -9 during a stream of appends leaves a ledger that verifies.

A child process appends (and checkpoints) in a loop. The parent waits until
the database holds at least MIN_COMMITTED entries (polling the store, not
sleeping a fixed time), snapshots the committed leaf hashes, kills the child
with SIGKILL, and checks that the ledger verifies and every committed entry is
still there, unchanged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Ledger, open_store, verify_store

MIN_COMMITTED = 300
#: Upper bound on waiting for the child; it normally needs well under a second.
DEADLINE_S = 60.0
REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, threading
from cryptography.hazmat.primitives import serialization
from ledger import Ledger, open_store

url, key_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = serialization.load_pem_private_key(open(key_path, "rb").read(), None)
ledger = Ledger(open_store(url), key, "bank-a")

def work(t):
    i = 0
    while True:
        ledger.append("job.completed", job_id=f"t{t}-{i}", rows_in=i, extra={"thread": t})
        i += 1
        if t == 0 and i % 40 == 0:
            ledger.checkpoint()

for t in range(1, threads):
    threading.Thread(target=work, args=(t,), daemon=True).start()
work(0)
"""


@pytest.mark.parametrize("threads", [1, 4])
def test_kill_9_during_appends(store_url: str, tmp_path: Path, threads: int) -> None:
    key = Ed25519PrivateKey.generate()
    key_path = tmp_path / "ledger.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    with open_store(store_url):  # create the tables before the child starts
        pass
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_url, str(key_path),
                              str(threads)], env=env, stderr=subprocess.PIPE)
    try:
        with open_store(store_url) as watcher:
            deadline = time.monotonic() + DEADLINE_S
            while watcher.size() < MIN_COMMITTED:
                if child.poll() is not None:
                    pytest.fail(f"appender died: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "appender made no progress"
                time.sleep(0.02)
            committed = list(watcher.leaf_hashes())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    assert len(committed) >= MIN_COMMITTED

    with open_store(store_url) as store:
        report = verify_store(store, key.public_key(), node="bank-a")
        assert report.ok, [e.to_dict() for e in report.errors[:3]]
        after = list(store.leaf_hashes())
        assert after[:len(committed)] == committed  # every committed entry intact
        # the node can reopen the ledger and carry on
        ledger = Ledger(store, key, "bank-a")
        ledger.append("job.started", job_id="after-crash")
        cp = ledger.checkpoint()
        assert verify_store(store, key.public_key(), cp).ok

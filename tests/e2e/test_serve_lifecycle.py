"""`pcnode serve` as a real process: health, graceful SIGTERM, and surviving a peer killed mid-job."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

import pytest

from node.services import NodeServices
from tests.federation import REPO, make_federation, pcnode, serve_process, wait_until


def test_serve_answers_health_and_stops_on_sigterm(tmp_path):
    fed = make_federation(tmp_path, ["tax", "bank"])
    with serve_process(fed.homes["tax"]) as proc:
        status = json.loads(pcnode("status", fed.homes["bank"], "--json").stdout)
        assert status["peers"][0]["health"] == "SERVING"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "stopped" in out


def _events(home, event):
    return [e for e in NodeServices(home).ledger.entries() if e.event == event]


@pytest.mark.timeout(300)
def test_requester_killed_mid_psi_fails_cleanly_and_holder_keeps_serving(tmp_path):
    fed = make_federation(tmp_path, ["tax", "bank"])
    n = 100_000
    with open(tmp_path / "tax.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id"])
        w.writerows([f"t{i}"] for i in range(n))
    with open(tmp_path / "bank.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id"])
        w.writerows([f"t{i * 2}"] for i in range(n))
    pcnode("dataset", "register", fed.homes["tax"], "--code", "t", "--name", "T", "--file",
           tmp_path / "tax.csv", "--key", "id", "--level", "L2", "--share", "unconditional")
    pcnode("dataset", "register", fed.homes["bank"], "--code", "b", "--name", "B", "--file",
           tmp_path / "bank.csv", "--key", "id", "--level", "L2", "--share", "none")
    pcnode("grant", fed.homes["tax"], "--standing", "--peer", "bank", "--dataset", "t",
           "--ops", "psi", "--purpose", "test", "--psi-modes", "cardinality")
    psi = ["psi", fed.homes["bank"], "--peer", "tax", "--dataset", "b", "--peer-dataset", "t",
           "--mode", "cardinality", "--json"]
    with serve_process(fed.homes["tax"]):
        victim = subprocess.Popen([sys.executable, "-m", "node.cli", *map(str, psi)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        assert wait_until(lambda: _events(fed.homes["tax"], "job.started"), timeout=120)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert wait_until(lambda: _events(fed.homes["tax"], "job.failed"), timeout=120)
        failed = _events(fed.homes["tax"], "job.failed")[-1]
        assert "bank" in failed.error or "link" in failed.error or failed.error
        # the holder still serves: a fresh job completes
        small = tmp_path / "bank_small.csv"
        small.write_text("id\nt0\nt2\nt999999999\n")
        pcnode("dataset", "register", fed.homes["bank"], "--code", "s", "--name", "S", "--file",
               small, "--key", "id", "--level", "L2", "--share", "none")
        out = json.loads(pcnode("psi", fed.homes["bank"], "--peer", "tax", "--dataset", "s",
                                "--peer-dataset", "t", "--mode", "cardinality", "--json").stdout)
        assert out["intersection_size"] == 2

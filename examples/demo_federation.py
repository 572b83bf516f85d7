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
console = Console(width=110)


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
    foreign_ca_refused()

    section("6. Data stays home: each node registers its own dataset in its catalog")
    data = DEMO / "data"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_data.py"), str(data)], check=True,
                   capture_output=True)
    pcnode("dataset", "register", home("tax"), "--code", "TAX-RESIDENTS-2026",
           "--name", "Resident tax records", "--file", data / "tax_residents.csv",
           "--key", "resident_id", "--level", "L3", "--share", "conditional",
           "--meta", data / "tax_residents.toml", "--reason", "authorised for operation")
    pcnode("dataset", "register", home("bank"), "--code", "BANK-APPLICANTS",
           "--name", "Loan applicants", "--file", data / "bank_applicants.csv",
           "--key", "applicant_id", "--level", "L3", "--share", "none",
           "--meta", data / "bank_applicants.toml")
    pcnode("dataset", "show", home("tax"), "TAX-RESIDENTS-2026")

    section("7. bank browses tax's catalog (metadata only) and applies")
    pcnode("catalog", home("bank"), "--peer", "tax")
    app = json.loads(pcnode("apply", home("bank"), "--peer", "tax", "--dataset",
                            "TAX-RESIDENTS-2026", "--ops", "psi,stats",
                            "--columns", "district,annual_income",
                            "--purpose", "small-business credit risk assessment",
                            "--days", 30, "--json").stdout)
    app_id = app.get("id") or app.get("application_id")

    section("8. tax's data officer reviews and approves (k=10, quota 20)")
    pcnode("applications", home("tax"))
    pcnode("approve", home("tax"), app_id, "--k", 10, "--quota", 20,
           "--psi-modes", "intersection,cardinality", "--reason", "risk assessment passed")

    section("9. PSI: bank learns which applicants tax also knows (mode intersection)")
    pcnode("psi", home("bank"), "--peer", "tax", "--dataset", "BANK-APPLICANTS",
           "--peer-dataset", "TAX-RESIDENTS-2026", "--mode", "intersection",
           "--out", DEMO / "bank_intersection.csv")
    pcnode("psi", home("bank"), "--peer", "tax", "--dataset", "BANK-APPLICANTS",
           "--peer-dataset", "TAX-RESIDENTS-2026", "--mode", "cardinality")

    extra_steps()

    section("Refused: a call outside the grant (column tax_paid was not granted)")
    refused = pcnode("stats", home("bank"), "--peer", "tax", "--dataset", "BANK-APPLICANTS",
                     "--peer-dataset", "TAX-RESIDENTS-2026", "--agg", "mean:tax_paid",
                     "--backend", "ckks", check=False)
    expect_refusal(refused, "rule 'columns'")

    section("Refused: a call after revocation")
    grants = json.loads(pcnode("grants", home("tax"), "--json").stdout)
    pcnode("revoke", home("tax"), grants[0]["id"], "--reason", "demo: partnership ended")
    refused = pcnode("psi", home("bank"), "--peer", "tax", "--dataset", "BANK-APPLICANTS",
                     "--peer-dataset", "TAX-RESIDENTS-2026", "--mode", "cardinality", check=False)
    expect_refusal(refused, "rule 'revoked'")

    fl_steps()
    ledger_steps()


def extra_steps() -> None:
    """Joint statistics with both backends, checked against a plaintext computation."""
    section("10. Joint statistics: mean income by district over the intersection")
    console.print("  bank learns only the aggregates; tax learns only how many applicants matched")
    expected = plaintext_mean_income_by_district()
    for backend in ("paillier", "ckks"):
        pcnode("stats", home("bank"), "--peer", "tax", "--dataset", "BANK-APPLICANTS",
                      "--peer-dataset", "TAX-RESIDENTS-2026",
                      "--agg", "count,mean:annual_income", "--group-by", "district",
                      "--backend", backend, "--out", DEMO / f"stats_{backend}.csv")
        check_against_plaintext(backend, DEMO / f"stats_{backend}.csv", expected)


#: Host features tax grants for the credit model, and the training settings.
FL_HOST_FEATURES = "annual_income,tax_paid,social_insurance_months"
FL_EPOCHS = 10
FL_LEARNING_RATE = 0.3
FL_BATCH = 1024


def fl_steps() -> None:
    """Vertical federated LR: bank (guest, labels), tax (host, features), operator (arbiter)."""
    section("11. A new application: federated modelling (fl) on three tax columns")
    app = json.loads(pcnode("apply", home("bank"), "--peer", "tax", "--dataset",
                            "TAX-RESIDENTS-2026", "--ops", "fl", "--columns", FL_HOST_FEATURES,
                            "--purpose", "credit model for small-business loans", "--days", 30,
                            "--json").stdout)
    pcnode("approve", home("tax"), app.get("id") or app.get("application_id"), "--quota", 10,
           "--psi-modes", "both", "--reason", "modelling approved; alignment by PSI mode both")

    section("12. Train the credit model: bank + tax + operator (CKKS, arbiter holds the key)")
    x, y = _joined()
    l2 = 1.0 / len(y)  # the regularisation of sklearn's default C=1 on the joined rows
    proc = pcnode("fl", "train", home("bank"), "--role", "guest", "--hosts", "tax",
                  "--arbiter", "operator", "--dataset", "BANK-APPLICANTS",
                  "--peer-dataset", "tax:TAX-RESIDENTS-2026", "--label", "default",
                  "--epochs", FL_EPOCHS, "--batch-size", FL_BATCH,
                  "--learning-rate", FL_LEARNING_RATE, "--l2", l2, "--tol", 0,
                  "--backend", "ckks", "--json")
    trained = json.loads(proc.stdout)
    federated = trained["train"]["auc"]
    central = centralised_auc(x, y)
    console.print(f"  federated AUC {federated:.4f} vs centralised training on the joined "
                  f"plaintext {central:.4f} (difference {abs(federated - central):.4f})")
    if abs(federated - central) > 0.01:
        raise SystemExit("federated AUC is not within 0.01 of centralised training")

    section("13. Score applicants jointly with the split model")
    pcnode("fl", "predict", home("bank"), "--model", trained["model_id"], "--dataset",
           "BANK-APPLICANTS", "--out", DEMO / "credit_scores.csv")


def _joined() -> tuple[list[list[float]], list[int]]:
    """Features (bank's numeric + tax's granted) and labels of the common rows, in plaintext."""
    import csv

    data = DEMO / "data"
    with open(data / "tax_residents.csv") as fh:
        tax = {r["resident_id"]: [float(r[c]) for c in FL_HOST_FEATURES.split(",")]
               for r in csv.DictReader(fh)}
    x, y = [], []
    with open(data / "bank_applicants.csv") as fh:
        for r in csv.DictReader(fh):
            if r["applicant_id"] in tax:
                x.append([float(r["age"]), float(r["loan_amount"]), float(r["credit_inquiries"]),
                          *tax[r["applicant_id"]]])
                y.append(int(r["default"]))
    return x, y


def centralised_auc(x: list[list[float]], y: list[int]) -> float:
    """sklearn's LogisticRegression (C=1) on the joined, standardised plaintext: the reference."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    xs = StandardScaler().fit_transform(x)
    model = LogisticRegression(C=1.0, max_iter=5000).fit(xs, y)
    return float(roc_auc_score(y, model.predict_proba(xs)[:, 1]))


def plaintext_mean_income_by_district() -> dict[str, tuple[int, float]]:
    """What a centralised computation on the joined plaintext gives (the demo can see both files)."""
    import csv

    data = DEMO / "data"
    with open(data / "bank_applicants.csv") as fh:
        bank = {row["applicant_id"] for row in csv.DictReader(fh)}
    sums: dict[str, list[float]] = {}
    with open(data / "tax_residents.csv") as fh:
        for row in csv.DictReader(fh):
            if row["resident_id"] in bank:
                acc = sums.setdefault(row["district"], [0, 0.0])
                acc[0] += 1
                acc[1] += float(row["annual_income"])
    return {d: (int(n), total / n) for d, (n, total) in sums.items()}


def check_against_plaintext(backend: str, path: Path, expected: dict[str, tuple[int, float]]) -> None:
    """Compare a stats CSV with the plaintext result: exact for Paillier, 1e-6 relative for CKKS."""
    import csv

    worst = 0.0
    with open(path) as fh:
        for row in csv.DictReader(fh):
            if not row.get("mean:annual_income"):
                continue  # suppressed group
            count, mean = expected[row["group"]]
            if int(row["count"]) != count:
                raise SystemExit(f"{backend}: count for {row['group']} differs from plaintext")
            worst = max(worst, abs(float(row["mean:annual_income"]) - mean) / abs(mean))
    # CKKS (docs/STATS.md) is read out exactly; what is left is its fixed point (2^-38 of
    # the column's range per value, one release quantum per sum): far below 1e-6.
    limit = 1e-9 if backend == "paillier" else 1e-6
    if worst > limit:
        raise SystemExit(f"{backend}: relative error {worst:.2e} exceeds {limit:g}")
    console.print(f"  {backend}: matches the plaintext computation (max relative error {worst:.1e})")


def expect_refusal(proc: subprocess.CompletedProcess[str], rule: str) -> None:
    """Check that a call was refused with the named rule."""
    if proc.returncode == 0 or rule not in proc.stderr:
        raise SystemExit(f"expected a refusal naming {rule}, got exit {proc.returncode}")
    console.print(f"  refused as expected ({rule}); both ledgers record it")


def foreign_ca_refused() -> None:
    """An impostor named 'bank' with a certificate from another CA cannot talk to tax."""
    foreign = DEMO / "foreign"
    pcnode("federation", "init", foreign / "federation", "--name", "Not our federation", show=False)
    pcnode("init", foreign / "bank", "--name", "bank", "--federation", foreign / "federation",
           "--grpc-port", free_port(), "--http-port", free_port(), show=False)
    tax_port = _grpc_port(home("tax"))
    pcnode("peer", "add", foreign / "bank", "tax", f"127.0.0.1:{tax_port}", show=False)
    proc = pcnode("status", foreign / "bank", "--json", check=False, show=False)
    peers = json.loads(proc.stdout)["peers"] if proc.returncode == 0 else []
    refused = [p for p in peers if p["health"] == "UNREACHABLE"]
    if not refused:
        raise SystemExit("the foreign node was not refused")
    console.print(f"  impostor 'bank' (foreign CA) → tax: {refused[0]['error']}")


def ledger_steps() -> None:
    """Every ledger verifies; the bundles replay consistently; one edited byte is caught."""
    section("Ledgers: each node verifies its own; a regulator replays all three")
    bundles = []
    for n in NODES:
        pcnode("ledger", "verify", home(n))
        bundle = DEMO / f"{n}.bundle"
        pcnode("ledger", "export", home(n), "--out", bundle, show=False)
        bundles.append(bundle)
    pcnode("ledger", "replay", *bundles, "--ca", DEMO / "federation" / "ca.pem")

    section("Tampering: edit one byte of one stored entry in a copy of tax's ledger")
    copy = DEMO / "tampered-tax"
    shutil.copytree(home("tax"), copy)
    index = tamper_one_byte(copy / "ledger.db")
    proc = pcnode("ledger", "verify", copy, check=False)
    if proc.returncode != 1 or f"index {index}" not in proc.stdout:
        raise SystemExit("verify did not catch the edited entry")
    console.print(f"  verify exit code {proc.returncode}: entry {index} named, with expected "
                  "and actual hashes")


def tamper_one_byte(db: Path) -> int:
    """Flip one byte inside the stored body of entry 3; return its index."""
    import sqlite3

    index = 3
    con = sqlite3.connect(db)
    (body,) = con.execute("select body from ledger_entries where idx = ?", (index,)).fetchone()
    raw = bytearray(body if isinstance(body, bytes) else body.encode())
    pos = raw.find(b'"event"') + 9
    raw[pos] ^= 0x01
    con.execute("update ledger_entries set body = ? where idx = ?",
                (bytes(raw) if isinstance(body, bytes) else raw.decode(), index))
    con.commit()
    con.close()
    return index


def _grpc_port(node_home: Path) -> int:
    import tomllib

    return int(tomllib.loads((node_home / "node.toml").read_text())["grpc"]["port"])


if __name__ == "__main__":
    main()

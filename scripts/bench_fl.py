"""Benchmark federated LR: three parties on this machine, one process each.

    .venv/bin/python scripts/bench_fl.py                 # CKKS 100k x (30+300), Paillier 10k x (10+20)
    .venv/bin/python scripts/bench_fl.py --quick         # small shapes, for a smoke run
    .venv/bin/python scripts/bench_fl.py --transport memory   # all parties as threads in one process
    .venv/bin/python scripts/bench_fl.py --transport grpc     # three real nodes, loopback mTLS

Transports are pluggable (``TRANSPORTS``): ``pipes`` runs each party in its own
process (``spawn`` start method) joined by OS pipes, so the parties really run
in parallel; ``memory`` runs them as threads over ``protocols.memory``;
``grpc`` runs the whole node path: a throwaway federation (CA, three node
homes), the guest's and the host's data registered in their catalogs
(Parquet), a standing ``fl`` grant with PSI mode ``both`` at the host, the host
and the arbiter as ``pcnode serve`` subprocesses and the guest as this process
starting an ``fl-train`` job (PSI alignment, training over mTLS gRPC streams,
joint scoring, registries, ledgers). Its extra figures: setup seconds
(registration; alignment and loading before epoch 1) and CPU seconds per
epoch of each node process (the serve processes read from ``/proc``; the
first figure also covers the alignment and loading, the PSI worker processes
are not counted).

Writes ``bench-results/fl.json`` and prints a table. Per-epoch times are the
guest's wall-clock seconds per epoch (epoch 1 includes the one-time encoding
of each party's batch matrices); CPU seconds are per process.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import multiprocessing as mp
import os
import platform
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pcnode.errors import Cancelled, ChannelTimeout
from protocols.channel import DEFAULT_RECV_TIMEOUT, Channel

# --- a Channel over a multiprocessing pipe ---------------------------------------------------

_FRAME = struct.Struct(">HBI")


class PipeChannel(Channel):
    """A Channel over one duplex ``multiprocessing`` connection, demultiplexed by tag."""

    def __init__(self, local: str, peer: str, conn: Any,
                 timeout: float = DEFAULT_RECV_TIMEOUT) -> None:
        super().__init__(local, peer, timeout)
        self._conn = conn
        self._cond = threading.Condition()
        self._queues: dict[str, deque] = defaultdict(deque)
        self._cancelled: str | None = None
        self._send_lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                frame = self._conn.recv_bytes()
            except (EOFError, OSError):
                self._set_cancelled("peer closed the link")
                return
            tlen, kind, mlen = _FRAME.unpack_from(frame)
            off = _FRAME.size
            tag = frame[off:off + tlen].decode()
            off += tlen
            meta = frame[off:off + mlen]
            data = frame[off + mlen:]
            if tag == "__cancel":
                self._set_cancelled(data.decode(errors="replace"))
                return
            self._absorb_received(tag, kind, meta, data)
            with self._cond:
                self._queues[tag].append((kind, meta, data))
                self._cond.notify_all()

    def _set_cancelled(self, reason: str) -> None:
        with self._cond:
            if self._cancelled is None:
                self._cancelled = reason
            self._cond.notify_all()

    def _frame(self, tag: str, kind: int, meta: bytes, data: bytes | memoryview) -> bytes:
        t = tag.encode()
        return _FRAME.pack(len(t), kind, len(meta)) + t + meta + bytes(data)

    def _transmit(self, tag: str, kind: int, meta: bytes, data: memoryview) -> None:
        if self._cancelled is not None:
            raise Cancelled(f"link {self.local}->{self.peer} is cancelled: {self._cancelled}")
        with self._send_lock:
            self._conn.send_bytes(self._frame(tag, kind, meta, data))

    def _receive(self, tag: str, timeout: float) -> tuple[int, bytes, bytes]:
        with self._cond:
            self._cond.wait_for(lambda: self._queues[tag] or self._cancelled is not None,
                                timeout=timeout)
            if self._queues[tag]:
                return self._queues[tag].popleft()
            if self._cancelled is not None:
                raise Cancelled(f"job cancelled on link {self.peer}->{self.local}: "
                                f"{self._cancelled}")
            raise ChannelTimeout(f"no message {tag!r} from {self.peer} within {timeout:g}s")

    def cancel(self, reason: str) -> None:
        """Tell the peer and stop this end."""
        try:
            with self._send_lock:
                self._conn.send_bytes(self._frame("__cancel", 0, b"", reason.encode()))
        except OSError:
            pass
        self._set_cancelled(reason)


# --- party programs (top-level so that spawn can import them) -------------------------------


def _data(kind: str, rows: int, guest_cols: int, host_cols: int, seed: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=guest_cols + host_cols,
                               n_informative=min(40, (guest_cols + host_cols) // 2),
                               n_redundant=0, flip_y=0.05, class_sep=0.8, random_state=seed)
    del kind
    return x[:, :guest_cols], x[:, guest_cols:], y


def _party(role: str, cfg: dict[str, Any], channels: dict[str, Channel]) -> dict[str, Any]:
    from protocols.fl import VerticalParams, run_arbiter, run_guest, run_host

    params = VerticalParams(**cfg["params"])
    out: dict[str, Any] = {"role": role}
    cpu_marks: list[float] = []

    def on_epoch(epoch: int, loss: float | None, rows: int, nbytes: int) -> None:
        cpu_marks.append(time.process_time())

    if role == "arbiter":
        cpu0 = time.process_time()
        rep = run_arbiter(channels, params, on_epoch=on_epoch)
        out["decryptions"] = rep.decryptions
    else:
        xg, xh, y = _data("train", cfg["rows"], cfg["guest_cols"], cfg["host_cols"], cfg["seed"])
        cpu0 = time.process_time()
        if role == "guest":
            model, rep = run_guest(channels, xg, y, params, on_epoch=on_epoch)
            out.update(model=model.to_bytes().decode(), epoch_seconds=rep.epoch_seconds,
                       losses=rep.losses, bytes=rep.bytes_sent + rep.bytes_received)
        else:
            out["model"] = run_host(channels, xh, params, on_epoch=on_epoch).to_bytes().decode()
    out["cpu_seconds"] = time.process_time() - cpu0
    out["epoch_cpu_seconds"] = np.diff([cpu0, *cpu_marks]).round(3).tolist()
    return out


def _proc_main(role: str, cfg: dict[str, Any], conns: dict[str, Any], result_q: Any) -> None:
    channels = {peer: PipeChannel(role, peer, c) for peer, c in conns.items()}
    try:
        result_q.put((role, _party(role, cfg, channels), None))
    except BaseException as exc:
        result_q.put((role, None, f"{type(exc).__name__}: {exc}"))


def run_pipes(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each party in its own spawned process, joined pairwise by pipes."""
    ctx = mp.get_context("spawn")
    roles = ["guest", "host", "arbiter"]
    conns: dict[str, dict[str, Any]] = {r: {} for r in roles}
    names = {"guest": cfg["params"]["guest"], "host": cfg["params"]["hosts"][0],
             "arbiter": cfg["params"]["arbiter"]}
    for i, a in enumerate(roles):
        for b in roles[i + 1:]:
            ca, cb = ctx.Pipe(duplex=True)
            conns[a][names[b]] = ca
            conns[b][names[a]] = cb
    q = ctx.Queue()
    procs = [ctx.Process(target=_proc_main, args=(r, cfg, conns[r], q)) for r in roles]
    for p in procs:
        p.start()
    results, errors = {}, []
    for _ in roles:
        role, res, err = q.get()
        if err:
            errors.append(f"{role}: {err}")
        else:
            results[role] = res
    for p in procs:
        p.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return results


def _run_role(role: str, cfg: dict[str, Any], channels: dict[str, Channel]) -> dict[str, Any]:
    return _party(role, cfg, channels)


def run_memory(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All parties as threads in this process (the GIL serialises most HE work)."""
    from protocols.memory import run_local

    p = cfg["params"]
    names = {"guest": p["guest"], "host": p["hosts"][0], "arbiter": p["arbiter"]}
    res = run_local({names[r]: functools.partial(_run_role, r, cfg) for r in names})
    return {r: res[names[r]] for r in names}


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _EpochClock:
    """Progress sink of the guest's job: wall and CPU marks at the end of every epoch."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.marks: list[dict[str, float]] = []
        self.start = self.mark()

    def mark(self) -> dict[str, float]:
        """Current wall time and CPU seconds of every process."""
        out = {"wall": time.perf_counter(), "guest": time.process_time()}
        out.update({role: _proc_cpu(pid) for role, pid in self.pids.items()})
        return out

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        """Job progress ticks (ignored)."""

    def epoch(self, n: int, total: int, loss: float | None) -> None:
        """End of epoch ``n``."""
        self.marks.append(self.mark())


def run_grpc(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Three real nodes on loopback mTLS; the guest (this process) starts an fl-train job."""
    import shutil
    import tempfile
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from node.catalog.sources import open_source
    from node.jobs.fl_job import start_training
    from node.models import ModelRegistry
    from node.services import NodeServices
    from tests.federation import make_federation, serve_process

    p = cfg["params"]
    guest, host, arbiter = p["guest"], p["hosts"][0], p["arbiter"]
    root = Path(tempfile.mkdtemp(prefix="pcnode-bench-fl-"))
    try:
        fed = make_federation(root, [guest, host, arbiter])
        xg, xh, y = _data("train", cfg["rows"], cfg["guest_cols"], cfg["host_cols"], cfg["seed"])
        ids = np.array([f"r{i:07d}" for i in range(len(y))])
        t0 = time.perf_counter()
        gtab = {"id": ids, **{f"g{j}": xg[:, j] for j in range(xg.shape[1])}, "label": y}
        pq.write_table(pa.table(gtab), root / "guest.parquet")
        order = np.random.default_rng(cfg["seed"]).permutation(len(y))  # another row order
        htab = {"id": ids[order], **{f"h{j}": xh[order, j] for j in range(xh.shape[1])}}
        pq.write_table(pa.table(htab), root / "host.parquet")
        del gtab, htab
        gsvc, hsvc = NodeServices(fed.homes[guest]), NodeServices(fed.homes[host])
        gsvc.catalog.register_dataset(code="G", name="guest", key="id", level="L2",
                                      source=open_source(file=root / "guest.parquet"),
                                      share="none", user="bench")
        hsvc.catalog.register_dataset(code="H", name="host", key="id", level="L2",
                                      source=open_source(file=root / "host.parquet"),
                                      share="unconditional", user="bench")
        hsvc.catalog.create_standing_grant(peer=guest, dataset="H", operations=["fl"],
                                           purpose="benchmark", user="bench", psi_modes=["both"])
        hsvc.close()
        register_s = time.perf_counter() - t0
        with serve_process(fed.homes[host]) as hproc, serve_process(fed.homes[arbiter]) as aproc:
            clock = _EpochClock({"host": hproc.pid, "arbiter": aproc.pid})
            outcome = start_training(
                gsvc, hosts=[host], arbiter=arbiter, dataset="G", label="label",
                host_datasets={host: "H"}, backend=p["backend"], epochs=p["epochs"],
                batch_size=p["batch_size"], learning_rate=p["learning_rate"], l2=p["l2"],
                tol=p["tol"], patience=p["patience"], seed=p["seed"], progress=clock,
                timeout=1800.0)
            end = clock.mark()
        s = outcome.summary
        gpart = ModelRegistry.for_services(gsvc).get(s["model_id"]).part.decode()
        hpart = ModelRegistry(fed.homes[host] / "models").get(s["model_id"]).part.decode()
        gsvc.close()
        marks = [clock.start, *clock.marks]
        first_wall = clock.marks[0]["wall"] - s["epoch_seconds"][0] if clock.marks else end["wall"]
        out: dict[str, dict[str, Any]] = {}
        for role in ("guest", "host", "arbiter"):
            out[role] = {"cpu_seconds": end[role] - clock.start[role],
                         "epoch_cpu_seconds": [round(b[role] - a[role], 3)
                                               for a, b in itertools.pairwise(marks)]}
        out["guest"].update(model=gpart, epoch_seconds=s["epoch_seconds"], losses=s["losses"],
                            bytes=s["bytes"])
        out["host"]["model"] = hpart
        out["_node"] = {"register_s": round(register_s, 2),
                        "align_and_load_s": round(first_wall - clock.start["wall"], 2),
                        "score_and_save_s": round(end["wall"] - clock.marks[-1]["wall"], 2)
                        if clock.marks else None,
                        "guest_stage_seconds": s.get("seconds"),
                        "rows_aligned": s["rows_aligned"], "job_id": outcome.job_id,
                        "train_auc_reported_by_job": s["train"]["auc"] if s["train"] else None}
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


TRANSPORTS: dict[str, Callable[[dict[str, Any]], dict[str, dict[str, Any]]]] = {
    "pipes": run_pipes,
    "memory": run_memory,
    "grpc": run_grpc,
}


# --- one benchmark case ------------------------------------------------------------------------


def bench_vertical(name: str, backend: str, rows: int, guest_cols: int, host_cols: int,
                   epochs: int, batch_size: int, transport: str) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split  # noqa: F401 - documented below

    from protocols.fl import GuestModel, HostModel

    seed = 7
    l2 = 1e-4
    params = {"guest": "bank", "hosts": ["tax"], "arbiter": "operator", "backend": backend,
              "epochs": epochs, "batch_size": batch_size, "learning_rate": 0.15, "l2": l2,
              "tol": 0.0, "patience": epochs + 1, "seed": seed, "job_id": name}
    cfg = {"params": params, "rows": rows, "guest_cols": guest_cols, "host_cols": host_cols,
           "seed": seed}
    t0 = time.perf_counter()
    res = TRANSPORTS[transport](cfg)
    wall = time.perf_counter() - t0
    node_extra = res.pop("_node", None)
    xg, xh, y = _data("train", rows, guest_cols, host_cols, seed)
    gm = GuestModel.from_bytes(res["guest"]["model"].encode())
    hm = HostModel.from_bytes(res["host"]["model"].encode())
    fed_auc = roc_auc_score(y, gm.partial_score(xg) + hm.partial_score(xh))
    x = np.hstack([xg, xh])
    xs = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    sk = LogisticRegression(C=1.0 / (l2 * rows), max_iter=2000).fit(xs, y)
    sk_auc = roc_auc_score(y, sk.decision_function(xs))
    ep = res["guest"]["epoch_seconds"]
    return {
        "case": name, "backend": backend, "transport": transport, "rows": rows,
        "guest_features": guest_cols, "host_features": host_cols, "batch_size": batch_size,
        "epochs": len(ep), "epoch_seconds": [round(s, 3) for s in ep],
        "first_epoch_s": round(ep[0], 3),
        "steady_epoch_s": round(float(np.mean(ep[1:])) if len(ep) > 1 else ep[0], 3),
        "wall_s": round(wall, 2),
        "cpu_s": {r: round(v["cpu_seconds"], 2) for r, v in res.items()},
        "epoch_cpu_s": {r: v["epoch_cpu_seconds"] for r, v in res.items()},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "losses": [round(v, 5) for v in res["guest"]["losses"]],
        "bytes_guest": res["guest"]["bytes"],
        "auc_federated": round(float(fed_auc), 4), "auc_sklearn": round(float(sk_auc), 4),
        **({"node": node_extra} if node_extra else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--transport", choices=sorted(TRANSPORTS), default="pipes")
    ap.add_argument("--quick", action="store_true", help="small shapes for a smoke run")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--paillier-epochs", type=int, default=2)
    ap.add_argument("--skip-paillier", action="store_true")
    ap.add_argument("--skip-ckks", action="store_true")
    ap.add_argument("--out", help="JSON file to write [default: bench-results/fl.json for "
                    "pipes, bench-results/fl_<transport>.json otherwise]")
    args = ap.parse_args()
    if args.out is None:
        suffix = "" if args.transport == "pipes" else f"_{args.transport}"
        args.out = f"bench-results/fl{suffix}.json"
    if args.quick:
        cases = [("ckks-quick", "ckks", 5000, 10, 40, 2, 1024),
                 ("paillier-quick", "paillier", 300, 3, 5, 1, 150)]
    else:
        cases = [("vertical-ckks-100k", "ckks", 100_000, 30, 300, args.epochs, 8192),
                 ("vertical-paillier-10k", "paillier", 10_000, 10, 20, args.paillier_epochs, 2000)]
    if args.skip_paillier:
        cases = [c for c in cases if c[1] != "paillier"]
    if args.skip_ckks:
        cases = [c for c in cases if c[1] != "ckks"]
    results = []
    for name, backend, rows, gc, hc, epochs, bs in cases:
        print(f"running {name} ...", flush=True)
        results.append(bench_vertical(name, backend, rows, gc, hc, epochs, bs, args.transport))
    doc = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "results": results}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(doc, fh, indent=2)
    hdr = f"{'case':<24}{'rows':>8}{'feat':>9}{'epoch1 s':>10}{'steady s':>10}" \
          f"{'AUC fl':>8}{'AUC skl':>9}"
    print(hdr)
    for r in results:
        feats = f"{r['guest_features']}+{r['host_features']}"
        print(f"{r['case']:<24}{r['rows']:>8}{feats:>9}{r['first_epoch_s']:>10}"
              f"{r['steady_epoch_s']:>10}{r['auc_federated']:>8}{r['auc_sklearn']:>9}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

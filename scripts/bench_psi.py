#!/usr/bin/env python3
"""Benchmark pcnode's ECDH-PSI against openmined-psi on the same sets.

Each case intersects N requester keys with N holder keys, 50% overlap
(requester rows 0..N-1, holder rows N/2..3N/2-1, keys are 18-digit strings
like resident-ID numbers). pcnode runs as two OS processes (one per party,
each with its own spawn process pool) joined by a transport; the transport is
a pluggable ``run_pair`` function:

    run_pair(requester_items, holder_items, mode) -> (summary, seconds, peak_rss)

``--transport socket`` (the default) links the parties over a loopback TCP
socket with a minimal Channel (framing like the gRPC channel, no TLS).
``--transport grpc`` is reserved for two real nodes over loopback mTLS.

openmined-psi (PyPI ``openmined-psi``, GCS mode, reveal-intersection) runs in
its own venv ``.venv-openmined``, created on demand; if it cannot be installed
the failure is reported and the run goes on.

    .venv/bin/python scripts/bench_psi.py                 # 100k and 1M
    .venv/bin/python scripts/bench_psi.py --scale 10m     # add 10M x 10M
    .venv/bin/python scripts/bench_psi.py --scale 100k --no-openmined

Writes bench-results/psi.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pcnode.errors import Cancelled, ChannelTimeout, PeerUnavailable  # noqa: E402
from protocols.channel import Channel  # noqa: E402

SCALES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
OPENMINED_VENV = ROOT / ".venv-openmined"
RESULTS = ROOT / "bench-results" / "psi.json"


# -- the sets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RangeItems:
    """Keys ``f"{i:018d}"`` for i in [start, start + count): generated, never shipped."""

    start: int
    count: int

    def chunks(self, size: int = 1 << 16) -> Iterator[list[str]]:
        """Yield the keys in lists of ``size``."""
        end = self.start + self.count
        for lo in range(self.start, end, size):
            yield [f"{i:018d}" for i in range(lo, min(lo + size, end))]

    def source(self) -> Any:
        """A streaming pcnode ItemSource over the keys."""
        from protocols.psi import ItemSource

        return ItemSource.from_chunks(self.chunks, total=self.count)


def sets_for(n: int) -> tuple[RangeItems, RangeItems]:
    """Requester and holder sets of ``n`` keys each with n/2 in common."""
    return RangeItems(0, n), RangeItems(n // 2, n)


# -- a loopback socket Channel (stand-in for the gRPC channel) ---------------------------

_HEAD = struct.Struct(">HBIQ")  # tag length, kind, meta length, data length
_CANCEL = "__cancel"


class SocketChannel(Channel):
    """A Channel over one TCP connection; a reader thread demultiplexes tags."""

    def __init__(self, sock: socket.socket, local: str, peer: str, timeout: float = 600) -> None:
        super().__init__(local, peer, timeout)
        self.sock = sock
        self._wlock = threading.Lock()
        self._cond = threading.Condition()
        self._queues: dict[str, deque[tuple[int, bytes, bytes]]] = defaultdict(deque)
        self._closed: str | None = None
        self._cancelled: str | None = None
        threading.Thread(target=self._reader, daemon=True).start()

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise EOFError
            got += k
        return bytes(buf)

    def _reader(self) -> None:
        try:
            while True:
                tl, kind, ml, dl = _HEAD.unpack(self._read_exact(_HEAD.size))
                tag = self._read_exact(tl).decode()
                meta = self._read_exact(ml)
                data = self._read_exact(dl)
                if tag == _CANCEL:
                    with self._cond:
                        self._cancelled = data.decode(errors="replace")
                        self._cond.notify_all()
                    return
                self._absorb_received(tag, kind, meta, data)
                with self._cond:
                    self._queues[tag].append((kind, meta, data))
                    self._cond.notify_all()
        except (EOFError, OSError):
            with self._cond:
                self._closed = "connection closed"
                self._cond.notify_all()

    def _transmit(self, tag: str, kind: int, meta: bytes, data: memoryview) -> None:
        if self._cancelled:
            raise Cancelled(f"link to {self.peer} cancelled: {self._cancelled}")
        t = tag.encode()
        with self._wlock:
            try:
                self.sock.sendall(_HEAD.pack(len(t), kind, len(meta), len(data)) + t + meta)
                self.sock.sendall(data)
            except OSError as exc:
                raise PeerUnavailable(f"{self.peer} vanished: {exc}") from None

    def _receive(self, tag: str, timeout: float) -> tuple[int, bytes, bytes]:
        with self._cond:
            self._cond.wait_for(
                lambda: self._queues[tag] or self._cancelled or self._closed, timeout=timeout
            )
            if self._queues[tag]:
                return self._queues[tag].popleft()
            if self._cancelled:
                raise Cancelled(f"job cancelled by {self.peer}: {self._cancelled}")
            if self._closed:
                raise PeerUnavailable(f"{self.peer} closed the connection")
            raise ChannelTimeout(f"no message {tag!r} from {self.peer} within {timeout:g}s")

    def cancel(self, reason: str) -> None:
        """Tell the peer and stop."""
        self._cancelled = reason
        try:
            r = reason.encode()
            t = _CANCEL.encode()
            with self._wlock:
                self.sock.sendall(_HEAD.pack(len(t), 0, 0, len(r)) + t + r)
        except OSError:
            pass
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


# -- the pcnode parties ---------------------------------------------------------------------------


def _party(role: str, port_q: Any, out_q: Any, items: RangeItems, mode: str,
           workers: int) -> None:
    """One party in its own process: pool, connection, protocol, peak RSS."""
    from protocols.psi import PsiParams, make_pool, run_holder, run_requester

    try:
        pool = make_pool(workers)
        list(pool.map(abs, range(workers * 4)))  # start every worker before the clock
        if role == "holder":
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            port_q.put(srv.getsockname()[1])
            sock, _ = srv.accept()
            srv.close()
        else:
            sock = socket.create_connection(("127.0.0.1", port_q.get()))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ch = SocketChannel(sock, role, "holder" if role == "requester" else "requester")
        params = PsiParams(mode=mode)
        stages: dict[str, list[float]] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            now = time.time()
            stages.setdefault(stage, [now, now])[1] = now

        t0 = time.time()
        run = run_requester if role == "requester" else run_holder
        res = run(ch, items.source(), params, pool=pool, progress=progress)
        t1 = time.time()
        pool.shutdown(wait=True)
        ch.close()
        me = resource.getrusage(resource.RUSAGE_SELF)
        ch_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        own, kids = me.ru_maxrss / 1024, ch_usage.ru_maxrss / 1024
        cpu = me.ru_utime + me.ru_stime + ch_usage.ru_utime + ch_usage.ru_stime
        timeline = {k: [round(a - t0, 2), round(b - t0, 2)] for k, (a, b) in stages.items()}
        out_q.put((role, {"t0": t0, "t1": t1, "summary": res.summary(), "timeline": timeline,
                          "cpu_seconds": round(cpu, 1),
                          "rss_mb": round(own, 1), "worker_rss_mb": round(kids, 1)}))
    except BaseException as exc:  # report, don't hang the parent
        out_q.put((role, {"error": f"{type(exc).__name__}: {exc}"}))


def run_pair_socket(requester: RangeItems, holder: RangeItems, mode: str,
                    workers: int) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Run both parties as OS processes over loopback TCP."""
    ctx = mp.get_context("spawn")
    port_q, out_q = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_party, args=(role, port_q, out_q, items, mode, workers))
             for role, items in (("holder", holder), ("requester", requester))]
    for p in procs:
        p.start()
    got = dict(out_q.get() for _ in procs)
    for p in procs:
        p.join()
    errors = {r: v["error"] for r, v in got.items() if "error" in v}
    if errors:
        raise RuntimeError(f"PSI party failed: {errors}")
    seconds = max(v["t1"] for v in got.values()) - min(v["t0"] for v in got.values())
    rss = {r: {"main_mb": v["rss_mb"], "worker_max_mb": v["worker_rss_mb"],
               "total_mb": round(v["rss_mb"] + workers * v["worker_rss_mb"], 1)}
           for r, v in got.items()}
    for v in got.values():
        v["summary"]["timeline"] = v["timeline"]
        v["summary"]["cpu_seconds"] = v["cpu_seconds"]
    return {r: v["summary"] for r, v in got.items()}, seconds, rss


def _write_keys_csv(path: Path, items: RangeItems) -> None:
    with open(path, "w") as fh:
        fh.write("id\n")
        for chunk in items.chunks():
            fh.write("\n".join(chunk))
            fh.write("\n")


def _vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of process trees (a node and its pool workers) twice a second.

    ``exclude`` roots are left out of a tree (the requester's tree would
    otherwise contain the holder node it started).
    """

    def __init__(self, roots: dict[str, int], exclude: set[int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.exclude = roots, exclude
        self.peak_mb: dict[str, float] = dict.fromkeys(roots, 0.0)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.5):
            self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        for name, root in self.roots.items():
            skip: set[int] = set()
            for pid in self.exclude - {root}:
                skip.update(_process_tree(pid))
            total = sum(_rss_mb(pid) for pid in _process_tree(root) if pid not in skip)
            self.peak_mb[name] = max(self.peak_mb[name], round(total, 1))

    def stop(self) -> dict[str, float]:
        """Stop sampling; the peaks seen."""
        self._stop_event.set()
        self.join()
        self.sample()
        return self.peak_mb


def run_pair_grpc(requester: RangeItems, holder: RangeItems, mode: str,
                  workers: int) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Two real nodes over loopback mTLS: the holder runs `pcnode serve` in its own process,
    the requester runs `pcnode psi`'s code path in this process. Datasets are registered
    CSVs read through the catalog, the grant is checked, and both ledgers record the job.
    """
    import tempfile

    sys.path.insert(0, str(ROOT))
    from node.jobs.initiate import initiate
    from node.jobs.kinds import Authorization
    from node.jobs.psi_job import new_salt
    from node.services import NodeServices
    from node.transport import client as grpc_client
    from tests.federation import make_federation

    with tempfile.TemporaryDirectory(prefix="bench-psi-") as tmp:
        root = Path(tmp)
        fed = make_federation(root, ["bank", "tax"])
        _write_keys_csv(root / "bank.csv", requester)
        _write_keys_csv(root / "tax.csv", holder)
        from node.catalog.sources import open_source

        for name, code, share in (("bank", "req", "none"), ("tax", "hold", "unconditional")):
            svc = NodeServices(fed.homes[name], user="bench")
            svc.catalog.register_dataset(code=code, name=code, source=open_source(
                file=str(root / f"{name}.csv")), key="id", level="L2", share=share, user="bench")
            if name == "tax":
                svc.catalog.create_standing_grant(peer="bank", dataset="hold", operations=["psi"],
                                                  purpose="benchmark", user="bench",
                                                  psi_modes=[mode])
            svc.close()
        proc = subprocess.Popen([sys.executable, "-m", "node.cli", "serve", str(fed.homes["tax"])],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=ROOT)
        try:
            if "serving" not in (proc.stdout.readline() if proc.stdout else ""):
                raise RuntimeError("the holder node did not start")
            sampler = TreeRssSampler({"requester": os.getpid(), "holder": proc.pid},
                                     exclude={proc.pid})
            sampler.start()
            bank = NodeServices(fed.homes["bank"], user="bench")
            params = {"mode": mode, "dataset": "req", "peer_dataset": "hold", "salt": new_salt(),
                      "normalization": "none"}
            t0 = time.time()
            outcome = initiate(bank, "psi", {"bank": "requester", "tax": "holder"}, params,
                               auth=Authorization(dataset="req"), timeout=3600)
            seconds = time.time() - t0
            holder_rss = _vm_hwm_mb(proc.pid)
            bank.close()
            tree_peak = sampler.stop()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            grpc_client.close_all()
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = dict(outcome.summary)
    # total_mb: the peak of the node's summed RSS (main process + its pool
    # workers), sampled every 0.5 s; main_mb: the main process's own peak (VmHWM).
    rss = {"requester": {"main_mb": round(me, 1), "worker_max_mb": None,
                         "total_mb": tree_peak["requester"]},
           "holder": {"main_mb": round(holder_rss, 1), "worker_max_mb": None,
                      "total_mb": tree_peak["holder"]}}
    return {"requester": summary, "holder": {"mode": mode}}, seconds, rss


TRANSPORTS: dict[str, Callable[..., tuple[dict[str, Any], float, dict[str, Any]]]] = {
    "socket": run_pair_socket,
    "grpc": run_pair_grpc,
}


# -- openmined-psi -----------------------------------------------------------------------------------

OPENMINED_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    import private_set_intersection.python as psi
    n = int(sys.argv[1])
    client = [f"{i:018d}" for i in range(0, n)]
    server = [f"{i:018d}" for i in range(n // 2, n // 2 + n)]
    t0 = time.time()
    c = psi.client.CreateWithNewKey(True)
    s = psi.server.CreateWithNewKey(True)
    setup = s.CreateSetupMessage(1e-9, len(client), server, psi.DataStructure.GCS)
    request = c.CreateRequest(client)
    response = s.ProcessRequest(request)
    size = len(c.GetIntersection(setup, response))
    t1 = time.time()
    me = resource.getrusage(resource.RUSAGE_SELF)
    rss = me.ru_maxrss / 1024
    print(json.dumps({"seconds": t1 - t0, "size": size, "rss_mb": rss,
                      "cpu_seconds": me.ru_utime + me.ru_stime,
                      "version": psi.__version__}))
""")


def ensure_openmined() -> str | None:
    """Create .venv-openmined with openmined-psi if missing; return an error or None."""
    py = OPENMINED_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import private_set_intersection"],
                                      capture_output=True).returncode == 0:
        return None
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(OPENMINED_VENV)], check=True,
                       capture_output=True, text=True)
        pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "openmined-psi"],
                             capture_output=True, text=True)
        if pip.returncode:
            return "pip install openmined-psi failed: " + pip.stderr.strip()[-400:]
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot create {OPENMINED_VENV}: {exc}"
    return None


def run_openmined(n: int) -> dict[str, Any]:
    """Time openmined-psi on the same n x n sets, in its own venv."""
    err = ensure_openmined()
    if err:
        return {"error": err}
    py = OPENMINED_VENV / "bin" / "python"
    proc = subprocess.run([str(py), "-c", OPENMINED_SCRIPT, str(n)],
                          capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip()[-400:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the blinding pool alone --------------------------------------------------------------


def bench_pool(items_per_task: int = 1 << 14, tasks_per_worker: int = 4) -> dict[str, Any]:
    """Items/s of the fused first pass and of peer blinding on 1 and 2 workers."""
    from protocols.psi.blinding import blind_chunk, hash_and_blind_chunk, make_pool
    from protocols.psi.curve import job_dst
    from protocols.psi.normalize import Normalization

    key, dst, norm = os.urandom(32), job_dst(os.urandom(32)), Normalization()
    items = [f"{i:018d}" for i in range(items_per_task)]
    points, _ = hash_and_blind_chunk(items[:256], dst, norm, key)
    points = (points * (items_per_task // 256 + 1))[: 32 * items_per_task]
    out: dict[str, Any] = {}
    for workers in (1, 2):
        with make_pool(workers) as pool:
            list(pool.map(abs, range(4 * workers)))
            k = tasks_per_worker * workers
            t = time.perf_counter()
            list(pool.map(hash_and_blind_chunk, [items] * k, [dst] * k, [norm] * k, [key] * k))
            first = k * items_per_task / (time.perf_counter() - t)
            t = time.perf_counter()
            list(pool.map(blind_chunk, [points] * k, [key] * k))
            second = k * items_per_task / (time.perf_counter() - t)
        out[f"{workers}_workers"] = {"hash_and_blind_per_s": round(first),
                                     "blind_per_s": round(second)}
        print(f"    pool {workers} worker(s): hash+blind {first:,.0f}/s, blind {second:,.0f}/s",
              flush=True)
    return out


# -- main -----------------------------------------------------------------------------


@dataclass
class Case:
    """One row of the results table."""

    scale: str
    n: int
    mode: str
    transport: str
    workers: int
    pcnode_seconds: float | None = None
    pcnode_items_per_s: float | None = None
    pcnode_rss_mb: dict[str, Any] | None = None
    pcnode_size: int | None = None
    pcnode_ok: bool | None = None
    openmined_seconds: float | None = None
    openmined_rss_mb: float | None = None
    openmined_cpu_seconds: float | None = None
    openmined_error: str | None = None
    ratio: float | None = None
    #: Per party: stage -> [first, last] progress report, seconds from its start.
    timeline: dict[str, Any] | None = None
    #: Per party: user + system CPU seconds of the party and its pool workers
    #: (includes pool start-up), to judge efficiency apart from other load.
    cpu_seconds: dict[str, float] | None = None


def bench_x25519(n: int = 100_000) -> dict[str, Any]:
    """X25519 backends side by side on one core: the same n random points, one scalar."""
    from protocols.psi import x25519

    points, key = os.urandom(32 * n), os.urandom(32)
    out: dict[str, Any] = {"points": n, "selected": x25519.BACKEND}
    results = {}
    for name in x25519.available_backends():
        fn = x25519.backend(name)
        start = time.perf_counter()
        results[name] = fn(points, key)
        out[f"{name}_ops_per_s"] = round(n / (time.perf_counter() - start))
    start = time.perf_counter()
    x25519.scalar_mult_many(points, key, returned_to_sender=True)
    out["returned_to_sender_ops_per_s"] = round(n / (time.perf_counter() - start))
    out["backends_agree"] = len(set(results.values())) == 1
    if "crypto_mb_ops_per_s" in out:
        out["ratio"] = round(out["crypto_mb_ops_per_s"] / out["openssl_ops_per_s"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="100k,1m",
                    help="comma-separated: 10k, 100k, 1m, 10m (default 100k,1m)")
    ap.add_argument("--mode", default="intersection",
                    help="comma-separated PSI modes (default intersection)")
    ap.add_argument("--transport", default="socket", choices=sorted(TRANSPORTS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="pool processes per party (default: all cores)")
    ap.add_argument("--no-openmined", action="store_true", help="skip openmined-psi")
    ap.add_argument("--openmined-max", default="1m",
                    help="largest scale to run openmined-psi on (default 1m)")
    ap.add_argument("--pool", action="store_true",
                    help="also time the blinding pool alone on 1 and 2 workers")
    ap.add_argument("--x25519", action="store_true",
                    help="also time the X25519 backends alone (one core, 100k points)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    x25519_figures = None
    if args.x25519:
        print("X25519 backends alone ...", flush=True)
        x25519_figures = bench_x25519()
        print(f"    {json.dumps(x25519_figures)}", flush=True)

    scales = [s.strip().lower() for s in args.scale.split(",") if s.strip()]
    for s in scales:
        if s not in SCALES:
            ap.error(f"unknown scale {s}; choose from {', '.join(SCALES)}")
    run_pair = TRANSPORTS[args.transport]
    pool_figures = None
    if args.pool:
        print("blinding pool alone ...", flush=True)
        pool_figures = bench_pool()
    cases: list[Case] = []
    for scale in scales:
        n = SCALES[scale]
        om: dict[str, Any] | None = None
        if not args.no_openmined and n <= SCALES[args.openmined_max]:
            print(f"[{scale}] openmined-psi ...", flush=True)
            om = run_openmined(n)
        for mode in [m.strip() for m in args.mode.split(",")]:
            print(f"[{scale}] pcnode {mode} over {args.transport} ...", flush=True)
            case = Case(scale, n, mode, args.transport, args.workers)
            req, hold = sets_for(n)
            summary, seconds, rss = run_pair(req, hold, mode, args.workers)
            case.pcnode_seconds = round(seconds, 2)
            case.pcnode_items_per_s = round(2 * n / seconds)
            case.pcnode_rss_mb = rss
            case.pcnode_size = summary["requester"]["size"]
            case.pcnode_ok = case.pcnode_size == n // 2
            case.timeline = {r: summary[r].get("timeline") for r in summary}
            case.cpu_seconds = {r: summary[r].get("cpu_seconds") for r in summary}
            if om is not None:
                if "error" in om:
                    case.openmined_error = om["error"]
                else:
                    case.openmined_seconds = round(om["seconds"], 2)
                    case.openmined_rss_mb = round(om["rss_mb"], 1)
                    case.openmined_cpu_seconds = round(om.get("cpu_seconds", 0), 1) or None
                    case.ratio = round(om["seconds"] / seconds, 2)
            cases.append(case)
            print(f"    {json.dumps(asdict(case))}", flush=True)

    print()
    head = (f"{'n x n':>12} {'mode':<13} {'pcnode s':>9} {'cpu s':>7} {'items/s':>9} "
            f"{'R rss MB':>9} {'S rss MB':>9} {'openmined s':>12} {'cpu s':>7} {'ratio':>6}  ok")
    print(head)
    print("-" * len(head))
    for c in cases:
        rss = c.pcnode_rss_mb or {}
        om = f"{c.openmined_seconds:.1f}" if c.openmined_seconds else (
            "failed" if c.openmined_error else "-")
        cpu = sum(v for v in (c.cpu_seconds or {}).values() if v)
        print(f"{c.n:>12,} {c.mode:<13} {c.pcnode_seconds:>9.1f} {cpu:>7.1f} "
              f"{c.pcnode_items_per_s:>9,} "
              f"{rss.get('requester', {}).get('total_mb', 0):>9.0f} "
              f"{rss.get('holder', {}).get('total_mb', 0):>9.0f} {om:>12} "
              f"{(c.openmined_cpu_seconds or 0):>7.1f} "
              f"{(f'{c.ratio:.2f}x' if c.ratio else '-'):>6}  {c.pcnode_ok}")
    for c in cases:
        if c.openmined_error:
            print(f"openmined-psi failed at {c.scale}: {c.openmined_error}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "psi",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version()},
        "note": "rss: main_mb = party process peak; total_mb = main + workers x worker peak",
        "pool": pool_figures,
        "x25519": x25519_figures,
        "cases": [asdict(c) for c in cases],
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if all(c.pcnode_ok for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())

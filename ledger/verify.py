"""The verifier: recompute everything from the stored entry bodies, trust nothing else.

For every stored row, in index order, it checks:

* **index** — rows run 0, 1, 2, … with no gap (a deleted entry shows here);
* **body** — the body is canonical JSON of a valid entry;
* **position** — the index written inside the signed body is the row's index
  (a reordered or moved entry shows here);
* **content** — SHA-256(0x00 || body) equals the leaf hash recorded for the
  row (an edited entry shows here);
* **link** — the body's ``prev`` is the recomputed hash of the entry before
  (an inserted or edited neighbour shows here);
* **signature** — the Ed25519 signature over the recomputed leaf hash
  verifies under the node's *public* key (a forged entry shows here);
* **node** — the entry names the expected node;
* **columns** — the filter columns (event, time, job, dataset, peer) match
  the signed body;

then recomputes the Merkle root and compares it with every checkpoint it
knows: the one you supply (the strong check: it was saved outside the
ledger), the signed checkpoints stored beside the ledger, and those recorded
inside it as ``checkpoint`` entries. A ledger shorter than a checkpoint is
reported as truncated.

Each problem is a :class:`~pcnode.errors.LedgerIntegrityError` whose
``details`` carry ``index``, ``expected``, ``actual`` and ``check``.

Large SQLite/PostgreSQL ledgers are verified in parallel: worker processes
(started with ``spawn``, safe beside gRPC) each check a contiguous range and
return its leaf hashes; the parent checks the links between ranges and folds
the leaves into the Merkle root.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import orjson

from pcnode.errors import InvalidInput, LedgerError, LedgerIntegrityError

from .checkpoint import CHECKPOINT_SIGNING_DOMAIN, Checkpoint
from .ed25519 import Checker, default_backend, make_checker
from .encoding import encode_checked_value
from .entry import ENTRY_SIGNING_DOMAIN, check_body, decode_body
from .events import CHECKPOINT
from .keys import PublicKeyLike, key_id, public_key_raw
from .merkle import HASH_SIZE, CompactRange
from .store.base import EntryRecord, LedgerStore

#: Problems kept in a report; past this only a count is kept (a wrong key
#: would otherwise produce one error per entry).
MAX_PROBLEMS = 1000
#: Ledgers with fewer rows are verified in-process: starting workers costs ~1 s.
PARALLEL_MIN_ROWS = 50_000
#: Smallest range handed to one worker.
MIN_CHUNK_ROWS = 20_000
#: Upper bound on worker processes.
MAX_WORKERS = 16

_ZERO_HEX = "00" * HASH_SIZE

#: Order of problems found at the same index: the most telling evidence first.
CHECK_ORDER = {name: rank for rank, name in enumerate((
    "index", "content", "position", "signature", "link", "body", "node", "columns",
    "checkpoint", "root", "truncation", "checkpoint_signature", "checkpoint_node"))}
_sha256 = hashlib.sha256


@dataclass
class Problem:
    """One failed check (picklable; turned into a LedgerIntegrityError in the report)."""

    index: int
    check: str
    message: str
    expected: str
    actual: str
    hint: str = ""

    def error(self) -> LedgerIntegrityError:
        """As the project's error type, with evidence in ``details``."""
        return LedgerIntegrityError(self.message, hint=self.hint, index=self.index,
                                    expected=self.expected, actual=self.actual, check=self.check)


@dataclass
class _Claim:
    """A checkpoint recorded inside the log by a ``checkpoint`` entry."""

    entry_index: int
    tree_size: int
    root: bytes
    time: int
    node: str
    signature: bytes


@dataclass
class _Chunk:
    start: int
    rows: int = 0
    leaves: bytearray = field(default_factory=bytearray)
    first_index: int | None = None
    first_prev: str | None = None
    last_index: int | None = None
    problems: list[Problem] = field(default_factory=list)
    omitted: int = 0
    claims: list[_Claim] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)
    open_signature_problem: Problem | None = None
    last_stored: bytes = b""        # stored leaf hash of the last row
    last_content_bad: bool = False  # the last row's content did not match it


def _check_rows(records: Iterable[EntryRecord], start: int, check: Checker, node: str | None,
                on_entry: Any = None, check_columns: bool = True) -> _Chunk:
    """Run every per-row check over ``records`` (expected to start at index ``start``).

    This loop is the verifier's hot path (10^6 iterations for a 10^6 ledger):
    it works on the parsed body dict and builds an :class:`Entry` only when
    one is needed (checkpoint entries, ``on_entry``).
    """
    out = _Chunk(start=start)
    problems = out.problems
    leaves = out.leaves
    nodes = out.nodes
    loads = orjson.loads  # any correct parser: the value is re-encoded and compared below
    encode = encode_checked_value
    domain = ENTRY_SIGNING_DOMAIN
    expect = start
    prev_leaf: bytes | None = None  # recomputed hash of the previous row
    prev_stored: bytes | None = None
    prev_content_bad = False
    open_sig: Problem | None = None

    def add(problem: Problem) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(problem)
        else:
            out.omitted += 1

    for rec in records:
        idx = rec.index
        if out.first_index is None:
            out.first_index = idx
        if idx != expect:
            if idx > expect:
                gap = f"entry {expect}" if idx == expect + 1 else f"entries {expect}..{idx - 1}"
                add(Problem(expect, "index", f"{gap} missing: found entry {idx} in its place",
                            str(expect), str(idx), "entries were deleted from the ledger"))
            else:
                add(Problem(expect, "index", f"entry {idx} stored out of order at position "
                            f"{expect}", str(expect), str(idx), "the ledger rows were reordered"))
            prev_leaf = None  # no link to check across a gap
        expect = idx + 1
        out.rows += 1
        body = rec.body
        leaf = _sha256(b"\x00" + body).digest()
        leaves += leaf
        content_bad = rec.leaf_hash != leaf
        if content_bad:
            add(Problem(idx, "content", f"entry {idx} does not match the hash recorded for it",
                        rec.leaf_hash.hex(), leaf.hex(),
                        "the entry was edited after it was written"))
        obj: Any = None
        time_us = -1
        try:
            obj = loads(body)
            if type(obj) is not dict or encode(obj) != body:
                raise ValueError("not canonical JSON")
            time_us = check_body(obj)
        except (ValueError, UnicodeDecodeError, InvalidInput) as exc:
            reason = exc.message if isinstance(exc, InvalidInput) else "not canonical JSON"
            add(Problem(idx, "body", f"entry {idx} has a malformed body: {reason}",
                        "canonical entry body", reason, "the entry was altered"))
            if type(obj) is not dict:
                obj = None
        body_prev = obj.get("prev") if obj is not None else None
        if open_sig is not None:
            if isinstance(body_prev, str) and body_prev != open_sig.actual:
                open_sig.expected = body_prev  # what the next entry committed to
            open_sig = None
        if time_us >= 0:
            if obj["index"] != idx:
                add(Problem(idx, "position", f"entry at position {idx} says it is entry "
                            f"{obj['index']}", str(idx), str(obj["index"]),
                            "entries were reordered, moved or replaced"))
            if prev_leaf is not None:
                if body_prev != prev_leaf.hex() \
                        and not (prev_content_bad and body_prev == prev_stored.hex()):
                    add(Problem(idx, "link", f"entry {idx} does not link to entry {idx - 1}",
                                prev_leaf.hex(), body_prev,
                                "an entry was inserted, removed or edited just before this one"))
            elif idx == 0 and body_prev != _ZERO_HEX:
                add(Problem(0, "link", "entry 0 does not start the chain", _ZERO_HEX,
                            body_prev, "entries were removed from the start"))
            entry_node = obj["node"]
            if node is not None and entry_node != node:
                add(Problem(idx, "node", f"entry {idx} names node {entry_node!r}", node,
                            entry_node, "an entry of another node was inserted"))
            nodes[entry_node] = nodes.get(entry_node, 0) + 1
            if check_columns and (rec.event, rec.time_us, rec.job_id, rec.dataset, rec.peer) != (
                    obj["event"], time_us, obj.get("job_id"), obj.get("dataset"),
                    obj.get("peer")):
                add(Problem(idx, "columns", f"entry {idx}'s filter columns differ from its body",
                            repr((obj["event"], time_us, obj.get("job_id"), obj.get("dataset"),
                                  obj.get("peer"))),
                            repr((rec.event, rec.time_us, rec.job_id, rec.dataset, rec.peer)),
                            "the stored filter columns were edited"))
            if obj["event"] == CHECKPOINT or on_entry is not None:
                entry = decode_body(obj, leaf, rec.signature)
                if entry.event == CHECKPOINT:
                    claim = _claim_of(entry)
                    if claim is None:
                        add(Problem(idx, "checkpoint", f"checkpoint entry {idx} is malformed",
                                    "tree_size, root and signature in extra",
                                    "missing or invalid"))
                    else:
                        out.claims.append(claim)
                if on_entry is not None:
                    on_entry(entry)
        if not content_bad and not check(rec.signature, domain + leaf):
            open_sig = Problem(idx, "signature", f"entry {idx} has an invalid signature",
                               leaf.hex(), leaf.hex(),
                               "the entry was forged or re-hashed after signing, or the "
                               "public key is not this node's")
            add(open_sig)
        if out.rows == 1 and isinstance(body_prev, str):
            out.first_prev = body_prev
        prev_leaf, prev_stored, prev_content_bad = leaf, rec.leaf_hash, content_bad
        out.last_index = idx
    out.last_stored, out.last_content_bad = prev_stored or b"", prev_content_bad
    out.open_signature_problem = open_sig
    return out


def _claim_of(entry: Any) -> _Claim | None:
    extra = entry.extra
    size, root, sig = extra.get("tree_size"), extra.get("root"), extra.get("signature")
    if isinstance(size, bool) or not isinstance(size, int) or not isinstance(root, str) \
            or not isinstance(sig, str):
        return None
    try:
        root_b, sig_b = bytes.fromhex(root), bytes.fromhex(sig)
    except ValueError:
        return None
    if len(root_b) != HASH_SIZE:
        return None
    return _Claim(entry.index, size, root_b, entry.time, entry.node, sig_b)


def _verify_range(url: str, lo: int, hi: int, start: int, key_raw: bytes, node: str | None,
                  backend: str) -> _Chunk:
    """Worker-process body: open the store by URL and check rows ``lo <= index < hi``."""
    from .store import open_store

    store = open_store(url, create=False)
    try:
        return _check_rows(store.read(lo, hi), start, make_checker(key_raw, backend), node)
    finally:
        store.close()


@dataclass
class VerifyReport:
    """Outcome of a verification. ``ok`` is True iff no check failed."""

    ok: bool
    node: str | None
    entries: int
    tree_size: int
    root_hash: bytes
    errors: list[LedgerIntegrityError]
    omitted_errors: int = 0
    checkpoints_checked: int = 0
    checkpoint: Checkpoint | None = None
    seconds: float = 0.0
    backend: str = ""
    workers: int = 1
    #: Recomputed leaf hashes, concatenated, when asked for (replay uses them).
    leaf_hashes: bytes = b""

    @property
    def first_error(self) -> LedgerIntegrityError | None:
        """The problem with the lowest index (the first bad entry), if any."""
        return self.errors[0] if self.errors else None

    def raise_if_failed(self) -> None:
        """Raise the first problem, if there is one."""
        if self.errors:
            raise self.errors[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the CLI prints with --json)."""
        return {"ok": self.ok, "node": self.node, "entries": self.entries,
                "tree_size": self.tree_size, "root": self.root_hash.hex(),
                "checkpoints_checked": self.checkpoints_checked,
                "checkpoint": None if self.checkpoint is None else self.checkpoint.to_dict(),
                "errors": [e.to_dict() for e in self.errors],
                "omitted_errors": self.omitted_errors, "seconds": round(self.seconds, 3),
                "backend": self.backend, "workers": self.workers}


class _Assembler:
    """Folds checked chunks, in order, into one report."""

    def __init__(self, key: PublicKeyLike, node: str | None,
                 checkpoints: Sequence[tuple[str, Checkpoint]]) -> None:
        self.key = key
        self.check = make_checker(key)
        #: (tree size, root, signature) of checkpoints whose signature was checked
        self.verified: set[tuple[int, bytes, bytes]] = {
            (cp.tree_size, cp.root_hash, cp.signature) for _, cp in checkpoints}
        self.node = node
        self.problems: list[Problem] = []
        self.omitted = 0
        self.frontier = CompactRange()
        self.prev: _Chunk | None = None
        self.next_index = 0  # index the next non-empty chunk should start with
        self.rows = 0
        self.size = 0
        self.nodes: dict[str, int] = {}
        self.checked = 0
        self.targets: dict[int, list[tuple[str, Checkpoint | _Claim]]] = {}
        for label, cp in checkpoints:
            self.targets.setdefault(cp.tree_size, []).append((label, cp))

    def add_problem(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.omitted += 1

    def fold(self, chunk: _Chunk) -> None:
        if chunk.rows and chunk.start > self.next_index:
            # whole ranges with no rows at all (checked by no worker) between chunks
            self.add_problem(Problem(
                self.next_index, "index",
                f"entries {self.next_index}..{chunk.start - 1} missing",
                str(self.next_index), str(chunk.first_index),
                "entries were deleted from the ledger"))
        if chunk.last_index is not None:
            self.next_index = chunk.last_index + 1
        prev = self.prev
        if prev is not None and prev.open_signature_problem is not None \
                and chunk.first_prev is not None:
            sig = prev.open_signature_problem
            if chunk.first_prev != sig.actual:
                sig.expected = chunk.first_prev
        if prev is not None and prev.last_index is not None and chunk.first_index is not None \
                and chunk.first_index == prev.last_index + 1 and chunk.first_prev is not None:
            last_leaf = bytes(prev.leaves[-HASH_SIZE:]).hex()
            already_reported = prev.last_content_bad and chunk.first_prev == prev.last_stored.hex()
            if chunk.first_prev != last_leaf and not already_reported:
                self.add_problem(Problem(chunk.first_index, "link",
                                         f"entry {chunk.first_index} does not link to entry "
                                         f"{prev.last_index}", last_leaf, chunk.first_prev,
                                         "an entry was inserted, removed or edited just before "
                                         "this one"))
        if chunk.rows:
            self.prev = chunk
        for p in chunk.problems:
            self.add_problem(p)
        self.omitted += chunk.omitted
        for claim in chunk.claims:
            if claim.tree_size != claim.entry_index:
                self.add_problem(Problem(claim.entry_index, "checkpoint",
                                         f"checkpoint entry {claim.entry_index} claims tree size "
                                         f"{claim.tree_size}", str(claim.entry_index),
                                         str(claim.tree_size)))
            self.targets.setdefault(claim.tree_size, []).append(("checkpoint entry", claim))
        for name, n in chunk.nodes.items():
            self.nodes[name] = self.nodes.get(name, 0) + n
        # fold leaves, comparing roots where a checkpoint needs one
        frontier, targets = self.frontier, self.targets
        leaves = chunk.leaves
        for off in range(0, len(leaves), HASH_SIZE):
            if frontier.size in targets:
                self._compare(frontier.size, frontier.root())
            frontier.append(bytes(leaves[off:off + HASH_SIZE]))
        self.rows += chunk.rows
        if chunk.last_index is not None:
            self.size = max(self.size, chunk.last_index + 1)

    def _compare(self, size: int, root: bytes) -> None:
        for label, cp in self.targets.pop(size):
            self.checked += 1
            if isinstance(cp, _Claim):
                known = (cp.tree_size, cp.root, cp.signature)
                signed = Checkpoint(cp.node, cp.tree_size, cp.root, cp.time, cp.signature)
                if known in self.verified:  # the same checkpoint, already checked as stored
                    pass
                elif not self.check(cp.signature, CHECKPOINT_SIGNING_DOMAIN + signed.body()):
                    self.add_problem(Problem(cp.entry_index, "checkpoint",
                                             f"checkpoint entry {cp.entry_index} has a bad "
                                             "signature", f"signature by key {key_id(self.key)}",
                                             cp.signature.hex(), "the checkpoint entry was forged"))
                where = cp.entry_index
            else:
                where = size
            want = cp.root if isinstance(cp, _Claim) else cp.root_hash
            if want != root:
                self.add_problem(Problem(
                    where, "root", f"the first {size} entries do not have the root of the {label}",
                    want.hex(), root.hex(),
                    "entries before this size were changed, removed, added or reordered"))

    def finish(self, started: float, backend: str, workers: int,
               supplied: Checkpoint | None) -> VerifyReport:
        if self.frontier.size in self.targets:
            self._compare(self.frontier.size, self.frontier.root())
        for size in sorted(self.targets):
            for label, cp in self.targets[size]:
                self.checked += 1
                want = cp.root if isinstance(cp, _Claim) else cp.root_hash
                self.add_problem(Problem(
                    self.frontier.size, "truncation",
                    f"the ledger has {self.frontier.size} entries but the {label} covers {size}: "
                    f"entries {self.frontier.size}..{size - 1} are missing",
                    want.hex(), self.frontier.root().hex(),
                    "the ledger was truncated; restore it from a backup or bundle"))
        self.problems.sort(key=lambda p: (p.index, CHECK_ORDER.get(p.check, 99)))
        node = self.node
        if node is None and self.nodes:
            node = max(self.nodes, key=lambda n: self.nodes[n])
        return VerifyReport(
            ok=not self.problems and not self.omitted, node=node, entries=self.rows,
            tree_size=self.frontier.size, root_hash=self.frontier.root(),
            errors=[p.error() for p in self.problems], omitted_errors=self.omitted,
            checkpoints_checked=self.checked, checkpoint=supplied,
            seconds=time.perf_counter() - started, backend=backend, workers=workers)


def _checkpoint_targets(key: PublicKeyLike, node: str | None, supplied: Checkpoint | None,
                        stored: Iterable[str], asm_problems: list[Problem]
                        ) -> list[tuple[str, Checkpoint]]:
    out: list[tuple[str, Checkpoint]] = []
    if supplied is not None:
        if not supplied.is_valid(key):
            asm_problems.append(Problem(
                supplied.tree_size, "checkpoint_signature",
                "the supplied checkpoint's signature does not verify",
                f"signature by key {key_id(key)}", supplied.signature.hex(),
                "the checkpoint file was edited, or belongs to another node"))
        elif node is not None and supplied.node != node:
            asm_problems.append(Problem(supplied.tree_size, "checkpoint_node",
                                        "the supplied checkpoint is of another node", node,
                                        supplied.node))
        else:
            out.append(("supplied checkpoint", supplied))
    for text in stored:
        try:
            cp = Checkpoint.from_json(text)
        except InvalidInput as exc:
            asm_problems.append(Problem(0, "checkpoint", f"a stored checkpoint is malformed: "
                                        f"{exc.message}", "checkpoint JSON", exc.message))
            continue
        if cp.is_valid(key):
            out.append(("stored checkpoint", cp))
        else:
            asm_problems.append(Problem(cp.tree_size, "checkpoint_signature",
                                        f"the stored checkpoint at size {cp.tree_size} has a "
                                        "bad signature", f"signature by key {key_id(key)}",
                                        cp.signature.hex(), "the stored checkpoint was forged"))
    return out


def verify_records(records: Iterable[EntryRecord], public_key: PublicKeyLike,
                   checkpoint: Checkpoint | None = None, *, node: str | None = None,
                   stored_checkpoints: Iterable[str] = (), backend: str | None = None,
                   on_entry: Any = None, check_columns: bool = True,
                   keep_leaf_hashes: bool = False) -> VerifyReport:
    """Verify a stream of rows in this process (used for bundles and small stores).

    ``on_entry(entry)`` is called with every entry that decodes;
    ``check_columns=False`` skips the filter-column check (bundles have none);
    ``keep_leaf_hashes`` puts the recomputed leaf hashes into the report.
    """
    started = time.perf_counter()
    backend = backend or default_backend()
    pre: list[Problem] = []
    targets = _checkpoint_targets(public_key, node, checkpoint, stored_checkpoints, pre)
    asm = _Assembler(public_key, node, targets)
    for p in pre:
        asm.add_problem(p)
    chunk = _check_rows(records, 0, make_checker(public_key, backend), node, on_entry,
                        check_columns)
    asm.fold(chunk)
    report = asm.finish(started, backend, 1, checkpoint)
    if keep_leaf_hashes:
        report.leaf_hashes = bytes(chunk.leaves)
    return report


def verify_store(store: LedgerStore, public_key: PublicKeyLike,
                 checkpoint: Checkpoint | None = None, *, node: str | None = None,
                 workers: int | None = None, backend: str | None = None,
                 chunk_rows: int | None = None) -> VerifyReport:
    """Verify every entry of ``store`` with the node's PUBLIC key; return a report.

    ``checkpoint`` is a checkpoint saved earlier (e.g. by ``pcnode ledger
    checkpoint --out``): the ledger must still contain it. ``node`` is the
    expected node name (default: the name in the entries). ``workers``
    defaults to one process per core for ledgers of
    :data:`PARALLEL_MIN_ROWS` rows or more.
    """
    started = time.perf_counter()
    backend = backend or default_backend()
    key_raw = public_key_raw(public_key)
    pre: list[Problem] = []
    stored = [r.checkpoint_json for r in store.checkpoints()]
    targets = _checkpoint_targets(public_key, node, checkpoint, stored, pre)
    asm = _Assembler(public_key, node, targets)
    for p in pre:
        asm.add_problem(p)
    bounds = store.index_bounds()
    if bounds is None:
        return asm.finish(started, backend, 1, checkpoint)
    lo, hi = min(bounds[0], 0), bounds[1] + 1
    rows = hi - lo
    if workers is None:
        workers = min(os.cpu_count() or 1, MAX_WORKERS) if rows >= PARALLEL_MIN_ROWS else 1
    if workers <= 1 or store.reopen_url is None:
        asm.fold(_check_rows(store.read(lo, hi), 0, make_checker(key_raw, backend), node))
        return asm.finish(started, backend, 1, checkpoint)
    size = chunk_rows or max(MIN_CHUNK_ROWS, math.ceil(rows / (workers * 4)))
    bounds_list = [(a, min(a + size, hi)) for a in range(lo, hi, size)]
    ctx = multiprocessing.get_context("spawn")  # gRPC-safe: never fork a gRPC process
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_verify_range, store.reopen_url, a, b, max(a, 0), key_raw,
                                   node, backend) for a, b in bounds_list]
            for fut in futures:
                asm.fold(fut.result())
    except BrokenProcessPool:
        raise LedgerError("a verify worker process died (out of memory?)",
                          hint="retry with workers=1") from None
    return asm.finish(started, backend, workers, checkpoint)

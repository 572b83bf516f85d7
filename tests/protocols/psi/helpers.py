"""Helpers: run one PSI job over the in-memory network, and the reference answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from protocols.memory import MemoryNetwork, run_local
from protocols.psi import PsiParams, run_holder, run_requester
from protocols.psi.normalize import Normalization, normalize


def run_psi(
    x: Any,
    y: Any,
    mode: str = "intersection",
    *,
    holder_params: PsiParams | None = None,
    taps: dict[str, list[Callable]] | None = None,
    keys: tuple[bytes | None, bytes | None] = (None, None),
    timeout: float = 30.0,
    max_buffered_bytes: int | None = None,
    **kw: Any,
) -> tuple[Any, Any]:
    """Run requester ``r`` (items x) against holder ``s`` (items y); return both results."""
    kw.setdefault("workers", 0)
    params = PsiParams(mode=mode, **kw)
    hparams = holder_params or params
    net = MemoryNetwork(["r", "s"], timeout=timeout, max_buffered_bytes=max_buffered_bytes)
    for party, fns in (taps or {}).items():
        for ch in net.channels(party).values():
            ch.taps.extend(fns)
    out = run_local(
        {
            "r": lambda ch: run_requester(ch["s"], x, params, key=keys[0]),
            "s": lambda ch: run_holder(ch["r"], y, hparams, key=keys[1]),
        },
        network=net,
    )
    return out["r"], out["s"]


def norm_set(items: Any, norm: Normalization | None = None) -> set:
    """The set of normalised keys (bytes verbatim), without skipped items."""
    norm = norm or Normalization()
    out = set()
    for i in items:
        k = i if isinstance(i, bytes) else normalize(i, norm)
        if k is not None:
            out.add(k)
    return out


def expected(x: Any, y: Any, norm: Normalization | None = None) -> set:
    """Python's set intersection over normalised items: the answer PSI must give."""
    return norm_set(x, norm) & norm_set(y, norm)


def check(r: Any, s: Any, x: list, y: list, mode: str,
          norm: Normalization | None = None) -> None:
    """Assert both results are right for ``mode`` and reveal nothing beyond it."""
    want = expected(x, y, norm)
    assert r.own_size == len(norm_set(x, norm)) == s.peer_size
    assert s.own_size == len(norm_set(y, norm)) == r.peer_size
    assert r.own_rows == len(x) and s.own_rows == len(y)
    if mode in ("intersection", "both"):
        assert norm_set(r.intersection, norm) == want
        assert len(r.intersection) == len(want) == r.size
        assert [x[i] for i in r.rows] == r.intersection
    else:
        assert r.intersection is None and r.rows is None
        assert r.size == len(want)
    if mode == "both":
        assert norm_set(s.intersection, norm) == want and s.size == len(want)
        assert [y[i] for i in s.rows] == s.intersection
    else:
        assert s.intersection is None and s.rows is None and s.size is None

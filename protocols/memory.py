"""In-memory Channel implementation and a runner for multi-party protocol tests.

Messages are encoded and decoded exactly as on the wire (``protocols.codec``),
so a protocol that passes here behaves the same over gRPC.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pcnode.errors import Cancelled, ChannelTimeout, InvalidInput

from .channel import DEFAULT_RECV_TIMEOUT, Channel

T = TypeVar("T")


class _Inbox:
    """Per-tag FIFO buffers guarded by one condition variable."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queues: dict[str, deque[tuple[int, bytes, bytes]]] = defaultdict(deque)
        self.cancelled: str | None = None
        #: Bytes sent but not yet received, over all tags.
        self.buffered = 0


class MemoryChannel(Channel):
    """One end of an in-process link; created in pairs by :class:`MemoryNetwork`."""

    def __init__(self, local: str, peer: str, inbox: _Inbox, outbox: _Inbox,
                 timeout: float = DEFAULT_RECV_TIMEOUT,
                 max_buffered_bytes: int | None = None) -> None:
        super().__init__(local, peer, timeout)
        self._inbox = inbox
        self._outbox = outbox
        self._peer_end: MemoryChannel | None = None
        self._max_buffered = max_buffered_bytes

    def _transmit(self, tag: str, kind: int, meta: bytes, data: memoryview) -> None:
        box = self._outbox
        with box.cond:
            if box.cancelled is not None or self._inbox.cancelled is not None:
                raise Cancelled(f"link {self.local}->{self.peer} is cancelled: "
                                f"{box.cancelled or self._inbox.cancelled}")
            if self._max_buffered is not None:  # flow control, as on a real link
                room = box.cond.wait_for(
                    lambda: box.buffered < self._max_buffered or box.cancelled is not None
                    or self._inbox.cancelled is not None, timeout=self.timeout)
                if box.cancelled is not None or self._inbox.cancelled is not None:
                    raise Cancelled(f"link {self.local}->{self.peer} is cancelled")
                if not room:
                    raise ChannelTimeout(
                        f"{self.peer} has not read our messages for {self.timeout:g}s",
                        hint="the peer is stuck or overloaded", peer=self.peer, tag=tag)
            # The receiver hashes in arrival order, which here is append order.
            peer_end = self._peer_end
            blob = bytes(data)
            box.buffered += len(blob)
            if peer_end is not None:
                peer_end._absorb_received(tag, kind, meta, blob)
            box.queues[tag].append((kind, meta, blob))
            box.cond.notify_all()

    def _receive(self, tag: str, timeout: float) -> tuple[int, bytes, bytes]:
        box = self._inbox
        with box.cond:
            ok = box.cond.wait_for(lambda: box.queues[tag] or box.cancelled is not None,
                                   timeout=timeout)
            if box.queues[tag]:
                item = box.queues[tag].popleft()
                box.buffered -= len(item[2])
                box.cond.notify_all()
                return item
            if box.cancelled is not None:
                raise Cancelled(f"job cancelled on link {self.peer}->{self.local}: {box.cancelled}")
            assert not ok
            raise ChannelTimeout(
                f"no message {tag!r} from {self.peer} within {timeout:g}s",
                hint="the peer may be slow or stuck; raise the timeout or check the peer's log",
                peer=self.peer, tag=tag,
            )

    def cancel(self, reason: str) -> None:
        """Cancel both directions of this link."""
        for box in (self._inbox, self._outbox):
            with box.cond:
                if box.cancelled is None:
                    box.cancelled = reason
                box.cond.notify_all()


class MemoryNetwork:
    """A full mesh of :class:`MemoryChannel` links between named parties.

    ``max_buffered_bytes`` bounds what a link holds unread, per direction: a
    sender then blocks, as on a real link under flow control, so tests can
    catch protocols that need unbounded buffering.
    """

    def __init__(self, parties: list[str] | tuple[str, ...],
                 timeout: float = DEFAULT_RECV_TIMEOUT,
                 max_buffered_bytes: int | None = None) -> None:
        if len(set(parties)) != len(parties) or len(parties) < 2:
            raise InvalidInput("a network needs at least two distinct party names")
        self.parties = tuple(parties)
        self._channels: dict[str, dict[str, MemoryChannel]] = {p: {} for p in parties}
        for a, b in itertools.combinations(parties, 2):
            ab, ba = _Inbox(), _Inbox()  # ab: messages travelling a->b
            end_a = MemoryChannel(a, b, inbox=ba, outbox=ab, timeout=timeout,
                                  max_buffered_bytes=max_buffered_bytes)
            end_b = MemoryChannel(b, a, inbox=ab, outbox=ba, timeout=timeout,
                                  max_buffered_bytes=max_buffered_bytes)
            end_a._peer_end, end_b._peer_end = end_b, end_a
            self._channels[a][b] = end_a
            self._channels[b][a] = end_b

    def channels(self, party: str) -> dict[str, Channel]:
        """The channels of ``party``, keyed by peer name."""
        return dict(self._channels[party])

    def cancel_all(self, reason: str) -> None:
        """Cancel every link (used when one party fails)."""
        for chans in self._channels.values():
            for ch in chans.values():
                ch.cancel(reason)


def run_local(
    parties: Mapping[str, Callable[[dict[str, Channel]], T]],
    network: MemoryNetwork | None = None,
    timeout: float = DEFAULT_RECV_TIMEOUT,
) -> dict[str, T]:
    """Run one function per party in threads over a memory network; return their results.

    If any party raises, every link is cancelled so the others stop promptly,
    and the first error is re-raised.
    """
    net = network or MemoryNetwork(list(parties), timeout=timeout)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str, fn: Callable[[dict[str, Channel]], T]) -> None:
        try:
            results[name] = fn(net.channels(name))
        except BaseException as exc:
            if not isinstance(exc, Cancelled) or not errors:
                errors.append(exc)
            net.cancel_all(f"party {name} failed: {type(exc).__name__}")

    with ThreadPoolExecutor(max_workers=len(parties)) as pool:
        for f in [pool.submit(run, n, fn) for n, fn in parties.items()]:
            f.result()
    if errors:
        primary = [e for e in errors if not isinstance(e, Cancelled)] or errors
        raise primary[0]
    return results


__all__ = ["MemoryChannel", "MemoryNetwork", "run_local"]

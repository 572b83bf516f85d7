"""The ``Channel`` interface: a tagged, ordered, duplex link to one peer of a job.

A party in a job holds one Channel per other party (a three-party job gives
each party two). Protocol code only ever calls :meth:`Channel.send` and
:meth:`Channel.recv` (and the typed helpers built on them); it never sees how
bytes move. Two implementations exist: :class:`protocols.memory.MemoryChannel`
for tests and benchmarks, and ``node.transport.stream_channel.GrpcChannel``
for real runs over mTLS.

Semantics every implementation keeps:

* Messages carry a string ``tag``. ``recv(tag)`` returns the oldest unclaimed
  message with that tag; messages of other tags wait in a buffer. Within a tag,
  order is the sender's order.
* ``recv`` waits at most ``timeout`` seconds (default :attr:`Channel.timeout`)
  and raises :class:`~pcnode.errors.ChannelTimeout` naming the peer and tag.
* A vanished peer raises :class:`~pcnode.errors.PeerUnavailable`; a cancelled
  job raises :class:`~pcnode.errors.Cancelled` at both ends.
* Each direction keeps a running SHA-256 over every message in order
  (:class:`LinkDigest`), except tags starting with ``__`` (channel
  machinery). Both ends of a link compute the same two digests; the job
  transcript is built from them by :mod:`protocols.transcript`.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pcnode.errors import ProtocolError

from . import codec
from .codec import Payload

#: Default seconds a ``recv`` waits. Long enough for a peer to encrypt a large
#: chunk on a busy machine, short enough that a dead peer is noticed.
DEFAULT_RECV_TIMEOUT = 300.0

#: Tags starting with this prefix are reserved for the channel machinery.
RESERVED_TAG_PREFIX = "__"

Tap = Callable[[str, str, str, Payload], None]
"""Observer called as ``tap(direction, peer, tag, payload)``; direction is "send" or "recv"."""


@dataclass
class LinkDigest:
    """Running SHA-256 over one direction of a link, with message and byte counts."""

    messages: int = 0
    nbytes: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)

    def update(self, tag: str, kind: int, meta: bytes, data: memoryview | bytes) -> None:
        """Absorb one message in canonical framing (lengths prefix every field)."""
        t = tag.encode()
        self._hash.update(struct.pack(">H", len(t)) + t + bytes([kind]))
        self._hash.update(struct.pack(">I", len(meta)) + meta)
        self._hash.update(struct.pack(">Q", len(data)))
        self._hash.update(data)
        self.messages += 1
        self.nbytes += len(data)

    def hexdigest(self) -> str:
        """The digest so far, as hex."""
        return self._hash.hexdigest()


class Channel(ABC):
    """A duplex, tagged link between ``local`` and ``peer`` inside one job."""

    def __init__(self, local: str, peer: str, timeout: float = DEFAULT_RECV_TIMEOUT) -> None:
        self.local = local
        self.peer = peer
        self.timeout = timeout
        self.sent = LinkDigest()
        self.received = LinkDigest()
        self.taps: list[Tap] = []
        self._hash_lock = threading.Lock()

    # -- what implementations provide -------------------------------------------------

    @abstractmethod
    def _transmit(self, tag: str, kind: int, meta: bytes, data: memoryview) -> None:
        """Deliver one encoded message to the peer (may block for flow control)."""

    @abstractmethod
    def _receive(self, tag: str, timeout: float) -> tuple[int, bytes, bytes | memoryview]:
        """Return the next encoded message with ``tag``, or raise a ChannelError."""

    @abstractmethod
    def cancel(self, reason: str) -> None:
        """Abort the link: pending and later calls at both ends raise Cancelled."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources after a clean end of the job."""

    # -- the interface protocols use ----------------------------------------------------

    def send(self, tag: str, payload: Payload) -> None:
        """Send ``payload`` (bytes or numeric array) under ``tag``."""
        kind, meta, data = codec.encode(payload)
        if not tag.startswith(RESERVED_TAG_PREFIX):
            with self._hash_lock:
                self.sent.update(tag, kind, meta, data)
        for tap in self.taps:
            tap("send", self.peer, tag, payload)
        self._transmit(tag, kind, meta, data)

    def recv(self, tag: str, timeout: float | None = None) -> Payload:
        """Wait for the next message under ``tag`` and return it."""
        kind, meta, data = self._receive(tag, self.timeout if timeout is None else timeout)
        payload = codec.decode(kind, meta, data)
        for tap in self.taps:
            tap("recv", self.peer, tag, payload)
        return payload

    def _absorb_received(self, tag: str, kind: int, meta: bytes, data: bytes | memoryview) -> None:
        """Implementations call this in arrival order, so both ends hash the same stream."""
        if not tag.startswith(RESERVED_TAG_PREFIX):
            with self._hash_lock:
                self.received.update(tag, kind, meta, memoryview(data))

    # -- typed helpers -------------------------------------------------------------------

    def send_json(self, tag: str, obj: Any) -> None:
        """Send a small JSON-serialisable object."""
        self.send(tag, codec.dumps(obj))

    def recv_json(self, tag: str, timeout: float | None = None) -> Any:
        """Receive a JSON object sent with :meth:`send_json`."""
        data = self.recv(tag, timeout)
        if not isinstance(data, bytes):
            raise ProtocolError(f"expected a JSON message under tag {tag!r}, got an array")
        return codec.loads(data)

    def recv_bytes(self, tag: str, timeout: float | None = None) -> bytes:
        """Receive a bytes payload; an array here is a ProtocolError."""
        data = self.recv(tag, timeout)
        if not isinstance(data, bytes):
            raise ProtocolError(f"expected bytes under tag {tag!r} from {self.peer}, got an array")
        return data

    def recv_array(
        self,
        tag: str,
        dtype: np.dtype | type | str | None = None,
        shape: Sequence[int | None] | None = None,
        timeout: float | None = None,
    ) -> np.ndarray:
        """Receive an array and check its dtype and shape (``None`` matches any size)."""
        arr = self.recv(tag, timeout)
        if not isinstance(arr, np.ndarray):
            raise ProtocolError(f"expected an array under tag {tag!r} from {self.peer}, got bytes")
        if dtype is not None and arr.dtype != np.dtype(dtype):
            raise ProtocolError(
                f"array under tag {tag!r} from {self.peer} has the wrong dtype",
                expected=str(np.dtype(dtype)),
                actual=str(arr.dtype),
            )
        if shape is not None and (
            len(shape) != arr.ndim
            or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True))
        ):
            raise ProtocolError(
                f"array under tag {tag!r} from {self.peer} has the wrong shape",
                expected=str(tuple(shape)),
                actual=str(arr.shape),
            )
        return arr

    # -- accounting --------------------------------------------------------------------------

    @property
    def bytes_out(self) -> int:
        """Payload bytes sent on this link."""
        return self.sent.nbytes

    @property
    def bytes_in(self) -> int:
        """Payload bytes received on this link."""
        return self.received.nbytes

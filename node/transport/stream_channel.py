"""``GrpcChannel``: the Channel interface over one bidirectional gRPC stream.

One stream carries both directions of a link between two parties of a job.
The dialer's request iterator and the server's response generator both drain
:meth:`GrpcChannel.outbound_frames`; a pump thread per end reads the other
direction with :meth:`GrpcChannel.pump`.

* **Chunking.** A message of any size is cut into :data:`CHUNK_BYTES` pieces,
  so no frame comes near gRPC's message-size limit.
* **Flow control.** ``send`` blocks once :data:`OUTBOUND_QUEUE_FRAMES` frames
  wait to be written; the reader stops reading once
  :data:`INBOUND_BUFFER_BYTES` of unclaimed messages are buffered, and HTTP/2
  flow control then pushes back on the sender. Memory is bounded at both ends.
* **Timeouts, cancellation, vanished peers.** ``recv`` waits at most its
  timeout; a Cancel frame or a local ``cancel`` wakes every waiter with
  :class:`Cancelled`; a broken stream (peer died, connection reset, keepalive
  failure) wakes them with :class:`PeerUnavailable` at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator

import grpc

from node.transport.generated.pcnode.v1 import node_pb2 as pb
from pcnode.errors import Cancelled, ChannelError, ChannelTimeout, PeerUnavailable, ProtocolError
from protocols.channel import DEFAULT_RECV_TIMEOUT, Channel

log = logging.getLogger(__name__)

#: 1 MiB pieces: far below gRPC's 4 MiB default cap, large enough that
#: per-frame overhead is negligible for 300 MB payloads.
CHUNK_BYTES = 1 << 20
#: Frames queued for writing before ``send`` blocks (32 MiB in flight per link).
OUTBOUND_QUEUE_FRAMES = 32
#: Unclaimed received bytes before the reader pauses and lets HTTP/2 push back.
INBOUND_BUFFER_BYTES = 256 << 20
#: Largest single message a peer may announce; bigger is a protocol violation.
MAX_MESSAGE_BYTES = 4 << 30
#: Queued pieces are coalesced into one frame up to this many payload bytes.
BATCH_BYTES = CHUNK_BYTES

_END = None  # sentinel in the outbound queue: half-close the stream


class GrpcChannel(Channel):
    """One end of a job link carried by a gRPC bidirectional stream."""

    def __init__(self, local: str, peer: str, timeout: float = DEFAULT_RECV_TIMEOUT) -> None:
        super().__init__(local, peer, timeout)
        self._out: queue.Queue[pb.Chunk | pb.Cancel | None] = queue.Queue(
            maxsize=OUTBOUND_QUEUE_FRAMES)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._buffers: dict[str, deque[tuple[int, bytes, bytes]]] = defaultdict(deque)
        self._buffered = 0
        self._error: ChannelError | None = None
        self._ended = False
        self.cancel_call: Callable[[], object] | None = None
        self.pump_done = threading.Event()

    # -- outbound ----------------------------------------------------------------------

    def outbound_frames(self) -> Iterator[pb.Frame]:
        """Frames for gRPC to write, ending when the link is closed or fails.

        Whatever pieces are already queued are coalesced into one Batch frame.
        """
        while True:
            item = self._out.get()
            if item is _END:
                return
            if isinstance(item, pb.Cancel):
                yield pb.Frame(cancel=item)
                continue
            batch = [item]
            size = len(item.data)
            ended = False
            while size < BATCH_BYTES:
                try:
                    nxt = self._out.get_nowait()
                except queue.Empty:
                    break
                if nxt is _END:
                    ended = True
                    break
                if isinstance(nxt, pb.Cancel):
                    yield pb.Frame(batch=pb.Batch(chunks=batch))
                    batch, size = [], 0
                    yield pb.Frame(cancel=nxt)
                    continue
                batch.append(nxt)
                size += len(nxt.data)
            if batch:
                yield pb.Frame(batch=pb.Batch(chunks=batch))
            if ended:
                return

    def _put(self, frame: pb.Chunk | pb.Cancel | None, deadline: float) -> None:
        while True:
            if self._error is not None:
                raise _copy(self._error)
            try:
                self._out.put(frame, timeout=0.2)
                return
            except queue.Full:
                if time.monotonic() > deadline:
                    raise ChannelTimeout(
                        f"{self.peer} has not read our messages for {self.timeout:g}s",
                        hint="the peer is stuck or overloaded; check its log",
                        peer=self.peer,
                    ) from None

    def _transmit(self, tag: str, kind: int, meta: bytes, data: memoryview) -> None:
        size = len(data)
        deadline = time.monotonic() + self.timeout
        with self._send_lock:
            if self._ended:
                raise PeerUnavailable(f"link to {self.peer} is closed")
            off = 0
            first = True
            while first or off < size:
                piece = bytes(data[off : off + CHUNK_BYTES])
                off += len(piece)
                chunk = pb.Chunk(data=piece, last=off >= size)
                if first:
                    chunk.tag, chunk.kind, chunk.meta, chunk.size = tag, kind, meta, size
                    first = False
                self._put(chunk, deadline)

    # -- inbound -------------------------------------------------------------------------

    def pump(self, frames: Iterable[pb.Frame]) -> None:
        """Read frames from the peer until the stream ends; run in its own thread."""
        current: list | None = None  # [tag, kind, meta, buffer, filled]
        try:
            for frame in frames:
                which = frame.WhichOneof("body")
                if which == "batch":
                    for chunk in frame.batch.chunks:
                        current = self._absorb_chunk(chunk, current)
                elif which == "cancel":
                    self._fail(Cancelled(f"{self.peer} cancelled the job: {frame.cancel.reason}",
                                         peer=self.peer))
                    return
                else:
                    raise ProtocolError(f"unexpected {which!r} frame from {self.peer}")
            if current is not None:
                raise ProtocolError(f"{self.peer} closed the link in the middle of a message")
            self._fail(PeerUnavailable(f"{self.peer} closed the link", peer=self.peer))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.CANCELLED and self._error is not None:
                return
            self._fail(PeerUnavailable(
                f"link to {self.peer} failed: {getattr(code, 'name', code)}: "
                f"{exc.details() if hasattr(exc, 'details') else exc}",
                hint="the peer process may have stopped; check that it is running",
                peer=self.peer,
            ))
        except ProtocolError as exc:
            log.warning("link %s->%s: %s", self.peer, self.local, exc)
            self._fail(exc)
        finally:
            self.pump_done.set()

    def _absorb_chunk(self, c: pb.Chunk, current: list | None) -> list | None:
        if current is None:
            if c.size > MAX_MESSAGE_BYTES:
                raise ProtocolError(f"{self.peer} announced a {c.size}-byte message",
                                    hint=f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
            current = [c.tag, c.kind, bytes(c.meta), bytearray(c.size), 0]
        buf, filled = current[3], current[4]
        end = filled + len(c.data)
        if end > len(buf):
            raise ProtocolError(f"{self.peer} sent more bytes than it announced")
        buf[filled:end] = c.data
        current[4] = end
        if not c.last:
            return current
        if end != len(buf):
            raise ProtocolError(f"{self.peer} sent fewer bytes than it announced",
                                expected=len(buf), actual=end)
        self._deliver(current[0], current[1], current[2], buf)
        return None

    def _deliver(self, tag: str, kind: int, meta: bytes, data: bytes | bytearray) -> None:
        with self._cond:
            while self._buffered > INBOUND_BUFFER_BYTES and self._error is None:
                self._cond.wait(1.0)
            self._absorb_received(tag, kind, meta, data)
            self._buffers[tag].append((kind, meta, data))
            self._buffered += len(data)
            self._cond.notify_all()

    def _receive(self, tag: str, timeout: float) -> tuple[int, bytes, bytes]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                q = self._buffers.get(tag)
                if q:
                    item = q.popleft()
                    self._buffered -= len(item[2])
                    self._cond.notify_all()
                    return item
                if self._error is not None:
                    raise _copy(self._error)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ChannelTimeout(
                        f"no message {tag!r} from {self.peer} within {timeout:g}s",
                        hint="the peer may be slow or stuck; check its log or raise the timeout",
                        peer=self.peer, tag=tag,
                    )
                self._cond.wait(remaining)

    # -- ending ------------------------------------------------------------------------------

    def _fail(self, error: ChannelError | ProtocolError) -> None:
        with self._cond:
            if self._error is None:
                self._error = error  # type: ignore[assignment]
            self._cond.notify_all()
        self._end_outbound()

    def _end_outbound(self) -> None:
        self._ended = True
        while True:
            try:
                self._out.put_nowait(_END)
                return
            except queue.Full:
                try:
                    self._out.get_nowait()  # the link is dead: drop what was unsent
                except queue.Empty:
                    pass

    def cancel(self, reason: str) -> None:
        """Tell the peer the job is cancelled, then tear the stream down."""
        if self._error is None:
            try:
                self._out.put(pb.Cancel(reason=reason[:500]), timeout=1.0)
            except queue.Full:
                pass
        self._fail(Cancelled(f"job cancelled: {reason}", peer=self.peer))
        if self.cancel_call is not None:
            # Give the Cancel frame a moment to be written before the RPC is torn down.
            threading.Timer(2.0, self.cancel_call).start()

    def close(self) -> None:
        """Half-close after everything queued has been written (clean end of a job)."""
        with self._send_lock:
            if self._ended:
                return
            try:
                self._put(_END, time.monotonic() + self.timeout)
            except ChannelError:
                pass  # the link is already gone; nothing left to flush
            self._ended = True


def _copy(error: ChannelError | ProtocolError) -> ChannelError | ProtocolError:
    """A fresh exception per raise, so tracebacks do not pile up on one object."""
    return type(error)(error.message, hint=error.hint, **error.details)

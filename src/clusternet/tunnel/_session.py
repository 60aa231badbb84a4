"""Many byte streams multiplexed over one websocket, as rancher/remotedialer does.

A :class:`Session` runs on either end of the websocket.  The dialing end calls
:meth:`Session.open_stream`; the other end, given an ``allow`` callback, opens the TCP
connection the Connect frame names and pumps bytes between it and the stream.

Flow control is per stream.  A stream whose unread bytes pass ``high_water`` sends Pause so
the peer stops sending on it, and Resume once its reader brings them under ``low_water``.
Nothing can stop the websocket itself for one slow stream without stalling all others, so
the session keeps reading and frames still in flight when Pause arrives are buffered: the
bound is ``high_water`` plus what the transport holds.  A paused stream's own writes queue
up and :meth:`TunnelStream.drain` blocks, which in turn stops whoever feeds it.

Liveness is the websocket's job: whoever creates it sets aiohttp's ``heartbeat`` (ping, and
close when no pong comes), and that close ends the session and fails all its streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from clusternet.tunnel._wire import (
    Frame,
    FrameError,
    MessageIds,
    MessageType,
    UnknownMessageType,
    connect_payload,
    decode_sync_connections,
    parse_connect,
)

__all__ = [
    "AllowFunc",
    "FlowControl",
    "Session",
    "SessionStats",
    "TunnelStream",
    "allow_all",
    "join_host_port",
]

log = logging.getLogger(__name__)

AllowFunc = Callable[[str, str], bool]
"""``allow(proto, address)``: may the peer open a stream to this address from our side?"""

WebSocket = aiohttp.ClientWebSocketResponse | web.WebSocketResponse

EOF = "EOF"  # an Error frame with this text is a normal close
_NOT_ALLOWED = "connect not allowed"
MAX_FRAME_PAYLOAD = 32 * 1024  # what Go's io.Copy hands to one remotedialer Write
# remotedialer's readBuffer pauses above MaxBuffer (2 MiB) and resumes under MaxBuffer/8.
DEFAULT_HIGH_WATER = 2 * 1024 * 1024
DEFAULT_LOW_WATER = DEFAULT_HIGH_WATER // 8
DEFAULT_WRITE_LIMIT = 64 * 1024
_DIAL_PROTOCOLS = {"tcp", "tcp4", "tcp6"}


def allow_all(proto: str, address: str) -> bool:
    """Upstream's agent lets the hub dial anything reachable from the child cluster."""
    return True


def join_host_port(host: str, port: int) -> str:
    """Go's ``net.JoinHostPort``: IPv6 literals get brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_host_port(address: str) -> tuple[str, int]:
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"address {address!r} has no valid port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif ":" in host:
        raise ValueError(f"IPv6 address {address!r} needs brackets")
    return host, int(port)


@dataclass(frozen=True)
class FlowControl:
    """Per-stream limits.  The defaults are remotedialer's, so both ends behave alike."""

    high_water: int = DEFAULT_HIGH_WATER  # unread bytes above which the peer is paused
    low_water: int = DEFAULT_LOW_WATER  # ... and under which it is resumed
    write_limit: int = DEFAULT_WRITE_LIMIT  # unsent bytes above which drain() blocks

    def __post_init__(self) -> None:
        if not 0 <= self.low_water < self.high_water or self.write_limit < 0:
            raise ValueError("flow control needs 0 <= low_water < high_water, write_limit >= 0")


DEFAULT_FLOW = FlowControl()


@dataclass
class SessionStats:
    """Counters for flow control, kept so tests and metrics can see it work."""

    pauses_sent: int = 0
    resumes_sent: int = 0
    pauses_received: int = 0
    resumes_received: int = 0
    peak_buffered: int = 0  # most unread bytes any one stream held
    peak_pending: int = 0  # most unsent bytes any one stream held


class TunnelStream:
    """One connection through the tunnel, used like an asyncio reader and writer in one.

    :meth:`write` queues bytes that the session sends in frames; :meth:`drain` waits until
    few enough are left (and so blocks while the peer has paused us).  :meth:`close` sends
    the queued bytes, then ``EOF``; :meth:`abort` drops them and sends the reason.  After the
    peer's ``EOF`` :meth:`read` returns the buffered bytes, then ``b""``; after a peer error,
    an abort or the end of the session it raises :class:`ConnectionError` instead.
    """

    def __init__(self, session: Session, connection_id: int, proto: str, address: str) -> None:
        self.connection_id = connection_id
        self.proto = proto
        self.address = address
        self._session = session
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = asyncio.Event()  # no frame of this stream will be sent or received
        self._error: ConnectionError | None = None
        self._closing = False  # close() was called: EOF goes out once the outbox is empty
        self._peer_eof = False
        self._peer_gone = False  # the peer sent Error and forgot this connection id
        self._paused_by_peer = False
        self._pausing_peer = False
        self._scheduled = False  # queued in the session's round robin of senders

    def __repr__(self) -> str:
        return f"<TunnelStream {self.connection_id} {self.proto}/{self.address}>"

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return len(self._inbox)

    @property
    def pending(self) -> int:
        """Bytes written and not sent yet."""
        return len(self._outbox)

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    def at_eof(self) -> bool:
        """True when :meth:`read` would return or raise at once (for connection pools)."""
        return not self._inbox and (self._closed.is_set() or self._peer_eof or self._closing)

    async def read(self, max_bytes: int = 64 * 1024) -> bytes:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        while not self._inbox:
            if self._peer_eof or self._closing:
                return b""
            if self._error is not None:
                raise self._error
            self._readable.clear()
            await self._readable.wait()
        with memoryview(self._inbox) as view:
            data = bytes(view[:max_bytes])
        del self._inbox[:max_bytes]
        if self._pausing_peer and len(self._inbox) <= self._session.flow.low_water:
            self._pausing_peer = False
            self._session._send_control(MessageType.RESUME, self.connection_id)
        return data

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._closing or self._peer_gone:
            raise ConnectionError(f"{self} is closed")
        if not data:
            return
        self._outbox += data
        stats = self._session.stats
        stats.peak_pending = max(stats.peak_pending, len(self._outbox))
        if len(self._outbox) > self._session.flow.write_limit:
            self._writable.clear()
        self._session._schedule(self)

    async def drain(self) -> None:
        await self._writable.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Send what is queued, then ``EOF``; unread input is discarded."""
        if self._closing or self._closed.is_set():
            return
        self._closing = True
        self._inbox.clear()
        self._readable.set()
        if self._peer_gone:
            self._finish(None)
        else:
            self._session._schedule(self)

    def abort(self, reason: str) -> None:
        """Drop queued output and end the stream on both sides with ``reason``."""
        if self._closed.is_set():
            return
        if not self._peer_gone:
            self._session._send_control(MessageType.ERROR, self.connection_id, reason.encode())
        self._finish(ConnectionError(reason))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # Called by the session.

    def _next_frame(self) -> Frame | None:
        """Data to send now, the final EOF, or None when paused or finished."""
        if self._closed.is_set():
            return None
        if self._outbox and not self._paused_by_peer:
            with memoryview(self._outbox) as view:
                chunk = bytes(view[:MAX_FRAME_PAYLOAD])
            del self._outbox[:MAX_FRAME_PAYLOAD]
            if len(self._outbox) <= self._session.flow.write_limit:
                self._writable.set()
            return self._session._frame(MessageType.DATA, self.connection_id, chunk)
        if self._closing and not self._outbox:
            self._finish(None)
            return self._session._frame(MessageType.ERROR, self.connection_id, EOF.encode())
        return None

    def _has_frame(self) -> bool:
        if self._closed.is_set():
            return False
        if self._outbox:
            return not self._paused_by_peer
        return self._closing

    def _on_data(self, data: bytes) -> None:
        if self._closing:
            return  # nobody will read it; the peer learns we stopped from our EOF
        self._inbox += data
        self._readable.set()
        stats = self._session.stats
        stats.peak_buffered = max(stats.peak_buffered, len(self._inbox))
        if not self._pausing_peer and len(self._inbox) > self._session.flow.high_water:
            self._pausing_peer = True
            self._session._send_control(MessageType.PAUSE, self.connection_id)

    def _on_peer_error(self, reason: str) -> None:
        """The peer ended the stream (``EOF`` is a normal close) and forgot its id."""
        self._peer_gone = True
        if reason != EOF:
            self._finish(ConnectionError(reason), keep_input=True)
            return
        self._peer_eof = True
        # The reader gets a clean end; output the peer will never take is an error to the writer.
        lost = ConnectionError(f"{self} was closed by the peer") if self._outbox else None
        self._finish(lost, keep_input=True)

    def _on_pause(self, paused: bool) -> None:
        self._paused_by_peer = paused
        if not paused:
            self._session._schedule(self)

    def _finish(self, error: ConnectionError | None, *, keep_input: bool = False) -> None:
        """No more frames: remember why, wake every waiter, leave the session's table."""
        if error is not None and self._error is None:
            self._error = error
        if not keep_input:
            self._inbox.clear()
        self._outbox.clear()
        self._readable.set()
        self._writable.set()
        self._closed.set()
        self._session._forget(self)


class Session:
    """One end of a tunnel websocket.  :meth:`run` serves it until it closes.

    ``allow`` decides which Connect requests from the peer are dialled; without it every
    one is refused (a hub never dials on behalf of an agent).  ``dial_timeout`` bounds how
    long such a dial may take.
    """

    def __init__(
        self,
        ws: WebSocket,
        *,
        name: str = "",
        allow: AllowFunc | None = None,
        dial_timeout: float = 30.0,
        flow: FlowControl = DEFAULT_FLOW,
    ) -> None:
        self.name = name
        self.flow = flow
        self.stats = SessionStats()
        self._ws = ws
        self._allow = allow
        self._dial_timeout = dial_timeout
        self._ids = MessageIds()
        self._connection_ids = itertools.count(1)
        self._streams: dict[int, TunnelStream] = {}
        self._control: deque[Frame] = deque()  # sent before data: Pause must not queue behind it
        self._ready: deque[TunnelStream] = deque()  # streams with a frame to send, round robin
        self._wakeup = asyncio.Event()
        self._dials: set[asyncio.Task[None]] = set()
        self._close_reason = ""
        self._done = asyncio.Event()
        self._closer: asyncio.Task[bool] | None = None

    def __repr__(self) -> str:
        return f"<Session {self.name or id(self)} streams={len(self._streams)}>"

    @property
    def streams(self) -> list[TunnelStream]:
        return list(self._streams.values())

    @property
    def is_closed(self) -> bool:
        return self._done.is_set()

    @property
    def close_reason(self) -> str:
        return self._close_reason

    async def run(self) -> None:
        """Read and write frames until the websocket closes; then fail every stream."""
        writer = asyncio.create_task(self._write_loop(), name=f"tunnel-writer {self.name}")
        writer.add_done_callback(self._on_writer_done)
        reason = "websocket closed"
        try:
            reason = await self._read_loop()
        finally:
            self._shut_down(reason)
            writer.cancel()
            with contextlib.suppress(Exception):
                await self._ws.close()
            await asyncio.gather(writer, *self._dials, return_exceptions=True)

    async def close(self, reason: str = "session closed") -> None:
        """Close the websocket; :meth:`run` then ends and fails the open streams."""
        self._shut_down(reason)
        await self._ws.close()

    async def wait_closed(self) -> None:
        await self._done.wait()

    def open_stream(self, proto: str, address: str) -> TunnelStream:
        """Ask the peer to connect to ``proto/address``; bytes may be written at once.

        A failed dial on the far side arrives later: :meth:`TunnelStream.read` and
        :meth:`TunnelStream.drain` then raise :class:`ConnectionError` with its reason.
        """
        if self._done.is_set():
            raise ConnectionError(f"tunnel session closed: {self._close_reason}")
        payload = connect_payload(proto, address)
        connection_id = next(self._connection_ids)
        while connection_id in self._streams:  # the peer opened this one (both ends dial)
            connection_id = next(self._connection_ids)
        stream = self._streams[connection_id] = TunnelStream(self, connection_id, proto, address)
        self._send_control(MessageType.CONNECT, connection_id, payload)
        return stream

    # Reading.

    async def _read_loop(self) -> str:
        """Returns why the session ended."""
        while True:
            message = await self._ws.receive()
            if message.type is aiohttp.WSMsgType.BINARY:
                try:
                    self._dispatch(Frame.decode(message.data))
                except UnknownMessageType as exc:
                    log.debug("tunnel %s: ignoring frame: %s", self.name, exc)
                except FrameError as exc:
                    return f"protocol error: {exc}"
            elif message.type is aiohttp.WSMsgType.TEXT:
                return "protocol error: text message on a tunnel websocket"
            else:  # CLOSE, CLOSING, CLOSED or ERROR (a missed heartbeat is one)
                return self._close_reason or _describe_end(message, self._ws)

    def _dispatch(self, frame: Frame) -> None:
        kind = frame.type
        if kind is MessageType.CONNECT:
            self._on_connect(frame)
            return
        if kind is MessageType.SYNC_CONNECTIONS:
            # Sent by newer remotedialer peers to prune stale ids; our streams end explicitly.
            try:
                count = len(decode_sync_connections(frame.payload))
            except FrameError as exc:  # malformed, but it changes nothing for us either way
                log.debug("tunnel %s: ignoring SyncConnections: %s", self.name, exc)
            else:
                log.debug("tunnel %s: ignoring SyncConnections of %d ids", self.name, count)
            return
        if kind in (MessageType.ADD_CLIENT, MessageType.REMOVE_CLIENT):
            log.debug("tunnel %s: ignoring %s (hub peering)", self.name, kind.name)
            return
        stream = self._streams.get(frame.connection_id)
        if stream is None:
            if kind is MessageType.DATA:  # as remotedialer: tell the peer to stop sending
                reason = f"connection not found {self.name}/{frame.connection_id}"
                self._send_control(MessageType.ERROR, frame.connection_id, reason.encode())
            return
        if kind is MessageType.DATA:
            stream._on_data(frame.payload)
        elif kind is MessageType.ERROR:
            stream._on_peer_error(frame.payload.decode("utf-8", "replace"))
        elif kind is MessageType.PAUSE:
            self.stats.pauses_received += 1
            stream._on_pause(True)
        elif kind is MessageType.RESUME:
            self.stats.resumes_received += 1
            stream._on_pause(False)

    def _on_connect(self, frame: Frame) -> None:
        connection_id = frame.connection_id
        if connection_id in self._streams:
            reason = f"connection id {connection_id} is in use"
            self._send_control(MessageType.ERROR, connection_id, reason.encode())
            return
        try:
            proto, address = parse_connect(frame.payload)
            host, port = _split_host_port(address)
        except ValueError as exc:  # FrameError is one
            self._send_control(MessageType.ERROR, connection_id, str(exc).encode())
            return
        try:
            allowed = self._allow is not None and self._allow(proto, address)
        except Exception:
            log.exception("tunnel %s: allow(%r, %r) failed", self.name, proto, address)
            allowed = False
        if not allowed:
            log.info("tunnel %s: refused to connect to %s/%s", self.name, proto, address)
            self._send_control(MessageType.ERROR, connection_id, _NOT_ALLOWED.encode())
            return
        if proto not in _DIAL_PROTOCOLS:
            reason = f"unsupported protocol {proto}"
            self._send_control(MessageType.ERROR, connection_id, reason.encode())
            return
        # Registered before dialling: the peer may send data right behind its Connect.
        stream = self._streams[connection_id] = TunnelStream(self, connection_id, proto, address)
        task = asyncio.create_task(self._serve_connect(stream, host, port))
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)

    async def _serve_connect(self, stream: TunnelStream, host: str, port: int) -> None:
        try:
            async with asyncio.timeout(self._dial_timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            stream.abort(str(exc) or f"dial tcp {stream.address}: timed out")
            return
        try:
            await _pump(stream, reader, writer)
        finally:
            writer.close()

    # Writing.

    def _frame(self, kind: MessageType, connection_id: int, payload: bytes = b"") -> Frame:
        return Frame(self._ids.next(), connection_id, kind, payload)

    def _send_control(self, kind: MessageType, connection_id: int, payload: bytes = b"") -> None:
        if self._done.is_set():
            return
        if kind is MessageType.PAUSE:
            self.stats.pauses_sent += 1
        elif kind is MessageType.RESUME:
            self.stats.resumes_sent += 1
        self._control.append(self._frame(kind, connection_id, payload))
        self._wakeup.set()

    def _schedule(self, stream: TunnelStream) -> None:
        if not stream._scheduled:
            stream._scheduled = True
            self._ready.append(stream)
            self._wakeup.set()

    def _forget(self, stream: TunnelStream) -> None:
        if self._streams.get(stream.connection_id) is stream:
            del self._streams[stream.connection_id]

    def _on_writer_done(self, writer: asyncio.Task[None]) -> None:
        if writer.cancelled() or self._done.is_set():
            return
        # Unblock the reader, which sees the websocket close and ends the session.
        self._shut_down(f"cannot write to websocket: {writer.exception()!r}")
        self._closer = asyncio.create_task(self._ws.close())

    async def _write_loop(self) -> None:
        while True:
            frame = self._next_frame()
            if frame is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._ws.send_bytes(frame.encode())

    def _next_frame(self) -> Frame | None:
        if self._control:
            return self._control.popleft()
        while self._ready:
            stream = self._ready.popleft()
            frame = stream._next_frame()
            if stream._has_frame():
                self._ready.append(stream)
            else:
                stream._scheduled = False
            if frame is not None:
                return frame
        return None

    def _shut_down(self, reason: str) -> None:
        if self._done.is_set():
            return
        self._close_reason = reason
        self._done.set()
        error = ConnectionError(f"tunnel session closed: {reason}")
        for stream in list(self._streams.values()):
            stream._finish(error, keep_input=True)
        self._control.clear()
        self._ready.clear()
        for task in self._dials:
            task.cancel()


def _describe_end(message: aiohttp.WSMessage, ws: WebSocket) -> str:
    if message.type is aiohttp.WSMsgType.ERROR:
        return f"websocket error: {message.data}"
    code = ws.close_code
    extra = f" ({message.extra})" if message.extra else ""
    return f"websocket closed with code {code}{extra}" if code is not None else "websocket closed"


async def _pump(
    stream: TunnelStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Copy both ways until either side ends; like remotedialer, an end closes both ways."""

    async def to_tunnel() -> None:
        while data := await reader.read(MAX_FRAME_PAYLOAD):
            stream.write(data)
            await stream.drain()

    async def from_tunnel() -> None:
        while data := await stream.read(MAX_FRAME_PAYLOAD):
            writer.write(data)
            await writer.drain()

    tasks = [asyncio.create_task(to_tunnel()), asyncio.create_task(from_tunnel())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = [task.exception() for task in done if not task.cancelled()]
    error = next((exc for exc in errors if exc is not None), None)
    if error is not None and not stream.is_closed:
        stream.abort(str(error) or type(error).__name__)
    else:
        stream.close()

"""The message framing of rancher/remotedialer v0.3.0, so Go agents and hubs can talk to ours.

Every binary websocket message is one frame: signed varints (Go ``binary.PutVarint``:
zig-zag, then little-endian base-128) for the message id, the connection id and the message
type, one more varint (a legacy deadline) for Data and Connect, then the payload.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "LEGACY_DEADLINE_MS",
    "MAX_CLIENT_KEY_BYTES",
    "MAX_CONNECT_BYTES",
    "Frame",
    "FrameError",
    "MessageIds",
    "MessageType",
    "UnknownMessageType",
    "connect_payload",
    "decode_sync_connections",
    "decode_varint",
    "encode_varint",
    "parse_connect",
]

# remotedialer still writes a deadline into Data and Connect headers but no longer reads it.
LEGACY_DEADLINE_MS = 15_000
MAX_CONNECT_BYTES = 266  # "<proto>/<address>"
MAX_CLIENT_KEY_BYTES = 100  # AddClient / RemoveClient payload
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_VARINT_BYTES = 10  # 64 bits in 7-bit groups


class MessageType(IntEnum):
    DATA = 1
    CONNECT = 2
    ERROR = 3
    ADD_CLIENT = 4  # hub-to-hub peering
    REMOVE_CLIENT = 5
    PAUSE = 6  # stop sending on this connection (back-pressure)
    RESUME = 7
    SYNC_CONNECTIONS = 8  # newer remotedialer only: v0.3.0 peers do not know it


_WITH_DEADLINE = (MessageType.DATA, MessageType.CONNECT)
_PAYLOAD_LIMITS = {
    MessageType.CONNECT: MAX_CONNECT_BYTES,
    MessageType.ADD_CLIENT: MAX_CLIENT_KEY_BYTES,
    MessageType.REMOVE_CLIENT: MAX_CLIENT_KEY_BYTES,
}


class FrameError(ValueError):
    """A frame that does not follow the format (the peer is broken or not remotedialer)."""


class UnknownMessageType(FrameError):
    """A well-formed header with a type this implementation does not know (a newer peer)."""


def encode_varint(value: int) -> bytes:
    """Go's ``binary.PutVarint`` for an int64."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise FrameError(f"{value} does not fit in a signed 64-bit varint")
    unsigned = (value << 1) ^ (value >> 63)  # zig-zag: small magnitudes, either sign, stay short
    out = bytearray()
    while unsigned >= 0x80:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)
    return bytes(out)


def decode_varint(data: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """Go's ``binary.ReadVarint``: the value at ``offset`` and the offset after it."""
    unsigned = shift = 0
    for index in range(offset, min(len(data), offset + _MAX_VARINT_BYTES)):
        byte = data[index]
        if byte < 0x80:
            if index - offset == _MAX_VARINT_BYTES - 1 and byte > 1:
                break  # a tenth byte may only carry the 64th bit
            unsigned |= byte << shift
            return (unsigned >> 1) ^ -(unsigned & 1), index + 1
        unsigned |= (byte & 0x7F) << shift
        shift += 7
    else:
        if len(data) - offset < _MAX_VARINT_BYTES:
            raise FrameError("frame ends inside a varint")
    raise FrameError("varint overflows a 64-bit integer")


@dataclass(frozen=True, slots=True)
class Frame:
    message_id: int
    connection_id: int
    type: MessageType
    payload: bytes = b""

    def encode(self) -> bytes:
        limit = _PAYLOAD_LIMITS.get(self.type)
        if limit is not None and len(self.payload) > limit:
            raise FrameError(f"{self.type.name} payload is {len(self.payload)} bytes, max {limit}")
        header = (
            encode_varint(self.message_id)
            + encode_varint(self.connection_id)
            + encode_varint(self.type)
        )
        if self.type in _WITH_DEADLINE:
            header += encode_varint(LEGACY_DEADLINE_MS)
        return header + self.payload

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        view = memoryview(data)
        message_id, offset = decode_varint(view)
        connection_id, offset = decode_varint(view, offset)
        raw_type, offset = decode_varint(view, offset)
        try:
            message_type = MessageType(raw_type)
        except ValueError:
            raise UnknownMessageType(f"unknown message type {raw_type}") from None
        if message_type in _WITH_DEADLINE:
            _, offset = decode_varint(view, offset)  # the legacy deadline: ignored
        payload = data[offset:]
        limit = _PAYLOAD_LIMITS.get(message_type)
        if limit is not None and len(payload) > limit:
            raise FrameError(f"{message_type.name} payload is {len(payload)} bytes, max {limit}")
        return cls(message_id, connection_id, message_type, payload)


def connect_payload(proto: str, address: str) -> bytes:
    payload = f"{proto}/{address}".encode()
    if not proto or "/" in proto or not address:
        raise FrameError(f"cannot connect to {proto!r}/{address!r}")
    if len(payload) > MAX_CONNECT_BYTES:
        raise FrameError(f"connect target is {len(payload)} bytes, max {MAX_CONNECT_BYTES}")
    return payload


def parse_connect(payload: bytes) -> tuple[str, str]:
    """``b"tcp/10.0.0.1:443"`` → ``("tcp", "10.0.0.1:443")``."""
    proto, slash, address = payload.decode("utf-8", "replace").partition("/")
    if not slash or not proto or not address:
        raise FrameError(f"connect payload {payload[:40]!r} is not <proto>/<address>")
    return proto, address


def decode_sync_connections(payload: bytes) -> list[int]:
    """The stream ids listed in a SyncConnections payload (little-endian uint64s)."""
    if len(payload) % 8:
        raise FrameError(f"SyncConnections payload of {len(payload)} bytes is not uint64s")
    return [value for (value,) in struct.iter_unpack("<Q", payload)]


class MessageIds:
    """Message ids: a counter from a random start, as remotedialer numbers its messages.

    Receivers never interpret them; the random start only keeps ids of different sessions
    apart in logs.  The start leaves room for 2**62 messages before int64 overflows.
    """

    def __init__(self) -> None:
        self._last = random.getrandbits(62)

    def next(self) -> int:
        self._last += 1
        return self._last

"""The remotedialer v0.3.0 framing, byte for byte."""

from __future__ import annotations

import struct

import pytest

from clusternet.tunnel._wire import (
    LEGACY_DEADLINE_MS,
    MAX_CONNECT_BYTES,
    Frame,
    FrameError,
    MessageIds,
    MessageType,
    UnknownMessageType,
    connect_payload,
    decode_sync_connections,
    decode_varint,
    encode_varint,
    parse_connect,
)

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

# Zig-zag maps 0, -1, 1, -2, ... to 0, 1, 2, 3, ...; then 7 bits per byte, low group first,
# high bit set on every byte but the last.
VARINTS = [
    (0, "00"),
    (1, "02"),
    (-1, "01"),
    (63, "7e"),  # zig-zag 126: the largest one-byte positive value
    (-64, "7f"),  # zig-zag 127: the smallest one-byte negative value
    (64, "8001"),  # zig-zag 128
    (300, "d804"),  # zig-zag 600 = 0b100_1011000
    (-300, "d704"),  # zig-zag 599
    (LEGACY_DEADLINE_MS, "b0ea01"),  # zig-zag 30000
    (INT64_MAX, "fe" + "ff" * 8 + "01"),
    (INT64_MIN, "ff" * 9 + "01"),
]


@pytest.mark.parametrize(("value", "hex_bytes"), VARINTS)
def test_varint_matches_go_putvarint(value: int, hex_bytes: str) -> None:
    encoded = bytes.fromhex(hex_bytes)
    assert encode_varint(value) == encoded
    assert decode_varint(encoded + b"rest") == (value, len(encoded))


def test_varint_decodes_at_an_offset() -> None:
    data = b"\x00\x00" + encode_varint(-300)
    assert decode_varint(data, 2) == (-300, 4)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1])
def test_varint_refuses_values_beyond_int64(value: int) -> None:
    with pytest.raises(FrameError, match="64-bit"):
        encode_varint(value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "ends inside a varint"),
        (b"\x80", "ends inside a varint"),
        (b"\xff" * 9, "ends inside a varint"),
        (b"\xff" * 10, "overflows"),  # ten bytes, all continued
        (b"\xff" * 9 + b"\x02", "overflows"),  # the tenth byte carries a 65th bit
    ],
)
def test_malformed_varints_are_errors(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_varint(data)


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_message_type_round_trips(message_type: MessageType) -> None:
    payload = b"tcp/10.0.0.1:6443" if message_type is MessageType.CONNECT else b"\x00payload"
    frame = Frame(message_id=INT64_MAX - 1, connection_id=-7, type=message_type, payload=payload)
    encoded = frame.encode()
    assert Frame.decode(encoded) == frame
    header = encode_varint(INT64_MAX - 1) + encode_varint(-7) + encode_varint(message_type)
    if message_type in (MessageType.DATA, MessageType.CONNECT):
        header += encode_varint(LEGACY_DEADLINE_MS)
    assert encoded == header + payload


def test_data_frame_bytes() -> None:
    frame = Frame(message_id=1, connection_id=2, type=MessageType.DATA, payload=b"hi")
    assert frame.encode() == bytes.fromhex("02 04 02 b0ea01") + b"hi"


def test_received_deadline_is_ignored() -> None:
    header = encode_varint(5) + encode_varint(9) + encode_varint(MessageType.DATA)
    decoded = Frame.decode(header + encode_varint(-123456) + b"body")
    assert decoded == Frame(5, 9, MessageType.DATA, b"body")


def test_empty_error_payload_is_allowed() -> None:
    assert Frame.decode(Frame(1, 1, MessageType.ERROR).encode()).payload == b""


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode_varint(1),
        encode_varint(1) + encode_varint(2),
        # Data without the legacy deadline.
        encode_varint(1) + encode_varint(2) + encode_varint(MessageType.DATA),
        encode_varint(1) + encode_varint(2) + encode_varint(MessageType.CONNECT) + b"\x80",
    ],
)
def test_truncated_headers_are_errors(data: bytes) -> None:
    with pytest.raises(FrameError, match="ends inside a varint"):
        Frame.decode(data)


def test_unknown_type_is_its_own_error_so_sessions_can_skip_it() -> None:
    data = encode_varint(1) + encode_varint(2) + encode_varint(9) + b"future"
    with pytest.raises(UnknownMessageType, match="unknown message type 9"):
        Frame.decode(data)


def test_connect_payload_limit() -> None:
    address = "a" * (MAX_CONNECT_BYTES - len("tcp/") - len(":1")) + ":1"
    payload = connect_payload("tcp", address)
    assert len(payload) == MAX_CONNECT_BYTES
    assert Frame.decode(Frame(1, 1, MessageType.CONNECT, payload).encode()).payload == payload
    with pytest.raises(FrameError, match="max 266"):
        connect_payload("tcp", "a" + address)
    too_long = Frame(1, 1, MessageType.CONNECT, payload + b"x")
    with pytest.raises(FrameError, match="max 266"):
        too_long.encode()
    header = encode_varint(1) + encode_varint(1) + encode_varint(MessageType.CONNECT)
    with pytest.raises(FrameError, match="max 266"):
        Frame.decode(header + encode_varint(0) + payload + b"x")


@pytest.mark.parametrize("message_type", [MessageType.ADD_CLIENT, MessageType.REMOVE_CLIENT])
def test_client_key_limit(message_type: MessageType) -> None:
    assert Frame(1, 0, message_type, b"k" * 100).encode()
    with pytest.raises(FrameError, match="max 100"):
        Frame(1, 0, message_type, b"k" * 101).encode()


def test_connect_target_parsing() -> None:
    assert parse_connect(b"tcp/[::1]:443") == ("tcp", "[::1]:443")
    for bad in (b"tcp", b"/127.0.0.1:1", b"tcp/"):
        with pytest.raises(FrameError, match="not <proto>/<address>"):
            parse_connect(bad)
    with pytest.raises(FrameError, match="cannot connect"):
        connect_payload("tcp/x", "127.0.0.1:1")


def test_sync_connections_payload() -> None:
    assert decode_sync_connections(struct.pack("<3Q", 1, 2, 1 << 63)) == [1, 2, 1 << 63]
    assert decode_sync_connections(b"") == []
    with pytest.raises(FrameError, match="not uint64s"):
        decode_sync_connections(b"\x01" * 9)


def test_message_ids_count_up_from_a_random_start() -> None:
    ids, other = MessageIds(), MessageIds()
    first = ids.next()
    assert [ids.next(), ids.next()] == [first + 1, first + 2]
    assert 0 < first <= INT64_MAX - (1 << 62)
    assert other.next() != first  # two random 62-bit starts: equal once in 2**62

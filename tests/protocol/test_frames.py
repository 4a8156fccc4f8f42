"""The frame codec, fed byte streams with no sockets: round trips, random splits, junk."""
from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from messenger_protocol import ErrorCode, FrameDecoder, ProtocolError, encode

# msgpack values a frame may carry: maps of strings to nested values, bytes, numbers.
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=50) | st.binary(max_size=200))
values = st.recursive(scalars, lambda children: st.lists(children, max_size=5)
                      | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=20)
messages = st.dictionaries(st.text(max_size=20), values, max_size=8)


@given(messages)
def test_round_trip(message):
    assert FrameDecoder().feed(encode(message)) == [message]


@given(st.lists(messages, min_size=1, max_size=6), st.data())
def test_any_split_gives_the_same_frames(batch, data):
    stream = b"".join(encode(m) for m in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = FrameDecoder()
    out = []
    previous = 0
    for cut in cuts + [len(stream)]:
        out += decoder.feed(stream[previous:cut])
        previous = cut
    assert out == batch
    assert decoder.buffered == 0


def test_one_byte_at_a_time():
    batch = [{"id": 1, "op": "hello", "version": 1}, {"id": 2, "data": b"\x00" * 300}]
    stream = b"".join(encode(m) for m in batch)
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i:i + 1])
    assert out == batch


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_protocol_errors(junk):
    decoder = FrameDecoder(max_frame_size=4096)
    try:
        items = decoder.feed(junk)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.TOO_LARGE and exc.fatal
        return
    for item in items:
        assert isinstance(item, dict) or (isinstance(item, ProtocolError) and item.code is ErrorCode.BAD_REQUEST)
    assert decoder.buffered <= 4 + 4096


def test_oversized_length_fails_before_buffering():
    decoder = FrameDecoder(max_frame_size=1000)
    with pytest.raises(ProtocolError) as info:
        decoder.feed(struct.pack(">I", 1001) + b"x" * 10)
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.fatal


def test_oversized_length_split_over_feeds_keeps_the_frames_before_it():
    decoder = FrameDecoder(max_frame_size=1000)
    good = {"id": 1, "op": "ping"}
    header = struct.pack(">I", 5000)
    assert decoder.feed(encode(good) + header[:2]) == [good]
    with pytest.raises(ProtocolError) as info:
        decoder.feed(header[2:] + b"x" * 10)
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.fatal
    with pytest.raises(ProtocolError):
        decoder.feed(encode(good))      # the stream is lost for good


def test_a_big_frame_in_pieces_is_held_until_whole_and_can_be_handed_on():
    big = {"op": "send", "content": bytes(range(256)) * 400}
    stream = encode(big) + encode({"op": "ping"})
    decoder = FrameDecoder()
    pieces = [stream[i:i + 4096] for i in range(0, len(stream) - 4096, 4096)]
    for piece in pieces:
        assert decoder.feed(piece) == []
    assert decoder.pending() == b"".join(pieces)
    rest = stream[len(decoder.pending()):]
    assert decoder.feed(rest) == [big, {"op": "ping"}]
    assert decoder.buffered == 0


def test_frame_of_exactly_the_limit_is_accepted():
    body = msgpack.packb({"k": b"x" * 50})
    decoder = FrameDecoder(max_frame_size=len(body))
    assert decoder.feed(struct.pack(">I", len(body)) + body) == [{"k": b"x" * 50}]


@pytest.mark.parametrize("body", [
    msgpack.packb([1, 2, 3]),            # not a map
    msgpack.packb("text"),
    b"\xc1",                             # never-used msgpack byte
    msgpack.packb({"a": 1}) + b"\x01",   # trailing data inside the frame
    b"\xa2\xff\xfe",                     # str with invalid UTF-8
    msgpack.packb({1: "int key"}),       # map keys must be strings
    b"",                                 # empty body
])
def test_bad_body_is_reported_and_the_stream_stays_in_sync(body):
    decoder = FrameDecoder()
    good = {"id": 7, "op": "ping"}
    items = decoder.feed(struct.pack(">I", len(body)) + body + encode(good))
    assert len(items) == 2
    assert isinstance(items[0], ProtocolError) and items[0].code is ErrorCode.BAD_REQUEST
    assert items[1] == good


def test_deep_nesting_is_a_bad_request_not_a_crash():
    body = b"\x81\xa1k" + b"\x91" * 100_000 + b"\xc0"
    items = FrameDecoder().feed(struct.pack(">I", len(body)) + body)
    assert isinstance(items[0], ProtocolError)

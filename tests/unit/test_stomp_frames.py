"""STOMP 1.2 framing (herald.delivery.transports.stomp_frames), read from a real asyncio.StreamReader."""

from __future__ import annotations

import asyncio

import pytest

from herald.delivery.transports.stomp_frames import Frame, escape, read_frame, unescape


def _reader(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def test_escape_and_unescape_are_inverse() -> None:
    assert escape("a\\b\rc\nd:e") == "a\\\\b\\rc\\nd\\ce"
    assert unescape("a\\\\b\\rc\\nd\\ce") == "a\\b\rc\nd:e"
    assert unescape("keep\\t as is") == "keep\\t as is"  # an unknown escape is not ours to change


def test_encode_escapes_header_names_and_values() -> None:
    frame = Frame("SEND", {"a:b\\c": "line1\nline2\r:\\"}, b"body")

    assert frame.encode() == b"SEND\na\\cb\\\\c:line1\\nline2\\r\\c\\\\\n\nbody\0"


def test_encode_does_not_escape_connect_headers() -> None:
    frame = Frame("CONNECT", {"host": "/", "passcode": "p:a\\ss"})

    assert frame.encode() == b"CONNECT\nhost:/\npasscode:p:a\\ss\n\n\0"


async def test_read_unescapes_header_names_and_values() -> None:
    reader = _reader(b"MESSAGE\na\\cb\\\\c:line1\\nline2\\r\\c\\\\\nplain:x\n\nhi\0")

    frame = await read_frame(reader)

    assert frame == Frame("MESSAGE", {"a:b\\c": "line1\nline2\r:\\", "plain": "x"}, b"hi")


async def test_read_does_not_unescape_connected_headers() -> None:
    reader = _reader(b"CONNECTED\nversion:1.2\nserver:Rabbit\\c3\\n\n\n\0")

    frame = await read_frame(reader)

    assert frame == Frame("CONNECTED", {"version": "1.2", "server": "Rabbit\\c3\\n"}, b"")


async def test_read_encoded_frame_round_trips() -> None:
    sent = Frame("SEND", {"destination": "/queue/a:b", "note": "x\ny"}, b"payload")

    assert await read_frame(_reader(sent.encode())) == sent


async def test_content_length_body_may_contain_nul() -> None:
    reader = _reader(b"MESSAGE\ncontent-length:5\n\na\0b\0c\0RECEIPT\nreceipt-id:7\n\n\0")

    first = await read_frame(reader)
    second = await read_frame(reader)

    assert first.body == b"a\0b\0c"
    assert first.headers == {"content-length": "5"}
    assert second == Frame("RECEIPT", {"receipt-id": "7"}, b"")


async def test_body_without_content_length_ends_at_nul() -> None:
    reader = _reader(b"MESSAGE\ndestination:/queue/q\n\nhello world\0RECEIPT\nreceipt-id:1\n\n\0")

    first = await read_frame(reader)
    second = await read_frame(reader)

    assert first == Frame("MESSAGE", {"destination": "/queue/q"}, b"hello world")
    assert second == Frame("RECEIPT", {"receipt-id": "1"}, b"")


async def test_heartbeat_eols_before_a_frame_are_skipped() -> None:
    reader = _reader(b"\n\r\n\n\r\nRECEIPT\r\nreceipt-id:42\r\n\r\n\0")

    frame = await read_frame(reader)

    assert frame == Frame("RECEIPT", {"receipt-id": "42"}, b"")


async def test_repeated_header_first_occurrence_wins() -> None:
    reader = _reader(b"MESSAGE\nfoo:first\nfoo:second\nbar:1\n\n\0")

    frame = await read_frame(reader)

    assert frame.headers == {"foo": "first", "bar": "1"}


@pytest.mark.parametrize(
    "data",
    [
        b"",  # closed before anything
        b"\n\n",  # only heart-beats
        b"RECEIPT\nreceipt-id:1",  # inside the headers
        b"MESSAGE\n\nno terminating nul",  # inside a NUL-terminated body
        b"MESSAGE\ncontent-length:10\n\nshort",  # inside a content-length body
        b"MESSAGE\ncontent-length:5\n\nexact",  # before the NUL after a content-length body
    ],
)
async def test_peer_closing_mid_frame_raises_incomplete_read(data: bytes) -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(_reader(data))


async def test_read_waits_for_the_rest_of_a_frame() -> None:
    reader = _reader(b"RECEIPT\nreceipt-", eof=False)
    pending = asyncio.ensure_future(read_frame(reader))
    await asyncio.sleep(0)
    assert not pending.done()

    reader.feed_data(b"id:9\n\n\0")

    assert await asyncio.wait_for(pending, 1) == Frame("RECEIPT", {"receipt-id": "9"}, b"")


def test_describe_error_frame() -> None:
    frame = Frame(
        "ERROR",
        {"message": "not_found", "content-type": "text/plain"},
        b"Exchange 'nowhere'\n  in vhost '/'\tnot found\n",
    )

    assert frame.describe() == "not_found: Exchange 'nowhere' in vhost '/' not found"
    assert Frame("ERROR", {"message": "  access refused "}).describe() == "access refused"
    assert Frame("ERROR", {}, b"only the body").describe() == "only the body"

"""STOMP 1.2 framing: frames, header escaping and reading one frame from a stream; no I/O policy.

What the spec asks and this module does: header names and values are escaped (``\\``, CR, LF and
``:``), except in CONNECT and CONNECTED frames, which STOMP 1.2 leaves unescaped so 1.0 peers keep
working; when a header repeats, the first occurrence wins; a body with ``content-length`` is read
by length and may contain NUL bytes, otherwise it ends at the first NUL; the EOLs a peer sends as
heart-beats between frames are skipped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

_ESCAPES = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"})
_UNESCAPES = {"\\\\": "\\", "\\r": "\r", "\\n": "\n", "\\c": ":"}


def escape(text: str) -> str:
    """A header name or value as STOMP 1.2 sends it: ``\\``, CR, LF and ``:`` escaped."""
    return text.translate(_ESCAPES)


def unescape(text: str) -> str:
    """The inverse of `escape`; an unknown escape sequence is kept as it came."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _UNESCAPES:
            out.append(_UNESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(slots=True)
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self) -> bytes:
        # CONNECT headers are not escaped (STOMP 1.2 keeps 1.0 clients working).
        escaped = self.command != "CONNECT"
        lines = [self.command]
        for name, value in self.headers.items():
            lines.append(f"{escape(name)}:{escape(value)}" if escaped else f"{name}:{value}")
        return "\n".join(lines).encode() + b"\n\n" + self.body + b"\0"

    def describe(self) -> str:
        """An ERROR frame as text: its ``message`` header and body."""
        parts = (self.headers.get("message", ""), self.body.decode(errors="replace"))
        return ": ".join(" ".join(part.split()) for part in parts if part.strip())


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """The next frame, skipping heart-beat EOLs; IncompleteReadError when the peer closed."""
    line = b"\n"
    while line in (b"\n", b"\r\n"):
        line = await reader.readuntil(b"\n")
    command = line.rstrip(b"\r\n").decode()
    headers: dict[str, str] = {}
    while (line := await reader.readuntil(b"\n")) not in (b"\n", b"\r\n"):
        name, _, value = line.rstrip(b"\r\n").decode().partition(":")
        if command != "CONNECTED":
            name, value = unescape(name), unescape(value)
        headers.setdefault(name, value)  # STOMP 1.2: the first occurrence wins
    if (length := headers.get("content-length", "")).isdigit():
        body = await reader.readexactly(int(length))
        await reader.readexactly(1)  # the NUL
    else:
        body = (await reader.readuntil(b"\0"))[:-1]
    return Frame(command, headers, body)

"""What a dump's bytes are, told by their first bytes rather than its name.

``cat world.jsonl.gz | fundflow replay -`` hands the replay gzip with no
name to go by, and a ``.jsonl`` file may be gzip all the same: read as
text, every line would be a ``not_json`` dead letter. :func:`sniff` reads
the first bytes of a stream and gives back a stream that still starts at
the beginning, with the compression those bytes name.

>>> import gzip
>>> stream, compression = sniff(io.BytesIO(gzip.compress(b'{"type":"entity"}')))
>>> compression, gzip.GzipFile(fileobj=stream).read()
('gzip', b'{"type":"entity"}')
>>> stream, compression = sniff(io.BytesIO(b'{"type":"entity"}'))
>>> compression, stream.read()
(None, b'{"type":"entity"}')
"""

from __future__ import annotations

import io
from typing import BinaryIO

#: Leading bytes of compressed formats, and their names. Only gzip is read;
#: the others are named so that a dump in them is refused in one line.
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"PK\x03\x04", "zip"),
)
#: bzip2: "BZh", a block size digit, then a block's magic (or the end of
#: stream's, when empty); "BZh" alone could start a line of text.
_BZIP2_NEXT = (b"1AY&SY", b"\x17rE8P\x90")
HEAD_BYTES = 10  # enough for every magic above and bzip2's


def compression(head: bytes) -> str | None:
    """The compression ``head`` (a stream's first bytes) starts with, or
    ``None`` for bytes that are none of them (text, presumably)."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if (
        len(head) >= 10
        and head.startswith(b"BZh")
        and head[3] in b"123456789"
        and head[4:10] in _BZIP2_NEXT
    ):
        return "bzip2"
    return None


class _Rewound(io.RawIOBase):
    """``rest`` with ``head``, the bytes already read from it, in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        # What is there, up to the size asked: a pipe fed slowly is not
        # waited on. (A BufferedReader's readinto1 into a buffer larger
        # than its own makes a raw read even with bytes at hand, and that
        # read waits; its read1 returns the bytes at hand.)
        self._read = getattr(rest, "read1", None) or rest.read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def sniff(stream: BinaryIO) -> tuple[BinaryIO, str | None]:
    """``(stream from its first byte, compression or None)``: the first
    :data:`HEAD_BYTES` bytes of ``stream`` tell the compression. A seekable
    stream is moved back to where it was and returned; another (a pipe, a
    terminal) is wrapped so that the bytes read come first, and closing the
    wrapper leaves ``stream`` open."""
    if stream.seekable():
        at = stream.tell()
        head = stream.read(HEAD_BYTES)
        stream.seek(at)
        return stream, compression(head)
    head = b""
    while len(head) < HEAD_BYTES:
        more = stream.read(HEAD_BYTES - len(head))
        if not more:
            break
        head += more
    return io.BufferedReader(_Rewound(head, stream), 1 << 16), compression(head)  # type: ignore[return-value]

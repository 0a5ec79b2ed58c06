"""Telling a dump's compression by its first bytes (fundflow.sniff), and
giving the stream back whole: seekable files, pipes, short inputs."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import threading
import zipfile

import pytest

from fundflow.replay import _lines
from fundflow.sniff import HEAD_BYTES, compression, sniff


def _zip(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("world.jsonl", data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (gzip.compress(b'{"type":"entity"}\n'), "gzip"),
        (gzip.compress(b""), "gzip"),
        (bz2.compress(b'{"type":"entity"}\n'), "bzip2"),
        (bz2.compress(b""), "bzip2"),
        (lzma.compress(b'{"type":"entity"}\n'), "xz"),
        (b"\x28\xb5\x2f\xfd\x20\x05\x29\x00\x00hello", "zstd"),
        (b"\x04\x22\x4d\x18\x64\x40\xa7\x05\x00\x00", "lz4"),
        (_zip(b'{"type":"entity"}\n'), "zip"),
        (b'{"type":"entity"}\n', None),
        (b"txn_id,ts,amount\n", None),
        (b"BZh9 is a CSV column,x\n", None),  # bzip2's first three bytes, then text
        (b"\x1f", None),
        (b"", None),
    ],
)
def test_compression_by_the_first_bytes(data: bytes, expected: str | None) -> None:
    assert compression(data[:HEAD_BYTES]) == expected


def test_a_seekable_stream_is_moved_back_to_where_it_was() -> None:
    raw = io.BytesIO(b"skip|" + gzip.compress(b"records\n"))
    raw.read(5)
    stream, packed = sniff(raw)
    assert (stream is raw, packed, raw.tell()) == (True, "gzip", 5)
    assert gzip.GzipFile(fileobj=stream).read() == b"records\n"


@pytest.mark.parametrize("data", [b"", b"{", b"0123456789", b'{"a":1}\n' * 20_000])
def test_a_pipe_is_given_back_whole(data: bytes) -> None:
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
    writer.start()
    with os.fdopen(r, "rb") as raw:
        stream, packed = sniff(raw)
        assert packed is None
        got = stream.read()
        stream.close()
        assert not raw.closed  # the pipe is its owner's to close
    writer.join()
    assert got == data


def test_a_pipe_fed_slowly_gives_its_lines_as_they_come() -> None:
    r, w = os.pipe()
    os.write(w, b'{"first":1}\n{"second":2}\n')  # more than the head, less than a chunk
    got: list[bytes] = []
    with os.fdopen(r, "rb") as raw:
        stream, _ = sniff(raw)
        lines = _lines(stream, 1 << 20)
        # The writer keeps the pipe open: both lines come without waiting for more.
        reader = threading.Thread(target=lambda: got.extend([next(lines), next(lines)]))
        reader.start()
        reader.join(10)
        waited = reader.is_alive()
        os.write(w, b'{"third":3}')
        os.close(w)  # ends the wait, if there is one
        reader.join()
        assert not waited
        assert got == [b'{"first":1}', b'{"second":2}']
        assert list(lines) == [b'{"third":3}']

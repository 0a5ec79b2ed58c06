"""Checkpoints: one partition's engine state plus the input offsets it covers.

A checkpoint is saved in a compacted topic (the worker's state table, one
row per input partition number). Its state is the engine's snapshot
(pickle), zlib-compressed and cut into chunks of at most ``CHUNK_BYTES`` so
every message stays under the broker's default 1 MB limit. Chunks are
written to one of two slots, alternating, and the row's *head* is written
last: a worker that dies in the middle of a save leaves the previous
checkpoint whole (its head still points at the other slot).

Keys: ``"<p>"`` (the head) and ``"<p>/<slot>/<i>"`` (chunks).

>>> import random
>>> state = random.Random(1).randbytes(2_000_000)  # incompressible: 3 chunks
>>> cp = Checkpoint(partition=3, generation=1, offsets={"custody": 10}, ref_offsets={0: 5},
...                 state=state, finished=False)
>>> rows = encode_checkpoint(cp)
>>> len(rows), rows[-1][0]
(4, '3')
>>> decode_checkpoint(3, dict(rows)) == cp
True
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

CHUNK_BYTES = 900 * 1024


@dataclass(frozen=True, slots=True)
class Checkpoint:
    partition: int
    generation: int
    #: input short name ("custody", "clearing", "reports") -> next offset to read
    offsets: dict[str, int]
    #: reference topic partition -> next reference offset whose record the
    #: engine's detectors have not yet seen
    ref_offsets: dict[int, int]
    state: bytes = field(repr=False)
    #: the engine's finish() was called after the last record (a drained worker)
    finished: bool = False


class _Head(msgspec.Struct, frozen=True):
    generation: int
    slot: int
    chunks: int
    size: int
    sha256: str
    offsets: dict[str, int]
    ref_offsets: dict[int, int]
    finished: bool = False


class CheckpointError(Exception):
    """A stored checkpoint is incomplete or corrupt."""


def encode_checkpoint(cp: Checkpoint) -> list[tuple[str, bytes]]:
    """(key, value) rows to write, in order: the chunks, then the head."""
    return encode_compressed(cp, *compress_state(cp.state))


def compress_state(state: bytes) -> tuple[bytes, str]:
    """The stored form of an engine snapshot and its SHA-256 (hex)."""
    blob = zlib.compress(state, 1)
    return blob, hashlib.sha256(blob).hexdigest()


def encode_compressed(cp: Checkpoint, blob: bytes, sha256: str) -> list[tuple[str, bytes]]:
    """The rows of ``cp`` whose state is already compressed (``blob``, from
    :func:`compress_state`; ``cp.state`` is not read)."""
    slot = cp.generation % 2
    pieces = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
    gen = cp.generation.to_bytes(8, "big")
    rows = [(f"{cp.partition}/{slot}/{i}", gen + piece) for i, piece in enumerate(pieces)]
    head = _Head(
        generation=cp.generation,
        slot=slot,
        chunks=len(pieces),
        size=len(blob),
        sha256=sha256,
        offsets=dict(cp.offsets),
        ref_offsets=dict(cp.ref_offsets),
        finished=cp.finished,
    )
    rows.append((str(cp.partition), msgspec.json.encode(head)))
    return rows


def decode_checkpoint(partition: int, rows: Mapping[str, bytes]) -> Checkpoint | None:
    """The checkpoint of ``partition`` from the latest value of every key
    (``None`` when it has none); raises :class:`CheckpointError` when the
    head names chunks that are missing or do not match."""
    head_raw = rows.get(str(partition))
    if head_raw is None:
        return None
    try:
        head = msgspec.json.decode(head_raw, type=_Head)
    except msgspec.DecodeError as e:
        raise CheckpointError(f"partition {partition}: bad checkpoint head: {e}") from None
    gen = head.generation.to_bytes(8, "big")
    parts = []
    for i in range(head.chunks):
        piece = rows.get(f"{partition}/{head.slot}/{i}")
        if piece is None or piece[:8] != gen:
            raise CheckpointError(
                f"partition {partition}: chunk {i} of generation {head.generation} is missing"
            )
        parts.append(piece[8:])
    blob = b"".join(parts)
    if len(blob) != head.size or hashlib.sha256(blob).hexdigest() != head.sha256:
        raise CheckpointError(f"partition {partition}: checkpoint checksum mismatch")
    return Checkpoint(
        partition=partition,
        generation=head.generation,
        offsets=dict(head.offsets),
        ref_offsets=dict(head.ref_offsets),
        state=zlib.decompress(blob),
        finished=head.finished,
    )

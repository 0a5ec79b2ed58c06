"""Checkpoints: one partition's engine state plus the input offsets it covers.

A checkpoint is saved in a compacted topic (the worker's state table, one
row per input partition number). Its state is the engine's snapshot
(data only, in the format of :mod:`fundflow.detectors.snapshots`), zlib-compressed and cut into chunks of at most ``CHUNK_BYTES`` so
every message stays under the broker's default 1 MB limit. Chunks are
written to one of two slots, alternating, and the row's *head* is written
last: a worker that dies in the middle of a save leaves the previous
checkpoint whole (its head still points at the other slot).

A checkpoint is read back from a topic others could write to, so it is
authenticated: a snapshot runs no code when it is read, but a forged one
would still put state of someone else's choosing into the detectors (an
account's history, an alert already said). The head carries an HMAC-SHA256, keyed by the worker's checkpoint key, over the
format version, the partition, the head's fields and the whole compressed
blob. :func:`decode_checkpoint` checks it (``hmac.compare_digest``) before
anything is decompressed or decoded and raises :class:`CheckpointError`
for a checkpoint that fails, as for one of another format version. The key
comes from ``FUNDFLOW_CHECKPOINT_KEY`` or the file named by
``FUNDFLOW_CHECKPOINT_KEY_FILE`` (:func:`load_checkpoint_key`).

Keys: ``"<p>"`` (the head) and ``"<p>/<slot>/<i>"`` (chunks).

>>> import random
>>> key = b"k" * 32
>>> state = random.Random(1).randbytes(2_000_000)  # incompressible: 3 chunks
>>> cp = Checkpoint(partition=3, generation=1, offsets={"custody": 10}, ref_offsets={0: 5},
...                 state=state, finished=False)
>>> rows = encode_checkpoint(cp, key)
>>> len(rows), rows[-1][0]
(4, '3')
>>> decode_checkpoint(3, dict(rows), key) == cp
True
>>> try:
...     decode_checkpoint(3, dict(rows), b"x" * 32)
... except CheckpointError as e:
...     print(e)
partition 3: checkpoint refused: its HMAC does not match (another key, or altered)
"""

from __future__ import annotations

import hashlib
import hmac
import os
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


#: The head's layout, what its HMAC covers and the state's format. 1: an
#: unkeyed SHA-256 (no ``version`` field); 2: an HMAC-SHA256 keyed by the
#: checkpoint key, over a pickle; 3: the same HMAC, over a data-only snapshot
#: (:mod:`fundflow.detectors.snapshots`). A checkpoint of another version is
#: refused and the partition rebuilt from its topics.
FORMAT_VERSION = 3

ENV_KEY = "FUNDFLOW_CHECKPOINT_KEY"
ENV_KEY_FILE = "FUNDFLOW_CHECKPOINT_KEY_FILE"
#: shorter keys are refused: `head -c 32 /dev/urandom | base64` gives 44 characters
MIN_KEY_BYTES = 16


#: what a worker started without a key says (its one line)
NO_KEY = (
    f"no checkpoint key: set {ENV_KEY} or {ENV_KEY_FILE} (a file holding the key, "
    "e.g. made by `head -c 32 /dev/urandom | base64`)"
)


class _Head(msgspec.Struct, frozen=True):
    version: int
    generation: int
    slot: int
    chunks: int
    size: int
    hmac: str
    offsets: dict[str, int]
    ref_offsets: dict[int, int]
    finished: bool = False


class _Version(msgspec.Struct):
    version: int = 1  # format 1 had no version field


class CheckpointError(Exception):
    """A stored checkpoint is refused: incomplete, of another format version,
    or failing its HMAC. The message names the partition and the reason,
    never the key."""


def load_checkpoint_key(env: Mapping[str, str] | None = None) -> bytes:
    """The checkpoint key: ``FUNDFLOW_CHECKPOINT_KEY``, else the content of the
    file named by ``FUNDFLOW_CHECKPOINT_KEY_FILE`` (``env``: the process
    environment when ``None``). Raises ``ValueError`` (one line naming both
    variables or the file, never the key) when neither is set, the file
    cannot be read, or the key is shorter than ``MIN_KEY_BYTES``."""
    from fundflow.redact import read_secret_file

    env = os.environ if env is None else env
    if env.get(ENV_KEY):
        key, source = env[ENV_KEY].encode(), ENV_KEY
    elif env.get(ENV_KEY_FILE):
        key, source = read_secret_file(env[ENV_KEY_FILE], ENV_KEY_FILE).encode(), ENV_KEY_FILE
    else:
        raise ValueError(NO_KEY)
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the checkpoint key from {source} is shorter than {MIN_KEY_BYTES} bytes")
    return key


def encode_checkpoint(cp: Checkpoint, key: bytes) -> list[tuple[str, bytes]]:
    """(key, value) rows to write, in order: the chunks, then the head."""
    blob = compress_state(cp.state)
    return encode_compressed(cp, blob, seal(cp, blob, key))


def compress_state(state: bytes) -> bytes:
    """The stored form of an engine snapshot."""
    return zlib.compress(state, 1)


def seal(cp: Checkpoint, blob: bytes, key: bytes) -> str:
    """The HMAC-SHA256 (hex) of the checkpoint ``cp`` whose compressed state
    is ``blob``: over the format version, the partition, the generation,
    the offsets, ``finished``, the blob's size and the blob itself
    (``cp.state`` is not read)."""
    return _mac(key, cp.partition, _fields(cp, blob), blob)


def _fields(cp: Checkpoint, blob: bytes) -> _Head:
    """The head of ``cp`` without its HMAC."""
    return _Head(
        version=FORMAT_VERSION,
        generation=cp.generation,
        slot=cp.generation % 2,
        chunks=max(1, -(-len(blob) // CHUNK_BYTES)),
        size=len(blob),
        hmac="",
        offsets=dict(cp.offsets),
        ref_offsets=dict(cp.ref_offsets),
        finished=cp.finished,
    )


def _mac(key: bytes, partition: int, head: _Head, blob: bytes) -> str:
    # Canonical bytes of what the head says (all but its hmac, dicts sorted),
    # the partition the head's key names, then the blob.
    covered = [
        head.version, partition, head.generation, head.slot, head.chunks, head.size,
        sorted(head.offsets.items()), sorted(head.ref_offsets.items()), head.finished,
    ]  # fmt: skip
    h = hmac.new(key, b"fundflow checkpoint\0", hashlib.sha256)
    h.update(msgspec.json.encode(covered))
    h.update(b"\0")
    h.update(blob)
    return h.hexdigest()


def encode_compressed(cp: Checkpoint, blob: bytes, mac: str) -> list[tuple[str, bytes]]:
    """The rows of ``cp`` whose state is already compressed (``blob``, from
    :func:`compress_state`, ``mac`` from :func:`seal`; ``cp.state`` is not
    read)."""
    head = msgspec.structs.replace(_fields(cp, blob), hmac=mac)
    pieces = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
    gen = cp.generation.to_bytes(8, "big")
    rows = [(f"{cp.partition}/{head.slot}/{i}", gen + piece) for i, piece in enumerate(pieces)]
    rows.append((str(cp.partition), msgspec.json.encode(head)))
    return rows


def decode_checkpoint(partition: int, rows: Mapping[str, bytes], key: bytes) -> Checkpoint | None:
    """The checkpoint of ``partition`` from the latest value of every key
    (``None`` when it has none). Raises :class:`CheckpointError` when the
    head is of another format version, names chunks that are missing or of
    another size, or its HMAC under ``key`` does not match; all of this is
    checked before the blob is decompressed (and so before the engine
    decodes it)."""
    head_raw = rows.get(str(partition))
    if head_raw is None:
        return None

    def refused(reason: str) -> CheckpointError:
        return CheckpointError(f"partition {partition}: checkpoint refused: {reason}")

    try:
        version = msgspec.json.decode(head_raw, type=_Version).version
    except msgspec.DecodeError as e:
        raise refused(f"bad head: {e}") from None
    if version != FORMAT_VERSION:
        raise refused(f"format version {version}, this worker reads {FORMAT_VERSION}")
    try:
        head = msgspec.json.decode(head_raw, type=_Head)
    except msgspec.DecodeError as e:
        raise refused(f"bad head: {e}") from None
    gen = head.generation.to_bytes(8, "big")
    parts = []
    for i in range(head.chunks):
        piece = rows.get(f"{partition}/{head.slot}/{i}")
        if piece is None or piece[:8] != gen:
            raise refused(f"chunk {i} of generation {head.generation} is missing")
        parts.append(piece[8:])
    blob = b"".join(parts)
    if len(blob) != head.size:
        raise refused(f"its chunks hold {len(blob)} bytes, the head says {head.size}")
    if not hmac.compare_digest(_mac(key, partition, head, blob).encode(), head.hmac.encode()):
        raise refused("its HMAC does not match (another key, or altered)")
    return Checkpoint(
        partition=partition,
        generation=head.generation,
        offsets=dict(head.offsets),
        ref_offsets=dict(head.ref_offsets),
        state=zlib.decompress(blob),
        finished=head.finished,
    )

"""Checkpoints are authenticated (streams/checkpoint.py): what the worker
would decode is refused unless its HMAC, keyed by the worker's checkpoint
key, covers the blob and the head as stored. No broker.

"Before decoding" is shown with a state that is a pickle creating a file
when it is loaded by plain ``pickle.loads``: every refused checkpoint
leaves it absent. Signed with the worker's key, the same state still runs
nothing: a snapshot is data (detectors/snapshots.py), and a pickle is
refused as a snapshot of another format."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import random
import zlib
from pathlib import Path

import msgspec
import pytest

from fundflow.detectors import Engine, load_config
from fundflow.streams.checkpoint import (
    CHUNK_BYTES,
    FORMAT_VERSION,
    MIN_KEY_BYTES,
    NO_KEY,
    Checkpoint,
    CheckpointError,
    compress_state,
    decode_checkpoint,
    encode_checkpoint,
    load_checkpoint_key,
)

KEY = b"the worker's checkpoint key, 32b"
OTHER_KEY = b"someone else's key, long enough!"


class _CreatesFile:
    """Unpickled, it opens ``path`` for writing (so the file appears)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def _evil(path: Path, partition: int = 2, generation: int = 5) -> Checkpoint:
    return Checkpoint(
        partition=partition, generation=generation, offsets={"custody": 10, "clearing": 3},
        ref_offsets={0: 99}, state=pickle.dumps(_CreatesFile(path)), finished=False,
    )  # fmt: skip


def _restore(rows: dict[str, bytes], key: bytes, partition: int = 2) -> None:
    """What the worker does with a partition's rows: decode, then the engine
    unpickles the state."""
    cp = decode_checkpoint(partition, rows, key)
    assert cp is not None
    Engine(load_config()).restore(cp.state)


def _refused(rows: dict[str, bytes], marker: Path, match: str, partition: int = 2) -> None:
    with pytest.raises(CheckpointError, match=match) as caught:
        _restore(rows, KEY, partition)
    assert str(caught.value).startswith(f"partition {partition}: checkpoint refused: ")
    assert KEY.decode() not in str(caught.value)
    assert not marker.exists(), "the forged state was unpickled"


def _head(rows: dict[str, bytes], partition: int = 2) -> dict[str, object]:
    head: dict[str, object] = msgspec.json.decode(rows[str(partition)])
    return head


def test_a_checkpoint_signed_with_the_key_that_names_code_runs_nothing(tmp_path: Path) -> None:
    from fundflow.detectors.snapshots import SnapshotRefused

    marker = tmp_path / "ran"
    rows = dict(encode_checkpoint(_evil(marker), KEY))
    cp = decode_checkpoint(2, rows, KEY)  # the HMAC passes
    with pytest.raises(SnapshotRefused, match=r"^snapshot refused: not a fundflow snapshot of"):
        Engine(load_config()).restore(cp.state)
    assert not marker.exists()
    # The control for the tests below: loaded as a plain pickle, this state
    # does create the file.
    pickle.loads(cp.state)  # noqa: S301 - the point of the control
    assert marker.exists()


def test_round_trip_carries_the_version_and_an_hmac() -> None:
    cp = Checkpoint(2, 7, {"custody": 1}, {0: 4}, b"state" * 1000, finished=True)
    rows = dict(encode_checkpoint(cp, KEY))
    assert decode_checkpoint(2, rows, KEY) == cp
    head = _head(rows)
    assert head["version"] == FORMAT_VERSION == 3
    assert isinstance(head["hmac"], str) and len(head["hmac"]) == 64
    assert "sha256" not in head


def test_a_forged_blob_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    genuine = Checkpoint(2, 5, {"custody": 10}, {0: 99}, b"engine state", finished=False)
    rows = dict(encode_checkpoint(genuine, KEY))
    blob = compress_state(pickle.dumps(_CreatesFile(marker)))
    rows["2/1/0"] = (5).to_bytes(8, "big") + blob  # the chunk swapped for another state
    head = _head(rows)
    head["size"] = len(blob)  # and the head's size made to fit
    rows["2"] = msgspec.json.encode(head)
    _refused(rows, marker, "HMAC does not match")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("offsets", {"custody": 0, "clearing": 3}),
        ("ref_offsets", {"0": 0}),
        ("finished", True),
        ("generation", 4),
    ],
)
def test_a_forged_head_is_refused(tmp_path: Path, field: str, value: object) -> None:
    marker = tmp_path / "ran"
    rows = dict(encode_checkpoint(_evil(marker), KEY))
    if field == "generation":  # its chunks carry the generation: forge them too
        head_row = rows.pop("2")
        rows = {k.replace("2/1/", "2/0/"): (4).to_bytes(8, "big") + v[8:] for k, v in rows.items()}
        rows["2"] = head_row
    head = _head(rows)
    head[field] = value
    if field == "generation":
        head["slot"] = 0
    rows["2"] = msgspec.json.encode(head)
    _refused(rows, marker, "HMAC does not match")


def test_a_checkpoint_moved_to_another_partition_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rows = dict(encode_checkpoint(_evil(marker, partition=2), KEY))
    moved = {"7" + k[1:]: v for k, v in rows.items()}
    _refused(moved, marker, "HMAC does not match", partition=7)


def test_a_checkpoint_signed_with_another_key_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rows = dict(encode_checkpoint(_evil(marker), OTHER_KEY))
    _refused(rows, marker, "HMAC does not match")


def test_a_truncated_chunk_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cp = _evil(marker)
    # Two chunks: the pickle, then bytes it never reads (incompressible).
    big = dataclasses.replace(cp, state=cp.state + random.Random(1).randbytes(CHUNK_BYTES))
    rows = dict(encode_checkpoint(big, KEY))
    assert "2/1/1" in rows
    rows["2/1/1"] = rows["2/1/1"][:-100]
    _refused(rows, marker, "its chunks hold")
    head = _head(rows)  # and with the head's size cut to match
    head["size"] = int(head["size"]) - 100  # type: ignore[call-overload]
    rows["2"] = msgspec.json.encode(head)
    _refused(rows, marker, "HMAC does not match")


def test_a_checkpoint_of_the_old_unkeyed_format_is_refused(tmp_path: Path) -> None:
    # Format 1 as it was written: a SHA-256 of the blob, no version, no key.
    marker = tmp_path / "ran"
    blob = zlib.compress(pickle.dumps(_CreatesFile(marker)), 1)
    head = {
        "generation": 3, "slot": 1, "chunks": 1, "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(), "offsets": {"custody": 10},
        "ref_offsets": {"0": 99}, "finished": False,
    }  # fmt: skip
    rows = {"2/1/0": (3).to_bytes(8, "big") + blob, "2": msgspec.json.encode(head)}
    _refused(rows, marker, "format version 1, this worker reads 3")


def test_a_head_that_is_not_json_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rows = dict(encode_checkpoint(_evil(marker), KEY))
    rows["2"] = b"\x80\x04not a head"
    _refused(rows, marker, "bad head")


# -- the key -------------------------------------------------------------------------


def test_the_key_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load_checkpoint_key({"FUNDFLOW_CHECKPOINT_KEY": KEY.decode()}) == KEY
    (tmp_path / "key").write_text(KEY.decode() + "\n")
    env = {"FUNDFLOW_CHECKPOINT_KEY_FILE": str(tmp_path / "key")}
    assert load_checkpoint_key(env) == KEY
    # The variable wins over the file, as for the other secrets.
    assert load_checkpoint_key({**env, "FUNDFLOW_CHECKPOINT_KEY": OTHER_KEY.decode()}) == OTHER_KEY


def test_no_key_names_both_variables() -> None:
    with pytest.raises(ValueError) as caught:
        load_checkpoint_key({})
    assert str(caught.value) == NO_KEY
    assert "FUNDFLOW_CHECKPOINT_KEY " in NO_KEY and "FUNDFLOW_CHECKPOINT_KEY_FILE" in NO_KEY
    assert "\n" not in NO_KEY


def test_a_short_or_unreadable_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    short = "s" * (MIN_KEY_BYTES - 1)
    with pytest.raises(ValueError, match="shorter than 16 bytes") as caught:
        load_checkpoint_key({"FUNDFLOW_CHECKPOINT_KEY": short})
    assert short not in str(caught.value)
    missing = str(tmp_path / "absent")
    with pytest.raises(ValueError) as caught:
        load_checkpoint_key({"FUNDFLOW_CHECKPOINT_KEY_FILE": missing})
    assert str(caught.value) == (
        f"cannot read the secret file {missing} (FUNDFLOW_CHECKPOINT_KEY_FILE): "
        "No such file or directory"
    )

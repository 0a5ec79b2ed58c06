"""``Engine.process_batch``: a chunk of JSON lines decoded by the compiled
decoder and submitted in one call gives what decoding each line with
``RecordDecoder`` and submitting it gives (the same alerts, dead letters,
sources and counts); and the replay's chunk reader, which hands it the runs
of whole lines, yields every line of the input once, a line over the limit
as a ``too_large`` letter.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import msgspec
import pytest

from fundflow.detectors import Engine, load_config
from fundflow.replay import _chunks, iter_records, replay
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.simulate import write_world

BALANCE = b'{"type":"balance","account_id":"A1","as_of":"2026-03-01","balance":"5.00"}'
CUSTODY = (
    b'{"type":"custody_txn","txn_id":"T1","ts":"2026-03-01T10:00:00+08:00","bank_id":"B",'
    b'"platform_id":"P","debit_account":"D","credit_account":"C","amount":"1.00",'
    b'"purpose":"invest"}'
)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("world")
    write_world(folder, seed=7, noise=0.05, days=10)
    return (folder / "world.jsonl").read_bytes()


def one_by_one(data: bytes, limit: int = 1 << 20) -> tuple[list[bytes], list[bytes], dict]:
    """Every line decoded by ``RecordDecoder`` and submitted alone, then the
    end: the alerts and dead letters (encoded) and the engine's counts."""
    engine = Engine(load_config())
    dec = RecordDecoder(engine.config.engine.zone, max_line_bytes=limit)
    alerts: list[bytes] = []
    letters: list[bytes] = []
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        rec = dec.decode(line)
        if type(rec) is DeadLetter:
            letters.append(msgspec.json.encode(msgspec.structs.replace(rec, source=f"w:{n}")))
            continue
        alerts += [msgspec.json.encode(a) for a in engine.submit(rec)]
        letters += [msgspec.json.encode(d) for d in engine.dead_letters]
        engine.dead_letters.clear()
    alerts += [msgspec.json.encode(a) for a in engine.finish()]
    return alerts, letters, dict(engine.counts)


def in_batches(
    data: bytes, seed: int, limit: int = 1 << 20
) -> tuple[list[bytes], list[bytes], dict]:
    """The same lines handed to ``process_batch`` in runs of 1 to 400
    lines."""
    engine = Engine(load_config())
    rng = random.Random(seed)
    lines = data.split(b"\n")
    alerts: list[bytes] = []
    letters: list[bytes] = []
    at = 0
    while at < len(lines):
        size = rng.randint(1, 400)
        got = engine.process_batch(
            b"\n".join(lines[at : at + size]), source="w", first_line=at + 1, max_line_bytes=limit
        )
        alerts += [msgspec.json.encode(a) for a in got.alerts]
        letters += [msgspec.json.encode(d) for d in got.dead_letters]
        at += size
    alerts += [msgspec.json.encode(a) for a in engine.finish()]
    return alerts, letters, dict(engine.counts)


@pytest.mark.parametrize("seed", [1, 2])
def test_batches_give_what_one_record_at_a_time_gives(noisy: bytes, seed: int) -> None:
    want = one_by_one(noisy)
    got = in_batches(noisy, seed)
    assert got == want
    alerts, letters, counts = want
    # The world's noise is there to be refused: the comparison covers it.
    assert len(alerts) == 209
    assert len(letters) == 589
    assert counts == {"accepted": 38_870, "duplicates": 590, "too_late": 0}


def test_a_line_limit_applies_in_a_batch(noisy: bytes) -> None:
    lines = noisy.split(b"\n")[:3000]
    data = b"\n".join(lines)
    limit = sorted(map(len, lines))[len(lines) // 2]
    assert sum(len(ln) > limit for ln in lines) > 100
    assert in_batches(data, 3, limit) == one_by_one(data, limit)


def test_line_numbers_count_blank_lines_and_kinds_count_records() -> None:
    engine = Engine(load_config())
    chunk = b"\n".join([b"", BALANCE, b"  \r", b"not json", CUSTODY, b'{"type":"x"}'])
    got = engine.process_batch(chunk, source="dump.jsonl", first_line=10)
    assert got.read == 4
    assert got.kinds == {"balance": 1, "custody_txn": 1}
    assert [(d.reason, d.source) for d in got.dead_letters] == [
        ("not_json", "dump.jsonl:13"),
        ("unknown_type", "dump.jsonl:15"),
    ]
    assert got.alerts == []
    # Both wait in the ordering stage until the end.
    assert engine.counts == {"accepted": 0, "duplicates": 0, "too_late": 0}
    engine.finish()
    assert engine.counts == {"accepted": 2, "duplicates": 0, "too_late": 0}
    # Without a source, a dead letter names none.
    again = engine.process_batch(b"not json")
    assert [(d.reason, d.source) for d in again.dead_letters] == [("not_json", "")]


def test_a_kind_names_every_line() -> None:
    engine = Engine(load_config())
    line = BALANCE.replace(b'"type":"balance",', b"")
    got = engine.process_batch(line + b"\n" + line, kind="balance")
    assert got.kinds == {"balance": 2}
    assert got.dead_letters == []


def custody(n: int, day: int) -> bytes:
    return CUSTODY.replace(b'"T1"', b'"T%d"' % n).replace(b"2026-03-01T", b"2026-03-%02dT" % day)


def test_the_engines_own_dead_letters_come_in_order() -> None:
    engine = Engine(load_config())
    # Ten days of one feed, then a record of the first day: behind the
    # 72-hour horizon, refused when it arrives.
    days = [custody(n, n) for n in range(1, 11)]
    chunk = b"\n".join([b"not json", *days, custody(99, 1), b"not json"])
    got = engine.process_batch(chunk, source="d")
    assert [(d.reason, d.source) for d in got.dead_letters] == [
        ("not_json", "d:1"),
        ("too_late", ""),
        ("not_json", "d:13"),
    ]
    assert b'"T99"' in got.dead_letters[1].raw.encode()
    assert engine.counts == {"accepted": 6, "duplicates": 0, "too_late": 1}


# -- the replay's chunk reader ---------------------------------------------------


class Trickle(io.RawIOBase):
    """A stream whose reads give a few bytes at a time (a pipe fed slowly)."""

    def __init__(self, data: bytes, seed: int) -> None:
        self.data = data
        self.at = 0
        self.rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        n = min(size, self.rng.choice([1, 2, 7, 50, 300, 5000]))
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        return out


@pytest.mark.parametrize("seed", range(6))
def test_the_chunk_reader_yields_every_line_once(seed: int) -> None:
    rng = random.Random(seed)
    lines = [
        rng.choice([b"", b" ", b"\r", b"x" * rng.randint(1, 40), b"y" * rng.randint(41, 400)])
        for _ in range(2000)
    ]
    data = b"\n".join(lines) + rng.choice([b"", b"\n"])
    limit = 40
    want = data.split(b"\n")
    if want[-1] == b"":
        want.pop()
    i = 0  # lines met so far
    for run, n in _chunks(Trickle(data, seed), limit):  # type: ignore[arg-type]
        if type(run) is bytes:
            parts = run.split(b"\n")
            assert len(parts) == n
            assert all(len(part) <= limit for part in parts)
            assert parts == want[i : i + n]
        else:
            # An overlong line: its size, and its first bytes, as many as
            # were read when it passed the limit.
            assert n == 1
            line = want[i]
            assert len(line) > limit
            assert run.size == len(line)  # type: ignore[union-attr]
            assert line.startswith(run.head)  # type: ignore[union-attr]
            assert len(run.head) > limit  # type: ignore[union-attr]
        i += n
    assert i == len(want)


def test_an_overlong_line_keeps_its_first_64_kib() -> None:
    big = b"z" * 200_000
    runs = list(_chunks(io.BytesIO(big + b"\n" + BALANCE), 1000))
    assert [(type(r).__name__, n) for r, n in runs] == [("_Overlong", 1), ("bytes", 1)]
    assert runs[0][0].head == big[:65536]  # type: ignore[union-attr]
    assert runs[0][0].size == 200_000  # type: ignore[union-attr]


def test_replay_gives_what_the_record_by_record_path_gives(noisy: bytes, tmp_path: Path) -> None:
    """``replay`` (runs of lines through ``process_batch``) against
    ``iter_records`` (``RecordDecoder`` line by line) submitted one by one,
    on a noisy world with blank and overlong lines put in."""
    lines = noisy.split(b"\n")[:6000]
    rng = random.Random(5)
    for _ in range(40):
        lines.insert(rng.randrange(len(lines)), rng.choice([b"", b"   ", b"q" * 300_000]))
    dump = tmp_path / "d.jsonl"
    dump.write_bytes(b"\n".join(lines))
    limit = 100_000
    config = load_config()

    alerts, letters = io.BytesIO(), io.BytesIO()
    summary = replay(
        [str(dump)], config=config, alerts_out=alerts, deadletter_out=letters, max_line_bytes=limit
    )

    engine = Engine(config)
    want_alerts: list[bytes] = []
    want_letters: list[bytes] = []
    read = 0
    for rec, _ in iter_records([str(dump)], RecordDecoder(config.engine.zone, limit)):
        read += 1
        if type(rec) is DeadLetter:
            want_letters.append(msgspec.json.encode(rec))
            continue
        want_alerts += [msgspec.json.encode(a) for a in engine.submit(rec)]
        want_letters += [msgspec.json.encode(d) for d in engine.dead_letters]
        engine.dead_letters.clear()
    want_alerts += [msgspec.json.encode(a) for a in engine.finish()]

    assert alerts.getvalue().splitlines() == want_alerts
    assert letters.getvalue().splitlines() == want_letters
    assert summary.read == read
    assert summary.accepted == engine.counts["accepted"]
    assert summary.duplicates == engine.counts["duplicates"]
    assert sum(b'"too_large"' in ln for ln in want_letters) == 11

"""One rule owns a record: the producer's key, the engine's feed and the
partition whose engine keeps the subject's alerts agree over a whole world.

The producer (``fundflow replay --to-kafka``) keys every record by
``Reference.key_of``; the engine orders and deduplicates a transaction by
``feed_key`` of its flow; the daemon keeps an alert only on the partition
Kafka's default partitioner gives its subject (``partition_for``). Here a
simulated world is keyed by the producer itself (a recording producer in
Kafka's place), split the way Kafka splits it into 1, 4 and 7 partitions,
each partition run by its own engine that sees every reference record, and
the alerts each engine owns put together: they must be the single engine's,
byte for byte, final revisions included, when every engine is finished at
the stream's end (``Engine.finish(end)``, as the draining worker finishes
the partitions it holds).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fundflow.detectors import Engine, load_config
from fundflow.detectors.reference import feed_key
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.records import Account, ClearingTxn, CustodyTxn, Entity, Loan, Product
from fundflow.simulate import write_world
from fundflow.streams.producer import DumpProducer
from fundflow.streams.settings import KafkaSettings
from fundflow.streams.topics import partition_for

REFERENCE = (Entity, Account, Product, Loan)


class Recording:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None, **_: object) -> None:
        self.sent.append((topic, value, key))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[object, str | None]]:
    folder: Path = tmp_path_factory.mktemp("world")
    write_world(folder, seed=1, days=30, noise=0)
    recording = Recording()
    DumpProducer(KafkaSettings(), producer=recording).send_dumps([str(folder / "world.jsonl")])
    dec = RecordDecoder()
    out = [(dec.decode(value), key.decode() if key else None) for _, value, key in recording.sent]
    assert not [r for r, _ in out if type(r) is DeadLetter]
    return out


def _alerts(engine: Engine, records: list, keep, end: int) -> list[bytes]:
    got = []
    for rec in records:
        got.extend(engine.submit(rec, "in"))
    got.extend(engine.finish(end))
    return [msgspec.json.encode(a) for a in got if keep(a)]


def test_the_producers_key_is_the_engines_feed(keyed: list) -> None:
    engine = Engine(load_config())
    checked = 0
    for rec, key in keyed:
        t = type(rec)
        if t in REFERENCE:
            engine.process(rec)
        elif t is CustodyTxn or t is ClearingTxn:
            assert feed_key(engine.ref.flow(rec)) == key, rec
            checked += 1
        else:
            assert engine.ref.feed_of(rec) == key, rec
    assert checked == 67_696  # every transaction of the world


@pytest.mark.parametrize("partitions", [4, 7])
def test_partitioned_engines_give_the_single_engines_alerts(keyed: list, partitions: int) -> None:
    reference = [r for r, _ in keyed if type(r) in REFERENCE]
    events = [(r, k) for r, k in keyed if type(r) not in REFERENCE]
    # The stream's end (its last transaction), which every partition's engine is finished at.
    end = max(r.ts for r, _ in events if type(r) in (CustodyTxn, ClearingTxn))
    whole = Engine(load_config())
    single = _alerts(whole, reference + [r for r, _ in events], lambda a: True, end)
    assert whole.now == end
    assert len(single) > 20
    together = []
    for p in range(partitions):
        mine = [r for r, k in events if partition_for(k, partitions) == p]
        together += _alerts(
            Engine(load_config()),
            reference + mine,
            lambda a, p=p: partition_for(a.subject_id, partitions) == p,
            end,
        )
    assert sorted(together) == sorted(single)

"""Findings do not depend on how different subjects' records interleave.

A partitioned daemon sees each subject's records in order, but the order
between subjects (topics, partitions, workers) is arbitrary. Detectors keep a
clock per subject, so any interleaving that keeps each subject's own order
must give exactly the alerts of the dump's order.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from fundflow.detectors import Engine, load_config
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.records import (
    Account,
    Balance,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    ReserveReport,
)
from fundflow.simulate import write_world


def _subject(rec, accounts: dict[str, Account]) -> str:
    """The partition key a Kafka producer gives the record (streams keying)."""
    t = type(rec)
    if t is CustodyTxn:
        return "custody:" + rec.platform_id
    if t is ClearingTxn:
        for acc_id in (rec.payer_account, rec.payee_account):
            acc = accounts.get(acc_id)
            if acc is not None and acc.role == "client_reserve":
                return "inst:" + acc.owner_id
        return "inst:" + rec.initiator_id
    if t is ReserveReport:
        return "inst:" + rec.institution_id
    if t is Balance:
        acc = accounts.get(rec.account_id)
        return "inst:" + (acc.owner_id if acc is not None else rec.account_id)
    raise AssertionError(t)


def _run(records: list) -> list[bytes]:
    eng = Engine(load_config())
    out = []
    for rec in records:
        out.extend(eng.process(rec))
    out.extend(eng.finish())
    return sorted(msgspec.json.encode(a) for a in out)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    folder: Path = tmp_path_factory.mktemp("world")
    write_world(folder, seed=4, days=12, noise=0)
    dec = RecordDecoder()
    records = [dec.decode(line) for line in (folder / "world.jsonl").read_bytes().splitlines()]
    assert not [r for r in records if type(r) is DeadLetter]
    reference = [r for r in records if type(r) in (Entity, Account, Product, Loan)]
    events = [r for r in records if type(r) not in (Entity, Account, Product, Loan)]
    return reference, events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_interleaving_of_subjects_gives_the_same_alerts(
    world: tuple[list, list], seed: int
) -> None:
    reference, events = world
    accounts = {r.account_id: r for r in reference if type(r) is Account}
    expected = _run(reference + events)
    assert len(expected) > 10  # the world does alert: the comparison is not vacuous
    queues: dict[str, list] = {}
    for rec in events:
        queues.setdefault(_subject(rec, accounts), []).append(rec)
    rng = random.Random(seed)
    keys = sorted(queues)
    positions = dict.fromkeys(keys, 0)
    shuffled = []
    while keys:
        key = rng.choice(keys)
        shuffled.append(queues[key][positions[key]])
        positions[key] += 1
        if positions[key] == len(queues[key]):
            keys.remove(key)
    assert shuffled != events
    assert _run(reference + shuffled) == expected

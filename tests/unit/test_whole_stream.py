"""The whole-stream worker without a broker (streams/lifecycle.py
``_choose_detectors``, streams/partitions.py in ``whole`` mode): which
detectors each kind of worker runs on topics of one and of several
partitions, its one state over every input partition, the names of its
inputs in offsets, merge and dead letters, and the alerts it keeps (all of
them: no other engine runs its detectors). The Kafka runs of the same are
tests/integration/test_daemon.py::test_scale_out_two_workers,
tests/integration/test_live.py and tests/integration/test_typologies_kafka.py."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import msgspec
import pytest
from faust.types import TP
from ledger import account, at, clearing, custody, entity, loan

from fundflow.detectors import load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.schemas.decode import DeadLetter
from fundflow.streams import engines
from fundflow.streams.checkpoint import Checkpoint, encode_checkpoint
from fundflow.streams.merge import whole_inputs
from fundflow.streams.settings import KafkaSettings
from fundflow.streams.worker import Worker, WorkerError

KEY = b"the worker's checkpoint key, 32b"
PARTITIONED = [
    "fund_pool", "reserve_misuse", "maturity_mismatch", "self_financing", "guaranteed_return",
    "excessive_return", "cross_bank_clearing", "unlicensed_business", "private_product_split",
]  # fmt: skip
TYPOLOGIES = [
    "fan_in", "fan_out", "cycle", "gather_scatter", "scatter_gather", "split_payments",
    "off_profile", "bipartite", "stack", "peel_chain",
]  # fmt: skip


def _config(detectors: str) -> object:
    return load_config(overrides={"engine": {"detectors": msgspec.json.decode(detectors)}})


def _worker(whole: bool, config: object = None, partitions: int = 4) -> Worker:
    worker = Worker(
        KafkaSettings(), config or load_config(), checkpoint_key=KEY, whole_stream=whole
    )
    worker.table = SimpleNamespace(data={})
    worker._choose_detectors(partitions)
    worker.n_partitions = partitions
    return worker


def test_on_one_partition_a_worker_runs_every_detector() -> None:
    w = _worker(False, partitions=1)
    assert w.detectors is None
    assert [d.name for d in w._state(0).engine.detectors] == [
        *PARTITIONED[:-1],
        "down_payment_loan",
        PARTITIONED[-1],
    ]


def test_on_several_partitions_the_whole_stream_detectors_move_to_the_whole_stream_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    w = _worker(False, _config('["default", "typologies"]'))
    assert w.detectors == PARTITIONED
    assert w.health()["whole_stream_detectors_elsewhere"] == ["down_payment_loan", *TYPOLOGIES]
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name == "fundflow.worker" and r.levelno == logging.WARNING
    ] == [
        f"down_payment_loan, {', '.join(TYPOLOGIES)} read the whole stream: on topics of 4 "
        "partitions they run in `fundflow worker --whole-stream`, not here"
    ]
    h = _worker(True, _config('["default", "typologies"]'))
    assert h.detectors == ["down_payment_loan", *TYPOLOGIES]
    assert [d.name for d in h._state(0).engine.detectors] == h.detectors
    assert (h.names.group, h.names.checkpoints) == (
        "fundflow.worker-whole",
        "fundflow.checkpoints-whole",
    )


@pytest.mark.parametrize(
    ("whole", "detectors", "partitions", "message"),
    [
        (True, '["default"]', 1, "--whole-stream is for input topics of more than one partition"),
        (True, '["fund_pool", "reserve_misuse"]', 4, "none of [engine] detectors needs the whole"),
        (False, '["typologies"]', 2, "on input topics of 2 partitions they run in `fundflow"),
        (False, '["down_payment_loan"]', 3, "down_payment_loan read the whole stream: on input"),
    ],
)
def test_a_worker_with_nothing_to_run_refuses_to_start(
    whole: bool, detectors: str, partitions: int, message: str
) -> None:
    with pytest.raises(WorkerError) as e:
        _worker(whole, _config(detectors), partitions)
    assert message in str(e.value)


def test_one_state_reads_every_partition_under_names_of_its_own() -> None:
    h = _worker(True, partitions=3)
    assert {h._slot(p) for p in range(3)} == {0}
    assert h._key(TP("fundflow.clearing", 2)) == "clearing/2"
    state = engines.new_engine(h.config, h.ref, h.detectors).snapshot()
    offsets = {"custody/0": 4, "clearing/2": 9}
    cp = Checkpoint(0, 2, offsets, {}, state, finished=False)
    h.table.data = {k.encode(): v for k, v in encode_checkpoint(cp, KEY)}
    st = h._state(0)
    assert (st.offsets, st.merge.order) == (offsets, whole_inputs(3))
    assert [(tp.topic, tp.partition, key) for tp, key in st.tps][:4] == [
        ("fundflow.custody", 0, "custody/0"),
        ("fundflow.custody", 1, "custody/1"),
        ("fundflow.custody", 2, "custody/2"),
        ("fundflow.clearing", 0, "clearing/0"),
    ]
    assert st.sources["reports/1"] == ("reports", "fundflow.reports/1")
    assert h._consumed(TP("fundflow.clearing", 2), st) == 9
    # Not every partition assigned: nothing is held.
    h.on_assigned(
        [TP(f"fundflow.{s}", p) for s in ("custody", "clearing", "reports") for p in (0, 1)]
    )
    assert h.parts == {} and h._assigned == set()
    assert h.health()["holds_every_partition"] is False
    # Every partition number, but not of every topic: clearing/1 is another member's.
    h.on_assigned(
        [
            TP(f"fundflow.{s}", p)
            for s in ("custody", "clearing", "reports")
            for p in range(3)
            if (s, p) != ("clearing", 1)
        ]
    )
    assert h._assigned == set()
    assert h.health()["holds_every_partition"] is False
    h.on_assigned(
        [TP(f"fundflow.{s}", p) for s in ("custody", "clearing", "reports") for p in range(3)]
    )
    assert h._assigned == {0}
    assert h.health()["holds_every_partition"] is True


def test_it_keeps_every_alert_and_names_each_records_partition() -> None:
    """A borrower's loan paid on through a relative to a developer, the
    payments on partitions other than the platform's: the whole-stream
    worker's one engine follows the trail and keeps the alert."""
    h = _worker(True, partitions=4)
    sent: list[dict[str, object]] = []
    h.alerts_topic = SimpleNamespace(send_soon=lambda **m: sent.append(m))
    for rec in (
        entity("PD", "p2p_platform", licenses=("p2p_registered", "lending")),
        entity("DEV", "real_estate"),
        entity("WR", "person"),
        account("DL1", "UD1", "lender_sub", bank="BK1", platform="PD"),
        account("DB2", "WD2", "borrower_sub", bank="BK1", platform="PD"),
        account("WD2P", "WD2", "personal", bank="BKE"),
        account("WRP", "WR", "personal", bank="BKR"),
        account("DEVA", "DEV", "corporate", bank="BKD"),
        loan("LN-D2", 180, "500000", borrower="DB2", platform="PD", issued_at=at(7, 9)),
    ):
        h.ref.add(rec)
    st = h._state(0)
    records = [
        ("custody/1", 0, custody("E1", at(7, 10), "DL1", "DB2", "500000", "invest",
                                 platform="PD", loan="LN-D2")),
        ("custody/1", 1, custody("E2", at(8, 9), "DB2", "WD2P", "500000", "withdraw",
                                 platform="PD")),
        ("clearing/3", 0, clearing("E3", at(8, 15), "WD2P", "WRP", "450000", initiator="BKE")),
        ("clearing/0", 5, DeadLetter(reason="not_json", detail="x", raw="{")),
        ("clearing/2", 0, clearing("E4", at(9, 11), "WRP", "DEVA", "420000", initiator="BKR")),
    ]  # fmt: skip
    h._process(st, iter((key, off, rec, -1) for key, off, rec in records))
    h._emit_released(st, st.engine.release())
    assert st.offsets == {"custody/1": 2, "clearing/3": 1, "clearing/0": 6, "clearing/2": 1}
    ((_, letter),) = h._early_dead
    assert b'"source":"fundflow.clearing/0@5"' in letter
    alerts = [msgspec.json.decode(m["value"]) for m in sent]
    assert [(a["alert_id"], a["revision"], a["amount"]) for a in alerts] == [
        (make_alert_id("down_payment_loan", "PD", "loan_to_real_estate", "LN-D2"), 1, "420000.00")
    ]
    assert alerts[0]["evidence"]["trail_txn_ids"] == ["E1", "E2", "E3", "E4"]

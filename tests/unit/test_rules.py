"""A rule of the operator's own (docs/rules.md), through the worked example
examples/rules/night_transfers.py: named ``module:Class`` in ``[engine]
detectors``, its section declared beside it with its defaults, run by the
engine and the replay beside the built-in detectors; each side of its
threshold pinned; what is wrong with a rule's name or module is one line."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner
from ledger import account, at, clearing, entity

from fundflow.cli import main
from fundflow.detectors import Engine, load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.detectors.engine import partitioned, whole_stream
from fundflow.schemas.decode import encode_record

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "rules"
RULE = "night_transfers:NightTransfers"


@pytest.fixture(autouse=True)
def _on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def _config(**night: object):
    over: dict = {"engine": {"detectors": ["default", RULE]}}
    if night:
        over["night_transfers"] = night
    return load_config(overrides=over)


SETUP = [
    entity("W", "person"),
    entity("SHOP"),
    account("WA", "W", "personal", bank="BK1"),
    account("SA", "SHOP", "corporate", bank="BK1"),
]


def _pay(txn: str, ts: int, amount: str):
    return clearing(txn, ts, "WA", "SA", amount, initiator="BK1")


def _alerts(config, records) -> list:
    engine = Engine(config)
    out = []
    for r in [*SETUP, *records]:
        out += engine.submit(r, "")
    return out + engine.finish()


def test_its_section_and_defaults_are_declared_beside_it() -> None:
    cfg = _config()
    rule = cfg.rules["night_transfers"]
    assert (rule.min_total, rule.night_ends_hour) == (10_000_000, 5)
    assert _config(min_total="200000").rules["night_transfers"].min_total == 20_000_000
    with pytest.raises(
        ValueError, match=r"^night_transfers\.night_ends_hour must be <= 12, got 13"
    ):
        _config(night_ends_hour=13)
    with pytest.raises(ValueError, match=r"^overrides: unknown setting night_transfers\.hours"):
        _config(hours=3)
    # Not named in [engine] detectors, its section is unknown.
    with pytest.raises(ValueError, match=r"unknown section \[night_transfers\]"):
        load_config(overrides={"night_transfers": {"min_total": "1"}})
    names = ["default", RULE]
    assert "night_transfers" in partitioned(names) and "night_transfers" not in whole_stream(names)


def test_night_payments_of_one_owner_reaching_the_total_are_an_alert() -> None:
    records = [
        _pay("N1", at(1, 1), "60000"),
        _pay("D1", at(1, 14), "500000"),  # by day: not counted
        _pay("N2", at(1, 3, 30), "40000"),  # 100,000 yuan: the threshold
        _pay("N3", at(1, 4, 59), "10000"),  # grows the same night: settled at its end
        _pay("X1", at(2, 10), "1"),  # the owner's clock passes the night's day
    ]
    alerts = [a for a in _alerts(_config(), records) if a.detector == "night_transfers"]
    assert [(a.revision, a.amount, a.subject_id) for a in alerts] == [
        (1, "100000.00", "W"),
        (2, "110000.00", "W"),
    ]
    first, final = alerts
    assert first.alert_id == final.alert_id
    assert final.evidence["sample_txn_ids"] == ["N1", "N2", "N3"]
    assert final.evidence["thresholds"] == {"min_total": "100000", "night_ends_hour": 5}
    assert final.alert_id == make_alert_id("night_transfers", "W", first_day_end(final))


def first_day_end(alert) -> int:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    from fundflow.detectors.alerting import local_day_end  # noqa: PLC0415

    return local_day_end(at(1, 1), ZoneInfo("Asia/Shanghai")) - 1


@pytest.mark.parametrize(("amount", "alerts"), [("99999.99", 0), ("100000.00", 1)])
def test_each_side_of_the_total(amount: str, alerts: int) -> None:
    got = _alerts(_config(), [_pay("N1", at(1, 2), amount)])
    assert len([a for a in got if a.detector == "night_transfers"]) == alerts


@pytest.mark.parametrize(("hour", "alerts"), [(4, 1), (5, 0)])
def test_each_side_of_the_nights_end(hour: int, alerts: int) -> None:
    got = _alerts(_config(), [_pay("N1", at(1, hour, 59), "150000")])
    assert len([a for a in got if a.detector == "night_transfers"]) == alerts


def test_the_replay_runs_it_beside_the_built_in_detectors(tmp_path: Path) -> None:
    dump = tmp_path / "night.jsonl"
    lines = [*SETUP, _pay("N1", at(1, 1), "120000"), _pay("X1", at(2, 10), "1")]
    dump.write_bytes(b"".join(msgspec.json.encode(encode_record(r)) + b"\n" for r in lines))
    (tmp_path / "night.toml").write_text(f'[engine]\ndetectors = ["default", "{RULE}"]\n')
    out = tmp_path / "alerts.jsonl"
    result = CliRunner().invoke(
        main,
        ["replay", str(dump), "--config", str(tmp_path / "night.toml"), "--no-db",
         "--alerts-out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    got = [msgspec.json.decode(line) for line in out.read_bytes().splitlines()]
    assert [(a["detector"], a["subject_id"], a["amount"]) for a in got] == [
        ("night_transfers", "W", "120000.00")
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("night_transfers", "unknown detector(s): night_transfers"),
        ("no_such_module:Rule", "cannot import no_such_module: ModuleNotFoundError"),
        ("night_transfers:Missing", "is not a Detector subclass"),
        ("night_transfers:NightTransfersConfig", "is not a Detector subclass"),
        ("night_transfers:", "a rule is named module:Class"),
        (
            "fundflow.detectors.fund_pool:FundPool",
            "'fund_pool' is a built-in detector's or section's name",
        ),
    ],
)
def test_what_is_wrong_with_a_rule_is_one_line(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as e:
        load_config(overrides={"engine": {"detectors": ["default", entry]}})
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_on_kafka_a_night_payment_is_copied_to_its_payers_partition() -> None:
    engine = Engine(_config())
    for r in SETUP:
        engine.submit(r, "")
    # The payment's feed is its initiator, BK1; the owner W gets a copy by night only.
    assert engine.subjects_of(_pay("N1", at(1, 2), "10")) == ("BK1", "W")
    assert engine.subjects_of(_pay("D1", at(1, 12), "10")) == ("BK1",)


def test_a_rule_runs_only_where_the_configuration_names_it(tmp_path: Path) -> None:
    _config()  # loads the rule: its name is known to the process from now on
    with pytest.raises(ValueError, match=r"^rule night_transfers is not named in \[engine\]"):
        Engine(load_config(), ["default", "night_transfers"])
    (tmp_path / "x.jsonl").write_text("")
    result = CliRunner().invoke(
        main, ["replay", str(tmp_path / "x.jsonl"), "--no-db", "--detectors", f"default,{RULE}"]
    )
    assert result.exit_code == 2
    assert "--detectors: a rule of your own (module:Class) is named in [engine]" in result.output


@pytest.mark.parametrize("name", ["engine", "alerts", "kafka", "webhooks", "typologies"])
def test_a_rule_may_not_take_a_sections_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    (tmp_path / f"rule_{name}.py").write_text(
        "from fundflow.detectors import Detector\n\n\n"
        f"class Rule(Detector):\n    name = {name!r}\n    version = '1'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=rf"'{name}' is a built-in detector's or section's name"):
        load_config(overrides={"engine": {"detectors": [f"rule_{name}:Rule"]}})

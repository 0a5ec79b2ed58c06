"""The synthetic world: deterministic, well-formed, and planted as its truth says.

The semantic checks recompute, from the file alone and independently of the
detectors, the figures each pattern is built to cross (or, for an honest
look-alike, to stay under).
"""

from __future__ import annotations

import gzip
import json
import pathlib
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fundflow.simulate import write_world, yuan_number, yuan_text

REFERENCE = ("entity", "account", "product", "loan")
EVENTS = ("balance", "reserve_report", "custody_txn", "clearing_txn")
TXNS = ("custody_txn", "clearing_txn")
DAY_MS = 86_400_000
_MONEY = re.compile(r"\d+(\.\d{1,2})?")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00")


# --------------------------------------------------------------------------- reading a world


def loads(line: str) -> dict:
    return json.loads(line, parse_float=Decimal)


def fen(value: str | int | Decimal) -> int | None:
    """Yuan (string or number, at most two decimals, not negative) to fen; None if invalid."""
    text = value if isinstance(value, str) else str(value)
    if not _MONEY.fullmatch(text):
        return None
    return int(Decimal(text) * 100)


def ms(value: str | int) -> int | None:
    """An ISO-8601 time or epoch milliseconds to epoch ms; None if invalid."""
    if isinstance(value, int):
        return value
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        return None


def read_line(line: str) -> tuple[str | None, dict]:
    """(the reason the line is malformed or None, the record)."""
    try:
        rec = loads(line)
    except ValueError:
        return "not_json", {}
    if rec.get("type") not in REFERENCE + EVENTS:
        return "unknown_type", rec
    if rec["type"] in TXNS:
        if "txn_id" not in rec:
            return "missing_field", rec
        amount = fen(rec["amount"])
        if amount is None or amount <= 0:
            return "bad_amount", rec
        if ms(rec["ts"]) is None:
            return "bad_time", rec
    return None, rec


def event_ms(rec: dict) -> int:
    if rec["type"] == "balance":
        return ms(rec["as_of"])
    if rec["type"] == "reserve_report":  # published at 01:00 the day after
        day = date.fromisoformat(rec["as_of"]) + timedelta(days=1)
        return ms(f"{day.isoformat()}T01:00:00+08:00")
    return ms(rec["ts"])


class World:
    """A world file split into records, dead letters and duplicates."""

    def __init__(self, folder: pathlib.Path, truth: dict) -> None:
        self.folder, self.truth = folder, truth
        self.raw = (folder / "world.jsonl").read_bytes()
        self.lines = self.raw.decode().splitlines()
        self.records: list[dict] = []  # valid records, duplicates excluded, in file order
        self.dead_lines: list[str] = []
        self.dead = Counter()
        self.duplicates = 0
        self.txn_ms: dict[str, int] = {}  # txn_id -> event time
        seen: dict[str, str] = {}
        for line in self.lines:
            reason, rec = read_line(line)
            if reason:
                self.dead[reason] += 1
                self.dead_lines.append(line)
                continue
            if rec["type"] in TXNS:
                if rec["txn_id"] in seen:
                    assert seen[rec["txn_id"]] == line, "a txn_id reused by a different record"
                    self.duplicates += 1
                    continue
                seen[rec["txn_id"]] = line
                self.txn_ms[rec["txn_id"]] = ms(rec["ts"])
            self.records.append(rec)
        self.by_type: dict[str, list[dict]] = defaultdict(list)
        for rec in self.records:
            self.by_type[rec["type"]].append(rec)
        self.entities = {e["entity_id"]: e for e in self.by_type["entity"]}
        self.accounts = {a["account_id"]: a for a in self.by_type["account"]}

    def txns(self, platform: str) -> list[dict]:
        return [t for t in self.by_type["custody_txn"] if t["platform_id"] == platform]

    def subjects(self, look: str) -> list[str]:
        """The subjects planted as ``look``, each once (a pattern may break
        several detectors' rules and so appear once per detector)."""
        honest = [h["subject_id"] for h in self.truth["honest"] if h["look_alike"] == look]
        violators = [v["subject_id"] for v in self.truth["violators"] if v["pattern"] == look]
        return list(dict.fromkeys(honest + violators))


def make_world(folder: pathlib.Path, **kwargs) -> World:
    return World(folder, write_world(folder, **kwargs))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return make_world(tmp_path_factory.mktemp("w"), seed=1, days=14, noise=0.01)


# --------------------------------------------------------------------------- determinism and format


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    truth = write_world(tmp_path, seed=1, days=14, noise=0.01)
    assert (tmp_path / "world.jsonl").read_bytes() == world.raw
    assert (tmp_path / "truth.json").read_bytes() == (world.folder / "truth.json").read_bytes()
    assert truth == world.truth


def test_another_seed_gives_another_world(world, tmp_path):
    write_world(tmp_path, seed=2, days=14, noise=0.01)
    assert (tmp_path / "world.jsonl").read_bytes() != world.raw


def test_truth_counts_match_the_file(world):
    truth = world.truth
    assert (
        truth["records"]
        == len(world.lines)
        == len(world.records) + world.duplicates + sum(world.dead.values())
    )
    assert world.duplicates == truth["noise"]["duplicates"] > 0
    assert dict(world.dead) == truth["noise"]["dead_letters"]
    assert all(n > 0 for n in truth["noise"]["dead_letters"].values())
    assert {k: truth[k] for k in ("seed", "scale", "days", "start", "zone")} == {
        "seed": 1,
        "scale": 1,
        "days": 14,
        "start": "2026-03-01",
        "zone": "Asia/Shanghai",
    }


def test_noise_lines_never_reuse_a_real_txn_id(world):
    real = {r["txn_id"] for r in world.records if r["type"] in TXNS}
    noisy = re.findall(r'"txn_id":"(NX\d+)"', "\n".join(world.dead_lines))
    assert noisy and not real & set(noisy)
    assert not any(t.startswith("NX") for t in real)


def test_noise_does_not_change_the_world(world, tmp_path):
    clean = make_world(tmp_path, seed=1, days=14, noise=0.0)
    assert clean.truth["noise"] == {"duplicates": 0, "dead_letters": dict.fromkeys(world.dead, 0)}
    assert clean.records == world.records


def test_reference_records_come_first(world):
    types = [r["type"] for r in world.records]
    first_event = min(types.index(t) for t in EVENTS)
    assert set(types[:first_event]) == set(REFERENCE)
    assert not set(types[first_event:]) & set(REFERENCE)
    assert types[first_event : first_event + len(world.by_type["balance"])] == ["balance"] * len(
        world.by_type["balance"]
    )


def test_events_are_in_time_order_apart_from_duplicates(world):
    times = [event_ms(r) for r in world.records if r["type"] in EVENTS]
    assert all(a <= b for a, b in zip(times, times[1:], strict=False))
    reports = world.by_type["reserve_report"]
    assert len(reports) == 14 * len({r["institution_id"] for r in reports})


def test_times_and_amounts_use_both_wire_forms(world):
    txns = [r for r in world.records if r["type"] in TXNS]
    epoch = sum(isinstance(r["ts"], int) for r in txns) / len(txns)
    numeric = sum(not isinstance(r["amount"], str) for r in txns) / len(txns)
    assert 0.03 < epoch < 0.07 and 0.03 < numeric < 0.07
    assert all(isinstance(r["ts"], int) or _ISO.fullmatch(r["ts"]) for r in txns)
    assert all(
        re.fullmatch(r"\d+\.\d\d", r["amount"]) for r in txns if isinstance(r["amount"], str)
    )


def test_scale_grows_the_world_linearly(world, tmp_path):
    double = write_world(tmp_path, seed=1, scale=2, days=14, noise=0.01)
    assert 1.8 < double["records"] / world.truth["records"] < 2.2
    planted = {(v["pattern"], v["subject_id"]) for v in double["violators"]}
    patterns = Counter(pattern for pattern, _ in planted)
    assert set(patterns.values()) == {2} and len(patterns) == len(PATTERNS)


def test_compressed_world_holds_the_same_lines(tmp_path):
    plain = write_world(tmp_path / "plain", seed=4, days=8)
    packed = write_world(tmp_path / "packed", seed=4, days=8, compress=True)
    assert plain == packed
    raw = (tmp_path / "packed" / "world.jsonl.gz").read_bytes()
    assert gzip.decompress(raw) == (tmp_path / "plain" / "world.jsonl").read_bytes()
    write_world(tmp_path / "again", seed=4, days=8, compress=True)
    assert (tmp_path / "again" / "world.jsonl.gz").read_bytes() == raw


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": 7},
        {"scale": 0},
        {"noise": 0.9},
        {"start": "2026-02-30"},
        {"seed": "1"},
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        write_world(tmp_path, **kwargs)


@given(st.integers(min_value=1, max_value=10**17))
def test_money_text_round_trips(amount):
    assert fen(yuan_text(amount)) == amount
    assert fen(loads(yuan_number(amount))) == amount


# --------------------------------------------------------------------------- the truth and the plan


PATTERNS = ("pool_direct", "pool_via_related", "pool_idle", "mismatch_direct", "term_split",
            "self_financing_controller", "guaranteed_payout", "excessive_rate",
            "down_payment_to_developer", "private_split",
            "reserve_shortfall", "reserve_unlicensed_bank", "reserve_interest",
            "cross_bank_settlement", "unlicensed_payment")  # fmt: skip


def test_truth_covers_every_subject_once(world):
    truth = world.truth
    planted = sorted({(v["pattern"], v["subject_id"]) for v in truth["violators"]})
    assert sorted(pattern for pattern, _ in planted) == sorted(PATTERNS)
    # pool_via_related also breaks self_financing's rule: one entry per detector.
    (via_related,) = world.subjects("pool_via_related")
    assert sorted(v["detector"] for v in truth["violators"] if v["subject_id"] == via_related) == [
        "fund_pool",
        "self_financing",
    ]
    looks = Counter(h["look_alike"] for h in truth["honest"])
    assert looks == {
        "busy_platform": 2,
        "mismatch_below_threshold": 1,
        "related_party_lookalike": 1,
        "home_with_own_money": 1,
        "private_at_min_ticket": 1,
        "fully_covered": 2,
        "near_threshold": 2,
        "cnaps_rebalance": 1,
        "licensed_fund_seller": 1,
    }
    subjects = [subject for _, subject in planted] + [h["subject_id"] for h in truth["honest"]]
    # Beyond platforms and institutions: the unlicensed payment business and the fund seller.
    others = {*world.subjects("unlicensed_payment"), *world.subjects("licensed_fund_seller")}
    assert sorted(world.entities[e]["kind"] for e in others) == ["asset_manager", "company"]
    kinds = {"p2p_platform", "payment_institution"}
    assert sorted(subjects) == sorted(
        e for e, rec in world.entities.items() if rec["kind"] in kinds or e in others
    )


def test_a_default_month_has_60k_to_100k_records(tmp_path):
    truth = write_world(tmp_path)
    lines = (tmp_path / "world.jsonl").read_bytes().count(b"\n")
    assert 60_000 <= truth["records"] == lines <= 100_000


def test_loans_match_their_funding(world):
    funded: dict[str, int] = Counter()
    first: dict[str, int] = {}
    for t in world.by_type["custody_txn"]:
        if t["purpose"] in ("invest", "disburse") and "loan_id" in t:
            funded[t["loan_id"]] += fen(t["amount"])
            first.setdefault(t["loan_id"], world.txn_ms[t["txn_id"]])
    loans = world.by_type["loan"]
    assert {ln["loan_id"]: fen(ln["principal"]) for ln in loans} == funded
    assert all(ms(ln["issued_at"]) <= first[ln["loan_id"]] for ln in loans)


def reserve_coverage(w: World, institution: str) -> list[Decimal]:
    """End-of-day reserve total / reported liabilities, day by day."""
    reserves = {
        a
        for a, rec in w.accounts.items()
        if rec["role"] == "client_reserve" and rec["owner_id"] == institution
    }
    total = sum(fen(b["balance"]) for b in w.by_type["balance"] if b["account_id"] in reserves)
    start = ms(f"{w.truth['start']}T00:00:00+08:00")
    closing = [0] * w.truth["days"]  # the txns are in time order
    for t in w.by_type["clearing_txn"]:
        total += ((t["payee_account"] in reserves) - (t["payer_account"] in reserves)) * fen(
            t["amount"]
        )
        closing[(w.txn_ms[t["txn_id"]] - start) // DAY_MS] = total
    reports = [r for r in w.by_type["reserve_report"] if r["institution_id"] == institution]
    assert [r["as_of"] for r in reports] == [(date.fromisoformat(w.truth["start"]) + timedelta(days=d)).isoformat()
                                              for d in range(w.truth["days"])]  # fmt: skip
    return [
        Decimal(total) / fen(r["client_liabilities"])
        for total, r in zip(closing, reports, strict=True)
    ]


def test_reserve_coverage_is_as_planted(world):
    for look, low, high in [("fully_covered", 1, 1), ("reserve_unlicensed_bank", 1, 1),
                            ("near_threshold", Decimal("0.9965"), Decimal("0.9975")),
                            ("reserve_interest", 1, Decimal("1.001"))]:  # fmt: skip
        for subject in world.subjects(look):
            assert all(low <= c <= high for c in reserve_coverage(world, subject)), (look, subject)
    (shortfall,) = world.subjects("reserve_shortfall")
    coverage = reserve_coverage(world, shortfall)
    assert coverage[0] == 1 and min(coverage) < Decimal("0.97")


def test_reserve_outflows_stay_with_clients_except_the_planted_ones(world):
    roles = {a: rec["role"] for a, rec in world.accounts.items()}
    owner = {a: rec["owner_id"] for a, rec in world.accounts.items()}
    odd: dict[str, set[str]] = defaultdict(set)
    for t in world.by_type["clearing_txn"]:
        payer, payee = roles.get(t["payer_account"]), roles.get(t["payee_account"])
        payer_owner, payee_owner = owner.get(t["payer_account"]), owner.get(t["payee_account"])
        if payer == payee == "client_reserve" and payer_owner == payee_owner:
            continue  # between one institution's own reserve accounts: the cross-bank test
        to_client = payee in ("settlement", "personal", "corporate")
        if payer == "client_reserve" and not (
            to_client and t["purpose"] in ("settlement", "refund", "withdraw")
        ):
            odd[owner[t["payer_account"]]].add(t["purpose"])
        if payee == "client_reserve" and t["purpose"] != "topup":
            odd[owner[t["payee_account"]]].add(t["purpose"])
    assert odd == {
        world.subjects("reserve_shortfall")[0]: {"transfer"},
        world.subjects("reserve_interest")[0]: {"interest"},
    }
    unlicensed = {
        a
        for a, rec in world.accounts.items()
        if rec["role"] == "client_reserve"
        and "custody" not in world.entities[rec["bank_id"]]["licenses"]
    }
    assert {owner[a] for a in unlicensed} == set(world.subjects("reserve_unlicensed_bank"))


def controlled_accounts(w: World, platform: str) -> set[str]:
    """Accounts the platform controls (docs/detectors.md, "Controlled accounts")."""
    related = {r["entity_id"] for r in w.entities[platform]["related"]} | {platform}
    return {
        a
        for a, rec in w.accounts.items()
        if rec["owner_id"] in related
        or (
            rec.get("platform_id") == platform
            and rec["role"] in ("platform_own", "platform_custody", "operating")
        )
    }


def pool_window(w: World, platform: str) -> tuple[int, int, int]:
    """Over the best 7-day window: (distinct lender sources, lender money in, paid out) in fen."""
    ctl = controlled_accounts(w, platform)
    roles = {a: rec["role"] for a, rec in w.accounts.items()}
    flows = [(w.txn_ms[t["txn_id"]], t) for t in w.txns(platform)]
    lender_in = [
        (ts, t)
        for ts, t in flows
        if t["credit_account"] in ctl
        and t["purpose"] != "fee"
        and roles.get(t["debit_account"]) in ("lender_sub", "personal")
    ]
    paid_out = [
        (ts, fen(t["amount"]))
        for ts, t in flows
        if t["debit_account"] in ctl
        and t["credit_account"] not in ctl
        and roles.get(t["credit_account"])
        in ("borrower_sub", "lender_sub", "personal", "corporate")
    ]
    best = (0, 0, 0)
    for start, _ in lender_in:
        money_in = [t for ts, t in lender_in if start <= ts < start + 7 * DAY_MS]
        paid = sum(amount for ts, amount in paid_out if start <= ts < start + 7 * DAY_MS)
        found = (
            len({t["debit_account"] for t in money_in}),
            sum(fen(t["amount"]) for t in money_in),
            paid,
        )
        best = max(best, found, key=lambda f: (f[1], f[2]))
    return best


def test_fund_pool_patterns_and_their_look_alikes(world):
    for look, min_sources, min_in, min_ratio in [
        ("pool_direct", 20, 10**8, Decimal("0.6")),
        ("pool_via_related", 25, 15 * 10**7, Decimal("0.6")),
    ]:
        (subject,) = world.subjects(look)
        sources, money_in, paid = pool_window(world, subject)
        assert sources >= min_sources and money_in >= min_in and paid >= min_ratio * money_in, look
    (idle,) = world.subjects("pool_idle")
    sources, money_in, paid = pool_window(world, idle)
    assert sources < 20 and money_in >= 15_000 * 100 and paid < money_in // 10  # subsidies only
    for look in ("busy_platform", "mismatch_below_threshold", "mismatch_direct", "term_split"):
        for subject in world.subjects(look):
            assert pool_window(world, subject)[1] == 0, (look, subject)


def mismatch(w: World, platform: str) -> tuple[int, Decimal, dict[str, set[str]]]:
    """Direct links only: (largest mismatched exposure, its largest share of the book once that
    holds 1,000,000 yuan, the shorter products funding each mismatched loan)."""
    terms = {p["product_id"]: p["term_days"] for p in w.by_type["product"]}
    terms |= {ln["loan_id"]: ln["term_days"] for ln in w.by_type["loan"]}
    book = exposure = top = 0
    share = Decimal(0)
    short: dict[str, set[str]] = defaultdict(set)
    for t in w.txns(platform):
        loan, product, amount = t.get("loan_id"), t.get("product_id"), fen(t["amount"])
        if loan and t["purpose"] in ("invest", "disburse"):
            book += amount
            if product and terms[loan] > terms[product]:
                exposure += amount
                short[loan].add(product)
        elif loan and t["purpose"] == "repay":
            book -= amount
            if loan in short:
                exposure = max(0, exposure - amount)
        top = max(top, exposure)
        if book >= 10**8:
            share = max(share, Decimal(exposure) / book)
    return top, share, short


def test_maturity_patterns_and_their_look_alikes(world):
    for look in ("busy_platform", "pool_direct", "pool_via_related", "pool_idle"):
        for subject in world.subjects(look):
            assert mismatch(world, subject)[0] == 0, (look, subject)
    (below,) = world.subjects("mismatch_below_threshold")
    top, share, short = mismatch(world, below)
    assert (
        0 < top <= 300_000 * 100
        and share < Decimal("0.06")
        and all(len(p) == 1 for p in short.values())
    )
    (direct,) = world.subjects("mismatch_direct")
    top, _, short = mismatch(world, direct)
    assert top > 600_000 * 100 and all(len(p) == 1 for p in short.values())
    (split,) = world.subjects("term_split")
    top, share, short = mismatch(world, split)
    assert (
        top < 500_000 * 100 and share < Decimal("0.1") and [len(p) for p in short.values()] == [2]
    )


# --------------------------------------------------------------------------- beyond the core


def _loans_paid_from(w: World, account: str) -> tuple[dict[str, int], dict[str, int]]:
    """(loan id -> paid to lenders from ``account``, loan id -> its borrower's repayments
    into ``account``)."""
    borrower = {ln["loan_id"]: ln["borrower_account"] for ln in w.by_type["loan"]}
    paid: dict[str, int] = Counter()
    repaid: dict[str, int] = Counter()
    for t in w.by_type["custody_txn"]:
        loan = t.get("loan_id")
        if t["purpose"] != "repay" or loan is None:
            continue
        if t["debit_account"] == account:
            assert w.accounts[t["credit_account"]]["role"] == "lender_sub"
            paid[loan] += fen(t["amount"])
        elif t["credit_account"] == account and t["debit_account"] == borrower[loan]:
            repaid[loan] += fen(t["amount"])
    return paid, repaid


def test_self_financing_pattern_reaches_the_controllers_company(world):
    (subject,) = world.subjects("self_financing_controller")
    (company_account,) = next(
        v["accounts"] for v in world.truth["violators"] if v["subject_id"] == subject
    )
    company = world.accounts[company_account]["owner_id"]
    controller = next(
        r["entity_id"] for r in world.entities[subject]["related"] if r["relation"] == "controller"
    )
    assert world.entities[company]["related"] == [
        {"entity_id": controller, "relation": "shareholder", "share": Decimal("0.7")}
    ]
    custody = f"ACC-{subject}-CUSTODY"
    txns = world.txns(subject)
    money_in = [t for t in txns if t["credit_account"] == custody]
    (out,) = [t for t in txns if t["debit_account"] == custody]
    assert 6 <= len(money_in) <= 8 and all("loan_id" not in t for t in money_in)
    assert out["credit_account"] == company_account
    assert fen(out["amount"]) == sum(fen(t["amount"]) for t in money_in) >= 180_000 * 100


def test_guaranteed_payout_pays_lenders_of_unrepaid_loans(world):
    (subject,) = world.subjects("guaranteed_payout")
    paid, repaid = _loans_paid_from(world, f"ACC-{subject}-RISK")
    assert len(paid) == 3 and not repaid
    (honest,) = world.subjects("related_party_lookalike")
    paid, repaid = _loans_paid_from(world, f"ACC-{honest}-RISK")
    assert len(paid) == 2 and paid == repaid


def test_rates_of_the_excessive_product_and_the_promotion(world):
    rates = {p["product_id"]: p["annual_rate"] for p in world.by_type["product"]}
    loan_rate = {ln["loan_id"]: ln["annual_rate"] for ln in world.by_type["loan"]}
    (subject,) = world.subjects("excessive_rate")
    (honest,) = world.subjects("related_party_lookalike")
    special = {f"PRD-{subject}-HI": Decimal("0.18"), f"PRD-{honest}-PROMO": Decimal("0.09")}
    assert {p: rates[p] for p in special} == special
    others = [r for p, r in rates.items() if p.endswith(("-060", "-090")) and p not in special]
    assert max(others) <= Decimal("0.078") and min(others) >= Decimal("0.067")
    funded = defaultdict(set)
    for t in world.by_type["custody_txn"]:
        if t.get("product_id") in special and "loan_id" in t:
            funded[t["product_id"]].add(loan_rate[t["loan_id"]])
    assert max(funded[f"PRD-{subject}-HI"]) < Decimal("0.18")
    assert min(funded[f"PRD-{honest}-PROMO"]) > Decimal("0.09")


def test_the_executive_is_paid_from_fee_money_only(world):
    (honest,) = world.subjects("related_party_lookalike")
    executive = next(
        r["entity_id"] for r in world.entities[honest]["related"] if r["relation"] == "executive"
    )
    paid = [t for t in world.txns(honest) if t["credit_account"] == f"ACC-{executive}"]
    assert paid and all(t["debit_account"] == f"ACC-{honest}-OWN" for t in paid)
    fees = sum(
        fen(t["amount"])
        for t in world.txns(honest)
        if t["credit_account"] == f"ACC-{honest}-OWN" and t["purpose"] == "fee"
    )
    assert sum(fen(t["amount"]) for t in paid) <= fees


def own_cross_bank_moves(w: World) -> dict[str, list[tuple[str, int, int]]]:
    """Owner -> (system, event ms, fen) of each clearing transfer between two of its own
    accounts at different banks, in time order."""
    moves: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for t in w.by_type["clearing_txn"]:
        payer, payee = w.accounts.get(t["payer_account"]), w.accounts.get(t["payee_account"])
        if (
            payer is not None
            and payee is not None
            and payer["owner_id"] == payee["owner_id"]
            and payer["bank_id"] != payee["bank_id"]
        ):
            moves[payer["owner_id"]].append((t["system"], w.txn_ms[t["txn_id"]], fen(t["amount"])))
    return moves


def test_cross_bank_moves_outside_the_clearing_systems_and_through_cnaps(world):
    moves = own_cross_bank_moves(world)
    (violator,) = world.subjects("cross_bank_settlement")
    (honest,) = world.subjects("cnaps_rebalance")
    assert set(moves) == {violator, honest}
    assert {system for system, _, _ in moves[violator]} == {"direct"}
    assert {system for system, _, _ in moves[honest]} == {"CNAPS"}
    for subject in (violator, honest):
        start = moves[subject][0][1]
        week = [amount for _, ts, amount in moves[subject] if ts < start + 7 * DAY_MS]
        assert len(week) >= 5 and sum(week) >= 500_000 * 100, subject
        assert all(80_000 * 100 <= amount <= 250_000 * 100 for _, _, amount in moves[subject])
    (heart,) = [v["accounts"] for v in world.truth["violators"] if v["subject_id"] == violator]
    assert heart == [f"ACC-{violator}-R1", f"ACC-{violator}-R2"]


def test_unlicensed_payment_business_and_the_licensed_fund_seller(world):
    (shadow,) = world.subjects("unlicensed_payment")
    entity = world.entities[shadow]
    assert entity["kind"] == "company" and entity["licenses"] == [] and "支付" in entity["name"]
    own = {a for a, rec in world.accounts.items() if rec["owner_id"] == shadow}
    assert {world.accounts[a]["role"] for a in own} == {"corporate", "operating"}
    assert not [r for r in world.by_type["reserve_report"] if r["institution_id"] == shadow]
    initiated = [t for t in world.by_type["clearing_txn"] if t["initiator_id"] == shadow]
    clients_money = [t for t in initiated if t["payer_account"] not in own]
    assert len(clients_money) >= 100
    assert all(t["payee_account"] in own and t["purpose"] == "topup" for t in clients_money)
    (seller,) = world.subjects("licensed_fund_seller")
    entity = world.entities[seller]
    assert entity["kind"] == "asset_manager" and entity["licenses"] == ["fund_sales"]
    assert "基金销售" in entity["name"]
    (rebalancing,) = world.subjects("cnaps_rebalance")
    paid = [t for t in world.by_type["clearing_txn"] if t["payee_account"] == f"ACC-{seller}-STL"]
    assert paid and {(t["initiator_id"], t["purpose"]) for t in paid} == {
        (rebalancing, "settlement")
    }


def _loan_txns(w: World, platform: str, loan_id: str, purpose: str) -> list[dict]:
    return [t for t in w.txns(platform) if t.get("loan_id") == loan_id and t["purpose"] == purpose]


def test_down_payment_loan_reaches_the_developer_and_the_look_alike_pays_its_own(world):
    developers = {e for e, rec in world.entities.items() if rec["kind"] == "real_estate"}
    (violator,) = world.subjects("down_payment_to_developer")
    (honest,) = world.subjects("home_with_own_money")
    assert developers == {f"RE-{violator}", f"RE-{honest}"}
    to_developer: dict[str, list[dict]] = defaultdict(list)
    for t in world.by_type["custody_txn"] + world.by_type["clearing_txn"]:
        payee = t.get("credit_account", t.get("payee_account"))
        if world.accounts.get(payee, {}).get("owner_id") in developers:
            to_developer[t.get("platform_id")].append(t)
    assert set(to_developer) == {violator, honest}

    (paid,) = to_developer[violator]
    sub, paid_ms = paid["debit_account"], world.txn_ms[paid["txn_id"]]
    (loan,) = [ln for ln in world.by_type["loan"] if ln["borrower_account"] == sub]
    lent = _loan_txns(world, violator, loan["loan_id"], "invest")
    (fee,) = _loan_txns(world, violator, loan["loan_id"], "fee")
    assert loan["purpose"] == "consumer" and sum(fen(t["amount"]) for t in lent) == fen(
        loan["principal"]
    )
    assert fen(paid["amount"]) == fen(loan["principal"]) - fen(fee["amount"]) >= 50_000 * 100
    assert 0 < paid_ms - max(world.txn_ms[t["txn_id"]] for t in lent) < DAY_MS
    before = [t for t in world.txns(violator) if t["credit_account"] == sub]
    assert {t["purpose"] for t in before} == {"invest"}  # nothing but the loan came in

    (home,) = to_developer[honest]
    sub, paid_ms = home["debit_account"], world.txn_ms[home["txn_id"]]
    (loan,) = [ln for ln in world.by_type["loan"] if ln["borrower_account"] == sub]
    repaid = _loan_txns(world, honest, loan["loan_id"], "repay")
    last_repay = max(world.txn_ms[t["txn_id"]] for t in repaid)
    assert sum(fen(t["amount"]) for t in repaid) > fen(loan["principal"]) and last_repay < paid_ms
    (own_money,) = [
        t
        for t in world.txns(honest)
        if t["credit_account"] == sub and last_repay < world.txn_ms[t["txn_id"]] < paid_ms
    ]
    assert own_money["purpose"] == "recharge"
    assert fen(own_money["amount"]) == fen(home["amount"]) >= 100_000 * 100
    assert paid_ms - ms(loan["issued_at"]) < 30 * DAY_MS  # inside the detector's window


def test_private_products_split_and_sold_at_the_minimum_ticket(world):
    private = {p["product_id"]: p for p in world.by_type["product"] if p["private"]}
    (violator,) = world.subjects("private_split")
    (honest,) = world.subjects("private_at_min_ticket")
    assert sorted(private) == sorted([f"PRD-{violator}-PRIV", f"PRD-{honest}-PRIV"])
    assert {fen(p["min_ticket"]) for p in private.values()} == {1_000_000 * 100}
    holdings: dict[str, Counter] = defaultdict(Counter)
    for t in world.by_type["custody_txn"]:
        if t["purpose"] == "invest" and t.get("product_id") in private:
            investor = world.accounts[t["debit_account"]]["owner_id"]
            holdings[t["product_id"]][investor] += fen(t["amount"])
    split = holdings[f"PRD-{violator}-PRIV"]
    assert 205 <= len(split) <= 225 and max(split.values()) <= 100_000 * 100
    at_minimum = holdings[f"PRD-{honest}-PRIV"]
    assert len(at_minimum) == 150 and set(at_minimum.values()) == {1_000_000 * 100}

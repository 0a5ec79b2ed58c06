"""A synthetic world of P2P platforms and payment institutions, with labelled violations.

:func:`write_world` writes ``world.jsonl`` (or ``world.jsonl.gz``), one record
of ``docs/wire-format.md`` per line, and ``truth.json``, which names every
planted violation and every honest look-alike. It is a pure function of its
arguments: the same arguments give byte-identical files, on any machine.

The file holds the reference records first (``entity``, ``account``,
``product``, ``loan``), then the events in event-time order: the opening
``balance`` of every client-reserve account, the ``custody_txn`` and
``clearing_txn`` flows, and one ``reserve_report`` per payment institution
and day (for day D, published at 01:00 on D+1). Times are ISO-8601 at
``+08:00`` (Asia/Shanghai), about 5 % of transaction times are epoch
milliseconds instead; amounts are yuan strings with two decimals, about 5 %
are JSON numbers.

The world has four custody banks and two plain banks; everything else
comes ``scale`` times over: sixteen P2P platforms (two ``busy_platform``, one
``mismatch_below_threshold``, one ``related_party_lookalike``, one
``home_with_own_money``, one ``private_at_min_ticket``, ten violators), ten
payment businesses (two ``fully_covered``, two ``near_threshold``, one
``cnaps_rebalance``, five violators) and one ``licensed_fund_seller``, each
with its own lenders, borrowers, clients and merchants. At 30 days that is
about 88,000 records per unit of scale.

* P2P platforms (``P001``...) on custody banks. Honest custody moves money
  person -> lender sub-account (``recharge``), lender -> borrower sub-account
  for a named loan and product (``invest``, product term >= loan term), a
  fee of 1-2 % borrower -> platform (``fee``), ``repay`` with the loan id at
  maturity and interest every 30 days, ``withdraw`` back to the person and
  an occasional small ``subsidy`` from the platform's own account: at most
  one of 5-50 yuan a day, so under 1,500 yuan in any 30 days, below the
  2,000 yuan a month from which excessive_return counts own-money subsidies
  as the forbidden kind (seed 三(四)), small coupons being normal marketing.
* Payment institutions (``I001``...) holding client money (备付金) in
  ``client_reserve`` accounts at custody banks: clients top up over NUCC,
  merchants are paid (``settlement``), clients get refunds and withdraw.
  Every day each institution reports its ``client_liabilities``.

Honest look-alikes (``truth["honest"]``, must raise no alert at all):

* ``busy_platform``: hundreds of lenders and tens of millions of yuan a week,
  all paid lender-to-borrower for named loans.
* ``mismatch_below_threshold``: a large matched book first, then a few loans
  funded by a slightly shorter product (90-day money, 120-day loans), in all
  at most 300,000 yuan: under 500,000 and under 10 % of the book.
* ``fully_covered``: an institution whose reports state its exact reserves.
* ``near_threshold``: an institution reporting 0.3 % more than it holds
  (coverage 0.997, inside the 0.5 % tolerance).
* ``related_party_lookalike``: an executive listed on the platform's entity
  paid a salary every ten days out of the platform's fee money (no lender
  money reaches it); two 7-day loans repaid by their borrowers into the risk
  reserve, which then pays the lenders; a 90-day promotion product at 9 %
  (peers 6.7-7.8 %: inside the 3-point margin), funding loans that pay more.
* ``home_with_own_money``: a new borrower's 7-day loan of 60,000-150,000
  yuan, withdrawn to the borrower's bank account and repaid at maturity;
  a day or two later the borrower recharges 100,000-300,000 yuan of their
  own and pays a property developer (kind ``real_estate``) from the
  sub-account, inside 30 days of the loan: the loan money went back with
  the repayment.
* ``private_at_min_ticket``: a 360-day ``private`` product (minimum ticket
  1,000,000 yuan) sold to 150 distinct lenders, each exactly the minimum.
* ``cnaps_rebalance``: an institution moving 80,000-250,000 yuan once or
  twice a day from its reserve account R1 to R2, at another bank, over
  CNAPS (a smaller business: 80 clients, 10 merchants).
* ``licensed_fund_seller`` (``AM001``...): an ``asset_manager`` named
  ...基金销售有限公司 holding ``fund_sales``, one of the merchants of the
  ``cnaps_rebalance`` institution.

Violations (``truth["violators"]``, each with the accounts at its heart),
each ``scale`` times:

* ``fund_pool`` / ``pool_direct`` (资金池): about 40 lenders invest
  30,000-80,000 yuan each, with no loan, into the platform's custody master
  account over three days; the platform pays about 80 % of it out to
  borrowers from there. The rest stays in the account for weeks.
* ``fund_pool`` / ``pool_via_related``: about 30 lenders pay 55,000-95,000
  yuan each into a company account of the platform's ``affiliate``; it
  forwards the money to the platform's own account, which pays 75 % of it
  out to borrowers.
* ``fund_pool`` / ``pool_idle``: a handful of lenders invest 16,000 yuan or
  more with no loan into the custody master account, where it stays.
* ``maturity_mismatch`` / ``mismatch_direct`` (期限错配): a 30-day product
  funds four or five 360-day loans, over 640,000 yuan in all.
* ``maturity_mismatch`` / ``term_split`` (期限拆分): one 180-day loan of about
  300,000 yuan funded half by a 30-day and half by a 60-day product, on a
  platform whose matched book is many times larger.
* ``self_financing`` / ``self_financing_controller`` (自融): six to eight
  lenders invest 30,000-60,000 yuan each, with no loan, into the custody
  master, which passes it all the same day to a company 70 % held by the
  platform's controller. ``pool_via_related`` breaks this rule too (lender
  money reaches the affiliate): its truth names both detectors.
* ``guaranteed_return`` / ``guaranteed_payout`` (保本保息): three 7-day loans
  whose borrowers never repay; at maturity the platform moves money from its
  own bank account into its risk reserve and pays the lenders from there.
* ``excessive_return`` / ``excessive_rate`` (超高回报): a 90-day product
  promising 18 % a year, above every loan's rate, funding six loans.
* ``reserve_misuse`` / ``reserve_shortfall`` (挪用备付金): on three days the
  institution moves 3-10 % of its reserves to its own operating account;
  its reports keep stating what its clients are owed.
* ``reserve_misuse`` / ``reserve_unlicensed_bank``: one reserve account is at
  a bank without the ``custody`` licence.
* ``reserve_misuse`` / ``reserve_interest`` (吃利差): the custody bank pays
  interest into the reserve account; the reports still cover the clients.
* ``down_payment_loan`` / ``down_payment_to_developer`` (首付贷): a new
  borrower's 180-day ``consumer`` loan of 300,000-600,000 yuan from six to
  ten lenders; the sub-account pays the money lent, less the fee, straight
  to a property developer's account, in the platform's custody ledger.
* ``private_product_split`` / ``private_split`` (私募拆分): a 360-day
  ``private`` product (minimum ticket 1,000,000 yuan) cut into tickets of
  10,000-100,000 yuan and sold to 205-225 distinct lenders.
* ``cross_bank_clearing`` / ``cross_bank_settlement`` (变相跨行清算): as
  ``cnaps_rebalance``, but the moves between its banks go ``direct``.
* ``unlicensed_business`` / ``unlicensed_payment`` (无证经营支付): a
  ``company`` named ...支付有限公司 with no licence runs a payment business
  like an institution's (80 clients, 10 merchants), clients' money in its
  own ``corporate`` accounts; it reports to no one.

Noise (``noise`` is the share of transaction lines that spawn one): exact
duplicates of a transaction line re-sent minutes to hours later, and
malformed lines, each with its own ``txn_id`` so it never masks a real one:
``not_json`` (a line cut in half), ``unknown_type`` (``wire_txn``),
``missing_field`` (no ``txn_id``), ``bad_amount`` (``-5.00`` or
``12.345``) and ``bad_time`` (month 13). ``truth["noise"]`` counts them.

>>> import collections, pathlib, tempfile
>>> truth = write_world(pathlib.Path(tempfile.mkdtemp()), seed=7, days=8)
>>> counts = collections.Counter(v["detector"] for v in truth["violators"])
>>> len(counts), counts["fund_pool"], counts["reserve_misuse"], counts["unlicensed_business"]
(10, 3, 3, 1)
>>> len(truth["honest"]), truth["noise"]["duplicates"] > 0
(12, True)
"""

from __future__ import annotations

import gzip
import heapq
import json
import pathlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from operator import itemgetter
from typing import IO, NamedTuple

ZONE = "Asia/Shanghai"
MIN_DAYS = 8  # idle money must be seen to stay for more than a 7-day window
DAY = 86_400
HOUR = 3_600
FEN = 100  # fen per yuan
HUNDRED = 100 * FEN  # tickets and loans are whole hundreds of yuan
THOUSAND = 1000 * FEN
_SHANGHAI = timezone(timedelta(hours=8))  # no daylight saving since 1991

PLATFORM_VIOLATIONS = (
    ("fund_pool", "pool_direct"),
    ("fund_pool", "pool_via_related"),
    ("fund_pool", "pool_idle"),
    ("maturity_mismatch", "mismatch_direct"),
    ("maturity_mismatch", "term_split"),
    ("self_financing", "self_financing_controller"),
    ("guaranteed_return", "guaranteed_payout"),
    ("excessive_return", "excessive_rate"),
    ("down_payment_loan", "down_payment_to_developer"),
    ("private_product_split", "private_split"),
)
# Patterns that also break another detector's rule: (pattern, detector).
ALSO_DETECTED = (("pool_via_related", "self_financing"),)
INSTITUTION_VIOLATIONS = (
    ("reserve_misuse", "reserve_shortfall"),
    ("reserve_misuse", "reserve_unlicensed_bank"),
    ("reserve_misuse", "reserve_interest"),
    ("cross_bank_clearing", "cross_bank_settlement"),
    ("unlicensed_business", "unlicensed_payment"),
)
DEAD_LETTER_REASONS = ("not_json", "unknown_type", "missing_field", "bad_amount", "bad_time")
# Every other noise line is a duplicate; the malformed ones take turns.
NOISE_CYCLE = tuple(kind for reason in DEAD_LETTER_REASONS for kind in ("duplicate", reason))

# Products every platform offers: term in days -> promised yield in basis points.
PRODUCT_RATES_BP = {30: 650, 60: 700, 90: 750, 180: 850, 360: 950}
# Loan terms and their weights on an honest book.
LOAN_TERMS = (14, 30, 60, 90, 180, 360)
LOAN_TERM_WEIGHTS = (10, 30, 20, 20, 15, 5)


# --------------------------------------------------------------------------- formats


def yuan_text(fen: int) -> str:
    """Fen as a yuan string with exactly two decimals: ``123450 -> '1234.50'``."""
    return f"{fen // FEN}.{fen % FEN:02d}"


def yuan_number(fen: int) -> str:
    """Fen as a JSON number with at most two decimals: ``123450 -> '1234.5'``."""
    whole, cents = divmod(fen, FEN)
    return str(whole) if cents == 0 else f"{whole}.{cents:02d}".rstrip("0")


def rate_text(bp: int) -> str:
    """Basis points as a JSON decimal: ``850 -> '0.085'``."""
    whole, frac = divmod(bp, 10_000)
    return f"{whole}.{frac:04d}".rstrip("0").rstrip(".") if frac else str(whole)


def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# "T10:00:00+08:00" for every second of a day: formatting times is the generator's hot path.
_TIMES_OF_DAY = [f"T{s // HOUR:02d}:{s // 60 % 60:02d}:{s % 60:02d}+08:00" for s in range(DAY)]


class Clock:
    """World time is integer seconds since local midnight of the start day."""

    def __init__(self, start: date) -> None:
        self.start = start
        self.epoch = int(datetime(start.year, start.month, start.day, tzinfo=_SHANGHAI).timestamp())
        self._dates: list[str] = []

    def date(self, day: int) -> str:
        while day >= len(self._dates):
            self._dates.append((self.start + timedelta(days=len(self._dates))).isoformat())
        return self._dates[day]

    def iso(self, t: int) -> str:
        day, second = divmod(t, DAY)
        return self.date(day) + _TIMES_OF_DAY[second]

    def epoch_ms(self, t: int) -> int:
        return (self.epoch + t) * 1000


def _at(rng: random.Random, day: int, from_hour: float, to_hour: float) -> int:
    """A random second of ``day`` between two local hours."""
    start = int(from_hour * HOUR)
    return day * DAY + start + int(rng.random() * (int(to_hour * HOUR) - start))


def _split(rng: random.Random, total: int, parts: int, unit: int = HUNDRED) -> list[int]:
    """``total`` fen (a multiple of ``unit``) cut at random into ``parts`` positive parts."""
    units = total // unit
    cuts = sorted(rng.sample(range(1, units), parts - 1))
    return [(b - a) * unit for a, b in zip([0, *cuts], [*cuts, units], strict=True)]


# --------------------------------------------------------------------------- names

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国海燕波宁博文浩宇晨欣怡子涵梓轩思雨佳琪俊杰嘉慧"
# Brand characters: none of them starts a restricted word (金融, 理财, 基金, 交易所, 支付...).
_BRAND = "鑫源汇恒通达泰盛嘉宏信安瑞丰利华德诚和兴隆昌祥润富元鼎亿佳宝顺万联创新远康泽悦"
# fmt: off
_CITIES = ("上海", "杭州", "深圳", "广州", "南京", "成都", "武汉", "苏州",
           "西安", "重庆", "天津", "长沙", "宁波", "厦门", "青岛", "合肥")
_INDUSTRIES = ("贸易", "商贸", "餐饮管理", "电子商务", "文化传媒", "物流", "建材",
               "服装", "家居用品", "信息技术", "农业科技", "汽车服务", "医疗器械", "教育咨询")
# fmt: on


class Names:
    """Chinese registered names; platform and institution brands are unique."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        pairs = [a + b for a in _BRAND for b in _BRAND if a != b]
        rng.shuffle(pairs)
        self._brands = pairs
        self._used = 0

    def brand(self) -> str:
        pair = self._brands[self._used % len(self._brands)]
        city = _CITIES[self._used // len(self._brands) % len(_CITIES)]
        self._used += 1
        return pair if self._used <= len(self._brands) else city + pair

    def person(self) -> str:
        given = self.rng.choice(_GIVEN) + (
            self.rng.choice(_GIVEN) if self.rng.random() < 0.7 else ""
        )
        return self.rng.choice(_SURNAMES) + given

    def company(self) -> str:
        brand = self.rng.choice(_BRAND) + self.rng.choice(_BRAND)
        return f"{self.rng.choice(_CITIES)}{brand}{self.rng.choice(_INDUSTRIES)}有限公司"


# --------------------------------------------------------------------------- reference records


class Party(NamedTuple):
    """An entity and the outside (personal or corporate) account it pays from."""

    entity_id: str
    account_id: str
    bank_id: str


class Member(NamedTuple):
    """A lender or borrower of a platform: its custody sub-account and outside account."""

    entity_id: str
    sub_account: str
    outside_account: str


class Registry:
    """Collects the reference records as JSON lines, in the order they are written."""

    def __init__(self, clock: Clock, names: Names, rng: random.Random) -> None:
        self.clock, self.names, self.rng = clock, names, rng
        self.entities: list[str] = []
        self.accounts: list[str] = []
        self.products: list[str] = []
        self.loans: list[str] = []
        self._persons = 0
        self._companies = 0
        self.banks: list[str] = []  # every bank, for outside accounts

    def lines(self) -> Iterator[str]:
        yield from self.entities
        yield from self.accounts
        yield from self.products
        yield from self.loans

    def entity(
        self,
        entity_id: str,
        name: str,
        kind: str,
        licenses: tuple[str, ...] = (),
        related: tuple[tuple[str, str, int | None], ...] = (),
    ) -> None:
        """``related`` holds ``(entity_id, relation, share in percent or None)``."""
        rel = ",".join(
            f'{{"entity_id":"{eid}","relation":"{relation}"'
            + ("" if share is None else f',"share":{rate_text(share * 100)}')
            + "}"
            for eid, relation, share in related
        )
        lic = ",".join(f'"{x}"' for x in licenses)
        self.entities.append(
            f'{{"type":"entity","entity_id":"{entity_id}","name":{_json_str(name)},'
            f'"kind":"{kind}","licenses":[{lic}],"related":[{rel}]}}'
        )

    def account(
        self,
        account_id: str,
        owner_id: str,
        bank_id: str,
        role: str,
        platform_id: str | None = None,
    ) -> None:
        platform = "" if platform_id is None else f',"platform_id":"{platform_id}"'
        self.accounts.append(
            f'{{"type":"account","account_id":"{account_id}","owner_id":"{owner_id}",'
            f'"bank_id":"{bank_id}"{platform},"role":"{role}"}}'
        )

    def product(
        self,
        product_id: str,
        platform_id: str,
        term: int,
        rate_bp: int,
        min_ticket: int = 100 * FEN,
        private: bool = False,
    ) -> None:
        self.products.append(
            f'{{"type":"product","product_id":"{product_id}","platform_id":"{platform_id}",'
            f'"term_days":{term},"annual_rate":{rate_text(rate_bp)},'
            f'"min_ticket":"{yuan_text(min_ticket)}","private":{"true" if private else "false"}}}'
        )

    def loan(self, loan: PlannedLoan, platform_id: str, purpose: str) -> None:
        self.loans.append(
            f'{{"type":"loan","loan_id":"{loan.loan_id}","platform_id":"{platform_id}",'
            f'"borrower_account":"{loan.borrower.sub_account}",'
            f'"principal":"{yuan_text(loan.principal)}","term_days":{loan.term},'
            f'"annual_rate":{rate_text(loan.rate_bp)},'
            f'"issued_at":"{self.clock.iso(loan.issued_t)}","purpose":"{purpose}"}}'
        )

    def person_entity(self) -> str:
        self._persons += 1
        entity_id = f"U{self._persons:06d}"
        self.entity(entity_id, self.names.person(), "person")
        return entity_id

    def person(self) -> Party:
        """A person with a personal account at a random bank."""
        entity_id = self.person_entity()
        bank = self.rng.choice(self.banks)
        self.account(f"ACC-{entity_id}", entity_id, bank, "personal")
        return Party(entity_id, f"ACC-{entity_id}", bank)

    def company(
        self,
        role: str = "corporate",
        name: str | None = None,
        related: tuple[tuple[str, str, int | None], ...] = (),
    ) -> Party:
        """A company with one account (``corporate`` or ``settlement``) at a random bank."""
        self._companies += 1
        entity_id = f"C{self._companies:05d}"
        self.entity(entity_id, name or self.names.company(), "company", related=related)
        bank = self.rng.choice(self.banks)
        suffix = "-STL" if role == "settlement" else ""
        self.account(f"ACC-{entity_id}{suffix}", entity_id, bank, role)
        return Party(entity_id, f"ACC-{entity_id}{suffix}", bank)


@dataclass(frozen=True, slots=True)
class Banks:
    custody: tuple[str, ...]  # kind custody_bank, licence custody
    plain: tuple[str, ...]  # kind bank, no custody licence


def register_banks(reg: Registry) -> Banks:
    """Four custody banks (each with its own operating account) and two plain banks."""
    custody = tuple(f"B{i:02d}" for i in range(1, 5))
    plain = ("B05", "B06")
    for bank in custody:
        reg.entity(bank, f"{reg.names.brand()}银行股份有限公司", "custody_bank", ("custody",))
        reg.account(f"ACC-{bank}-OP", bank, bank, "operating")
    for i, bank in enumerate(plain):
        name = f"{_CITIES[(i * 5) % len(_CITIES)]}{reg.names.brand()}农村商业银行股份有限公司"
        reg.entity(bank, name, "bank")
    reg.banks = [*custody, *plain]
    return Banks(custody, plain)


# --------------------------------------------------------------------------- events

Event = tuple[int, int, str, bool]  # (time, sequence, line, is a transaction)


class EventSink:
    """Formats event records and files them by day until the writer takes them."""

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self.clock, self.rng = clock, rng
        self.pending: dict[int, list[Event]] = {}
        self.floor_day = 0  # no event may land before the day being generated
        self._seq = 0
        self._custody = 0
        self._clearing = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def push(self, t: int, line: str, is_txn: bool) -> None:
        day = t // DAY
        assert day >= self.floor_day, "an event was generated for a day already written"
        self.pending.setdefault(day, []).append((t, self.next_seq(), line, is_txn))

    def _ts(self, t: int) -> str:
        return str(self.clock.epoch_ms(t)) if self.rng.random() < 0.05 else f'"{self.clock.iso(t)}"'

    def _amount(self, fen: int) -> str:
        return yuan_number(fen) if self.rng.random() < 0.05 else f'"{yuan_text(fen)}"'

    def custody(
        self,
        t: int,
        bank: str,
        platform: str,
        debit: str,
        credit: str,
        fen: int,
        purpose: str,
        product: str | None = None,
        loan: str | None = None,
    ) -> None:
        assert fen > 0
        self._custody += 1
        line = (
            f'{{"type":"custody_txn","txn_id":"CT{self._custody:09d}","ts":{self._ts(t)},'
            f'"bank_id":"{bank}","platform_id":"{platform}","debit_account":"{debit}",'
            f'"credit_account":"{credit}","amount":{self._amount(fen)},"purpose":"{purpose}"'
        )
        if product is not None:
            line += f',"product_id":"{product}"'
        if loan is not None:
            line += f',"loan_id":"{loan}"'
        self.push(t, line + "}", True)

    def clearing(
        self,
        t: int,
        system: str,
        initiator: str,
        payer: Party,
        payee: Party,
        fen: int,
        purpose: str,
    ) -> None:
        assert fen > 0
        self._clearing += 1
        line = (
            f'{{"type":"clearing_txn","txn_id":"CL{self._clearing:09d}","ts":{self._ts(t)},'
            f'"system":"{system}","initiator_id":"{initiator}","payer_bank":"{payer.bank_id}",'
            f'"payer_account":"{payer.account_id}","payee_bank":"{payee.bank_id}",'
            f'"payee_account":"{payee.account_id}","amount":{self._amount(fen)},"purpose":"{purpose}"}}'
        )
        self.push(t, line, True)

    def balance(self, t: int, account: str, fen: int) -> None:
        line = (
            f'{{"type":"balance","account_id":"{account}","as_of":"{self.clock.iso(t)}",'
            f'"balance":"{yuan_text(fen)}"}}'
        )
        self.push(t, line, False)

    def report(self, day: int, institution: str, fen: int) -> None:
        """The report for ``day``, published at 01:00 the next day."""
        line = (
            f'{{"type":"reserve_report","institution_id":"{institution}",'
            f'"as_of":"{self.clock.date(day)}","client_liabilities":"{yuan_text(fen)}"}}'
        )
        self.push((day + 1) * DAY + HOUR, line, False)


# --------------------------------------------------------------------------- platforms


@dataclass(slots=True)
class PlannedLoan:
    """A loan and how it is funded: by lender ``tickets`` or out of a controlled ``source``."""

    loan_id: str
    borrower: Member
    principal: int
    term: int
    rate_bp: int
    issued_t: int
    tickets: list[tuple[int, int]]  # (lender index, fen)
    source: str | None = None  # the controlled account that pays a pool loan out
    # The risk reserve pays the lenders at maturity: "default" for a borrower
    # who does not repay, "collect" to pass on what the borrower repaid into it.
    reserve_payout: str | None = None
    # Where the borrower sends the money lent, instead of its own bank account.
    payee: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    lenders: int
    loans_per_day: tuple[int, int]
    tickets: tuple[int, int]
    ticket_hundreds: tuple[int, int]  # one ticket, in hundreds of yuan


BUSY = Profile(lenders=400, loans_per_day=(9, 15), tickets=(4, 12), ticket_hundreds=(20, 600))
LARGE = Profile(lenders=250, loans_per_day=(6, 10), tickets=(4, 10), ticket_hundreds=(20, 600))
SMALL = Profile(lenders=120, loans_per_day=(2, 5), tickets=(3, 8), ticket_hundreds=(10, 400))
TINY = Profile(lenders=60, loans_per_day=(1, 3), tickets=(3, 6), ticket_hundreds=(10, 300))

Action = tuple[int, Callable[..., None], tuple]  # (time, method, arguments)


class Platform:
    """One P2P platform. Planning fills ``actions`` (day by day, whatever the
    plan fixes in advance); :meth:`run_day` carries them out, adding the
    lenders' own comings and goings, and keeps every sub-account solvent."""

    def __init__(
        self,
        pid: str,
        look: str,
        profile: Profile,
        reg: Registry,
        bank: str,
        days: int,
        rng: random.Random,
    ) -> None:
        self.pid, self.look, self.reg, self.bank, self.days = pid, look, reg, bank, days
        self.profile = profile
        self.brand = reg.names.brand()
        self.custody_account = f"ACC-{pid}-CUSTODY"
        self.own_account = f"ACC-{pid}-OWN"
        for account, role in (
            (self.custody_account, "platform_custody"),
            (self.own_account, "platform_own"),
            (f"ACC-{pid}-RISK", "risk_reserve"),
        ):
            reg.account(account, pid, bank, role, pid)
        self.related: list[tuple[str, str, int | None]] = [
            (reg.person_entity(), "shareholder", rng.randint(35, 70)),
            (reg.person_entity(), "controller", None),
        ]
        self.products = {term: f"PRD-{pid}-{term:03d}" for term in PRODUCT_RATES_BP}
        for term, product_id in self.products.items():
            reg.product(product_id, pid, term, PRODUCT_RATES_BP[term] + rng.randint(-30, 30))
        self.lenders = [
            self._member("lender_sub", reg.person(), n) for n in range(1, profile.lenders + 1)
        ]
        self.balance = [0] * profile.lenders  # lender sub-account balances
        self.borrowers: list[Member] = []
        self.own_balance = 0
        self.loan_count = 0
        self.lender_funded = [0] * days  # principal funded by lenders, per day
        self.actions: list[list[Action]] = [[] for _ in range(days)]
        self.heart_accounts: list[str] = []  # named in the truth for a violator

    def register(self) -> None:
        """Write the platform's entity record, once its related parties are known."""
        name = f"{self.brand}网络借贷信息中介服务有限公司"
        self.reg.entity(self.pid, name, "p2p_platform", ("p2p_registered",), tuple(self.related))

    def _member(self, role: str, party: Party, n: int) -> Member:
        """Open sub-account ``n`` (``lender_sub`` or ``borrower_sub``) for ``party``."""
        sub = f"ACC-{self.pid}-{role[0].upper()}{n:04d}"
        self.reg.account(sub, party.entity_id, self.bank, role, self.pid)
        return Member(party.entity_id, sub, party.account_id)

    def at(self, t: int, method: Callable[..., None], *args: object) -> None:
        """Plan ``method(sink, rng, t, *args)`` for time ``t``."""
        if t < self.days * DAY:
            self.actions[t // DAY].append((t, method, args))

    # ---- planning

    def plan_honest(self, rng: random.Random) -> None:
        """The everyday book: each loan funded by one product at least as long as the loan."""
        p = self.profile
        for day in range(self.days):
            for _ in range(rng.randint(*p.loans_per_day)):
                term = rng.choices(LOAN_TERMS, LOAN_TERM_WEIGHTS)[0]
                product = self.products[rng.choice([t for t in self.products if t >= term])]
                tickets = rng.randint(*p.tickets)
                funding = [
                    (rng.randint(*p.ticket_hundreds) * HUNDRED, product) for _ in range(tickets)
                ]
                self.plan_loan(rng, day, term, funding)

    def plan_loan(
        self,
        rng: random.Random,
        day: int,
        term: int,
        funding: list[tuple[int, str]],
        lenders: list[int] | None = None,
        borrower: Member | None = None,
    ) -> PlannedLoan:
        """A loan of ``term`` days funded on ``day`` by lender tickets ``(fen, product id)``,
        from ``lenders`` (by default drawn at random) to ``borrower`` (by default any)."""
        if lenders is None:
            lenders = rng.sample(range(len(self.lenders)), len(funding))
        tickets = [(lender, fen) for lender, (fen, _) in zip(lenders, funding, strict=True)]
        t = _at(rng, day, 8, 19)
        loan = self._loan(rng, term, sum(fen for _, fen in tickets), t, tickets, borrower=borrower)
        for lender, (fen, product) in zip(lenders, funding, strict=True):
            t += rng.randint(20, 600)
            sub = loan.borrower.sub_account
            self.at(t, self._invest, lender, fen, sub, "invest", product, loan.loan_id)
        self.at(t + 300, self._settle, loan)
        self.lender_funded[day] += loan.principal
        return loan

    def plan_pool_loan(self, rng: random.Random, t: int, fen: int, source: str) -> None:
        """A 30-day loan of ``fen`` paid out of the controlled account ``source`` at ``t``."""
        loan = self._loan(rng, 30, fen, t, [], source)
        self.at(t, self._settle, loan)

    def _loan(
        self,
        rng: random.Random,
        term: int,
        principal: int,
        first_t: int,
        tickets: list[tuple[int, int]],
        source: str | None = None,
        borrower: Member | None = None,
    ) -> PlannedLoan:
        """Register a loan issued shortly before ``first_t`` and plan its repayments."""
        if borrower is None:
            borrower, purpose = self._borrower(rng)
        else:
            purpose = "consumer" if borrower.entity_id.startswith("U") else "business"
        self.loan_count += 1
        rate_bp = max(PRODUCT_RATES_BP.values()) + rng.randint(50, 550)
        loan = PlannedLoan(
            f"LN-{self.pid}-{self.loan_count:05d}",
            borrower,
            principal,
            term,
            rate_bp,
            first_t - rng.randint(60, 3600),
            tickets,
            source,
        )
        self.reg.loan(loan, self.pid, purpose)
        # Interest every 30 days, the principal and the last interest at maturity.
        day, interest_only = first_t // DAY, (term - 1) // 30
        for k in range(1, interest_only + 1):
            self.at(_at(rng, day + 30 * k, 9, 18), self._repay, loan, False, 30)
        self.at(_at(rng, day + term, 9, 18), self._repay, loan, True, term - 30 * interest_only)
        return loan

    def _borrower(self, rng: random.Random) -> tuple[Member, str]:
        """A borrower (now and then a returning one) and the loan purpose that fits it."""
        if self.borrowers and rng.random() < 0.3:
            member = rng.choice(self.borrowers)
        else:
            party = self.reg.person() if rng.random() < 0.7 else self.reg.company()
            member = self._member("borrower_sub", party, len(self.borrowers) + 1)
            self.borrowers.append(member)
        return member, "consumer" if member.entity_id.startswith("U") else "business"

    # ---- running

    def run_day(self, day: int, sink: EventSink, rng: random.Random) -> None:
        actions, self.actions[day] = self.actions[day], []
        for _ in range(rng.randint(0, len(self.lenders) // 40)):
            actions.append(
                (_at(rng, day, 8, 22), self._lender_withdraw, (rng.randrange(len(self.lenders)),))
            )
        if rng.random() < 0.25:
            actions.append(
                (_at(rng, day, 10, 17), self._subsidy, (rng.randrange(len(self.lenders)),))
            )
        actions.sort(key=itemgetter(0))
        for t, method, args in actions:
            method(sink, rng, t, *args)

    def _txn(
        self,
        sink: EventSink,
        t: int,
        debit: str,
        credit: str,
        fen: int,
        purpose: str,
        product: str | None = None,
        loan: str | None = None,
    ) -> None:
        sink.custody(t, self.bank, self.pid, debit, credit, fen, purpose, product, loan)

    def _invest(
        self,
        sink: EventSink,
        rng: random.Random,
        t: int,
        lender: int,
        fen: int,
        credit: str,
        purpose: str,
        product: str | None,
        loan: str | None,
    ) -> None:
        """A lender pays ``fen`` out of its sub-account, recharging it first when short."""
        member, short = self.lenders[lender], fen - self.balance[lender]
        if short > 0:  # whole thousands of yuan, sometimes a little more than needed
            top_up = -(-short // THOUSAND) * THOUSAND + rng.randint(0, 5) * THOUSAND
            self._txn(
                sink,
                t - rng.randint(60, 1800),
                member.outside_account,
                member.sub_account,
                top_up,
                "recharge",
            )
            self.balance[lender] += top_up
        self.balance[lender] -= fen
        self._txn(sink, t, member.sub_account, credit, fen, purpose, product, loan)

    def _settle(self, sink: EventSink, rng: random.Random, t: int, loan: PlannedLoan) -> None:
        """Pay a pool loan out, or take the fee of a lender-funded one; the borrower withdraws."""
        sub, net = loan.borrower.sub_account, loan.principal
        if loan.source is not None:
            self._txn(sink, t, loan.source, sub, loan.principal, "disburse", loan=loan.loan_id)
        else:
            fee = loan.principal * rng.randint(100, 200) // 10_000  # 1-2 %
            self._txn(sink, t, sub, self.own_account, fee, "fee", loan=loan.loan_id)
            self.own_balance += fee
            net -= fee
        payee = loan.borrower.outside_account if loan.payee is None else loan.payee
        self._txn(sink, t + rng.randint(300, 1800), sub, payee, net, "withdraw")

    def _repay(
        self,
        sink: EventSink,
        rng: random.Random,
        t: int,
        loan: PlannedLoan,
        final: bool,
        period: int,
    ) -> None:
        """The borrower recharges, then pays each lender (or the pool) principal and interest."""

        def due(fen: int) -> int:
            return (fen if final else 0) + fen * loan.rate_bp * period // (10_000 * 365)

        payees = [
            (self.lenders[lender].sub_account, lender, due(fen)) for lender, fen in loan.tickets
        ]
        if loan.source is not None:
            payees = [(loan.source, -1, due(loan.principal))]
        if loan.reserve_payout is not None:
            self._reserve_payout(sink, rng, t, loan, payees)
            return
        sub = loan.borrower.sub_account
        total = sum(fen for _, _, fen in payees)
        self._txn(
            sink, t - rng.randint(300, 3600), loan.borrower.outside_account, sub, total, "recharge"
        )
        for i, (account, lender, fen) in enumerate(payees):
            self._txn(sink, t + 2 * i, sub, account, fen, "repay", loan=loan.loan_id)
            if lender >= 0:
                self.balance[lender] += fen

    def _reserve_payout(
        self,
        sink: EventSink,
        rng: random.Random,
        t: int,
        loan: PlannedLoan,
        payees: list[tuple[str, int, int]],
    ) -> None:
        """The risk reserve pays the lenders of ``loan`` what they are due: out of
        the platform's own bank money for a borrower who does not repay
        (``default``), or passing on what the borrower repaid into it (``collect``)."""
        risk, total = f"ACC-{self.pid}-RISK", sum(fen for _, _, fen in payees)
        if loan.reserve_payout == "default":
            bank = f"ACC-{self.pid}-BANK"
            self._txn(sink, t - rng.randint(300, 3600), bank, risk, total, "transfer")
        else:
            sub = loan.borrower.sub_account
            self._txn(
                sink,
                t - rng.randint(1800, 3600),
                loan.borrower.outside_account,
                sub,
                total,
                "recharge",
            )
            self._txn(
                sink, t - rng.randint(300, 1200), sub, risk, total, "repay", loan=loan.loan_id
            )
        for i, (account, lender, fen) in enumerate(payees):
            self._txn(sink, t + 2 * i, risk, account, fen, "repay", loan=loan.loan_id)
            if lender >= 0:
                self.balance[lender] += fen

    def _salary(self, sink: EventSink, rng: random.Random, t: int, account: str) -> None:
        """The platform pays an executive's salary out of its own (fee) money."""
        fen = min(rng.randint(30, 80) * HUNDRED, self.own_balance // HUNDRED * HUNDRED)
        if fen > 0:
            self._txn(sink, t, self.own_account, account, fen, "transfer")
            self.own_balance -= fen

    def _lender_withdraw(self, sink: EventSink, rng: random.Random, t: int, lender: int) -> None:
        fen = self.balance[lender] * rng.randint(30, 100) // 100 // FEN * FEN
        if fen >= 100 * FEN:
            member = self.lenders[lender]
            self._txn(sink, t, member.sub_account, member.outside_account, fen, "withdraw")
            self.balance[lender] -= fen

    def _subsidy(self, sink: EventSink, rng: random.Random, t: int, lender: int) -> None:
        fen = rng.randint(5, 50) * FEN
        if self.own_balance >= fen:
            self._txn(sink, t, self.own_account, self.lenders[lender].sub_account, fen, "subsidy")
            self.own_balance -= fen
            self.balance[lender] += fen

    def _transfer(
        self,
        sink: EventSink,
        rng: random.Random,
        t: int,
        debit: str,
        credit: str,
        fen: int,
        purpose: str = "transfer",
    ) -> None:
        self._txn(sink, t, debit, credit, fen, purpose)


# --------------------------------------------------------------------------- platform patterns


def _plan_payouts(
    p: Platform, rng: random.Random, day: int, target: int, source: str, from_hour: float
) -> None:
    """Pay about ``target`` fen out of ``source`` to new borrowers, 60,000-150,000 yuan a loan."""
    paid = 0
    while target - paid >= 60_000 * FEN:
        fen = min(rng.randint(600, 1500) * HUNDRED, (target - paid) // HUNDRED * HUNDRED)
        p.plan_pool_loan(rng, _at(rng, day, from_hour, 20), fen, source)
        paid += fen


def plan_pool_direct(p: Platform, rng: random.Random) -> None:
    """About 40 lenders invest into the custody master over three days; 80 % is paid out."""
    p.heart_accounts = [p.custody_account]
    first = rng.randint(1, max(1, p.days - 10))
    lenders = rng.sample(range(len(p.lenders)), rng.randint(38, 44))
    for k in range(3):
        day, inflow = first + k, 0
        for lender in lenders[k::3]:
            fen = rng.randint(300, 800) * HUNDRED
            p.at(
                _at(rng, day, 9, 15),
                p._invest,
                lender,
                fen,
                p.custody_account,
                "invest",
                None,
                None,
            )
            inflow += fen
        _plan_payouts(p, rng, day, inflow * 80 // 100, p.custody_account, from_hour=15.5)


def plan_pool_via_related(p: Platform, rng: random.Random) -> None:
    """About 30 lenders pay an affiliate, which forwards to the platform; 75 % is paid out."""
    company = p.reg.company(name=f"{rng.choice(_CITIES)}{p.brand}商务咨询有限公司")
    p.related.append((company.entity_id, "affiliate", 60))
    affiliate = company.account_id
    p.heart_accounts = [affiliate, p.own_account]
    first = rng.randint(1, p.days - 3)
    lenders = rng.sample(range(len(p.lenders)), rng.randint(28, 34))
    for k in range(3):
        day, inflow = first + k, 0
        for lender in lenders[k::3]:
            fen, t = rng.randint(550, 950) * HUNDRED, _at(rng, day, 9, 13)
            if rng.random() < 0.25:  # straight from the lender's bank account
                p.at(t, p._transfer, p.lenders[lender].outside_account, affiliate, fen)
            else:
                purpose = rng.choice(("invest", "transfer"))
                p.at(t, p._invest, lender, fen, affiliate, purpose, None, None)
            inflow += fen
        p.at(_at(rng, day, 13.5, 14.5), p._transfer, affiliate, p.own_account, inflow)
        _plan_payouts(p, rng, day, inflow * 75 // 100, p.own_account, from_hour=15)


def plan_pool_idle(p: Platform, rng: random.Random) -> None:
    """Four to six lenders invest 4,000-9,000 yuan each into the custody master; it stays."""
    p.heart_accounts = [p.custody_account]
    day = rng.randint(0, max(0, p.days - 9))
    for lender in rng.sample(range(len(p.lenders)), rng.randint(4, 6)):
        fen = rng.randint(40, 90) * HUNDRED
        p.at(_at(rng, day, 9, 18), p._invest, lender, fen, p.custody_account, "invest", None, None)


def plan_mismatch_direct(p: Platform, rng: random.Random) -> None:
    """Four or five 360-day loans of 160,000-240,000 yuan, each funded by the 30-day product."""
    for day in sorted(rng.sample(range(1, max(6, p.days // 2)), rng.randint(4, 5))):
        total = rng.randint(1600, 2400) * HUNDRED
        funding = [(fen, p.products[30]) for fen in _split(rng, total, rng.randint(4, 8))]
        p.heart_accounts.append(p.plan_loan(rng, day, 360, funding).borrower.sub_account)


def _first_day_with_book(p: Platform, fen: int) -> int:
    """The first day that starts with at least ``fen`` of lender-funded loans behind it."""
    funded = 0
    for day in range(p.days - 1):
        funded += p.lender_funded[day]
        if funded >= fen:
            return day + 1
    return p.days - 1


def plan_term_split(p: Platform, rng: random.Random) -> None:
    """After a matched book of 6,000,000 yuan, one 180-day loan of about 300,000 yuan,
    half from the 30-day and half from the 60-day product."""
    day = _first_day_with_book(p, 6_000_000 * FEN)
    total = rng.randint(2800, 3200) * HUNDRED
    half = total // 2 // HUNDRED * HUNDRED
    funding = [(fen, p.products[30]) for fen in _split(rng, half, rng.randint(3, 5))]
    funding += [(fen, p.products[60]) for fen in _split(rng, total - half, rng.randint(3, 5))]
    rng.shuffle(funding)
    p.heart_accounts.append(p.plan_loan(rng, day, 180, funding).borrower.sub_account)


def plan_below_threshold(p: Platform, rng: random.Random) -> None:
    """After a matched book of 6,000,000 yuan, two or three 120-day loans on the 90-day product,
    60,000-100,000 yuan each: at most 300,000 yuan of mismatch, under 5 % of the book."""
    day = _first_day_with_book(p, 6_000_000 * FEN)
    for _ in range(rng.randint(2, 3)):
        total = rng.randint(600, 1000) * HUNDRED
        funding = [(fen, p.products[90]) for fen in _split(rng, total, rng.randint(2, 5))]
        p.plan_loan(rng, day, 120, funding)


def plan_self_financing_controller(p: Platform, rng: random.Random) -> None:
    """The controller's company (70 % held by the controller) takes lenders' money:
    six to eight lenders invest 30,000-60,000 yuan each, with no loan, into the
    custody master, which passes it all to the company's account that afternoon."""
    controller = next(eid for eid, relation, _ in p.related if relation == "controller")
    company = p.reg.company(
        name=f"{rng.choice(_CITIES)}{p.brand}实业有限公司",
        related=((controller, "shareholder", 70),),
    )
    p.heart_accounts = [company.account_id]
    day, total = rng.randint(1, p.days - 2), 0
    for lender in rng.sample(range(len(p.lenders)), rng.randint(6, 8)):
        fen = rng.randint(300, 600) * HUNDRED
        t = _at(rng, day, 9, 12)
        p.at(t, p._invest, lender, fen, p.custody_account, "invest", None, None)
        total += fen
    p.at(_at(rng, day, 13, 15), p._transfer, p.custody_account, company.account_id, total)


def _reserve_loans(p: Platform, rng: random.Random, mode: str, count: int) -> list[PlannedLoan]:
    """``count`` 7-day loans of 15,000-75,000 yuan whose lenders the risk reserve pays."""
    loans = []
    for day in sorted(rng.sample(range(p.days - 7), min(count, p.days - 7))):
        funding = [
            (rng.randint(50, 150) * HUNDRED, p.products[30]) for _ in range(rng.randint(3, 5))
        ]
        loan = p.plan_loan(rng, day, 7, funding)
        loan.reserve_payout = mode
        loans.append(loan)
    return loans


def plan_guaranteed_payout(p: Platform, rng: random.Random) -> None:
    """Three 7-day loans whose borrowers never repay: at maturity the platform moves
    money from its own bank account into its risk reserve and pays the lenders
    their principal and interest from there (保本保息)."""
    p.reg.account(f"ACC-{p.pid}-BANK", p.pid, p.bank, "corporate")
    p.heart_accounts = [f"ACC-{p.pid}-RISK"]
    _reserve_loans(p, rng, "default", 3)


def plan_excessive_rate(p: Platform, rng: random.Random) -> None:
    """A 90-day product promising 18 % a year (its peers: 6.7-7.8 %), more than
    any loan pays, funding six loans of 30 to 90 days."""
    product = f"PRD-{p.pid}-HI"
    p.reg.product(product, p.pid, 90, 1800)
    for day in sorted(rng.sample(range(p.days - 1), 6)):
        term = rng.choice((30, 60, 90))
        funding = [
            (rng.randint(*p.profile.ticket_hundreds) * HUNDRED, product)
            for _ in range(rng.randint(3, 6))
        ]
        p.heart_accounts.append(p.plan_loan(rng, day, term, funding).borrower.sub_account)


def plan_related_lookalike(p: Platform, rng: random.Random) -> None:
    """Near misses of the three rules above: an executive paid a salary out of the
    platform's fee money every ten days; two 7-day loans repaid into the risk
    reserve, which passes the money on to the lenders; a 90-day promotion
    product at 9 % (1.5 points above its peers, inside the margin) funding loans
    that pay more."""
    executive = p.reg.person()
    p.related.append((executive.entity_id, "executive", None))
    for day in range(9, p.days, 10):
        p.at(_at(rng, day, 16, 18), p._salary, executive.account_id)
    _reserve_loans(p, rng, "collect", 2)
    product = f"PRD-{p.pid}-PROMO"
    p.reg.product(product, p.pid, 90, 900)
    for day in sorted(rng.sample(range(p.days - 1), 4)):
        funding = [(rng.randint(*p.profile.ticket_hundreds) * HUNDRED, product) for _ in range(3)]
        p.plan_loan(rng, day, rng.choice((60, 90)), funding)


# Private products: 私募 may be sold to at most 200 qualified investors, from 1,000,000 yuan each.
PRIVATE_MIN_TICKET = 1_000_000 * FEN
PRIVATE = Profile(lenders=240, loans_per_day=(1, 3), tickets=(3, 6), ticket_hundreds=(10, 300))


def _developer(p: Platform, rng: random.Random) -> Party:
    """A property developer (kind ``real_estate``) with a corporate account at a random bank."""
    entity_id = f"RE-{p.pid}"
    brand = rng.choice(_BRAND) + rng.choice(_BRAND)
    p.reg.entity(entity_id, f"{rng.choice(_CITIES)}{brand}房地产开发有限公司", "real_estate")
    bank = rng.choice(p.reg.banks)
    p.reg.account(f"ACC-{entity_id}", entity_id, bank, "corporate")
    return Party(entity_id, f"ACC-{entity_id}", bank)


def _first_time_borrower(p: Platform) -> Member:
    """A new borrower who is a person. Planned after the everyday book, so no
    other loan of the platform goes to it."""
    member = p._member("borrower_sub", p.reg.person(), len(p.borrowers) + 1)
    p.borrowers.append(member)
    return member


def plan_down_payment_to_developer(p: Platform, rng: random.Random) -> None:
    """A 180-day consumer loan of 300,000-600,000 yuan from six to ten lenders on the
    180-day product; the borrower's sub-account pays the money lent, less the fee,
    straight to a property developer's account (首付贷)."""
    developer = _developer(p, rng)
    borrower = _first_time_borrower(p)
    total = rng.randint(3000, 6000) * HUNDRED
    funding = [(fen, p.products[180]) for fen in _split(rng, total, rng.randint(6, 10))]
    loan = p.plan_loan(rng, rng.randint(1, p.days - 2), 180, funding, borrower=borrower)
    loan.payee = developer.account_id
    p.heart_accounts = [borrower.sub_account, developer.account_id]


def plan_home_with_own_money(p: Platform, rng: random.Random) -> None:
    """A 7-day loan of 60,000-150,000 yuan to a new borrower, withdrawn to the
    borrower's bank account and repaid at maturity; a day or two later the
    borrower recharges 100,000-300,000 yuan of their own and pays a property
    developer from the sub-account. The loan money went back with the repayment."""
    developer = _developer(p, rng)
    borrower = _first_time_borrower(p)
    day = rng.randint(0, max(0, p.days - 10))
    total = rng.randint(600, 1500) * HUNDRED
    funding = [(fen, p.products[30]) for fen in _split(rng, total, rng.randint(3, 6))]
    p.plan_loan(rng, day, 7, funding, borrower=borrower)
    fen, t = rng.randint(1000, 3000) * HUNDRED, _at(rng, day + 7 + rng.randint(1, 2), 10, 16)
    sub = borrower.sub_account
    p.at(t, p._transfer, borrower.outside_account, sub, fen, "recharge")
    p.at(t + rng.randint(600, 3600), p._transfer, sub, developer.account_id, fen, "withdraw")


def _private_product(p: Platform) -> str:
    """A 360-day private product with a 1,000,000-yuan minimum ticket, a little under
    its public peers' rate."""
    product = f"PRD-{p.pid}-PRIV"
    rate = PRODUCT_RATES_BP[360] - 50
    p.reg.product(product, p.pid, 360, rate, PRIVATE_MIN_TICKET, private=True)
    return product


def _plan_private_loans(
    p: Platform, rng: random.Random, product: str, tickets: list[tuple[int, int]], per_loan: int
) -> None:
    """Loans of 180 or 360 days on ``product``, ``per_loan`` of the ``(lender, fen)``
    tickets each, on days drawn across the month."""
    groups = [tickets[i : i + per_loan] for i in range(0, len(tickets), per_loan)]
    days = sorted(rng.choices(range(1, p.days - 1), k=len(groups)))
    for day, group in zip(days, groups, strict=True):
        funding = [(fen, product) for _, fen in group]
        p.plan_loan(rng, day, rng.choice((180, 360)), funding, [lender for lender, _ in group])


def plan_private_split(p: Platform, rng: random.Random) -> None:
    """A private product cut into tickets of 10,000-100,000 yuan (its minimum is
    1,000,000) and sold to 205-225 distinct lenders, about 20 to a loan (私募拆分)."""
    product = _private_product(p)
    lenders = rng.sample(range(len(p.lenders)), rng.randint(205, 225))
    tickets = [(lender, rng.randint(100, 1000) * HUNDRED) for lender in lenders]
    _plan_private_loans(p, rng, product, tickets, 20)
    p.heart_accounts = [p.lenders[lender].sub_account for lender in sorted(lenders)[:5]]


def plan_private_at_min_ticket(p: Platform, rng: random.Random) -> None:
    """A private product sold to 150 distinct lenders at exactly its minimum ticket,
    ten to a loan: inside both limits."""
    product = _private_product(p)
    lenders = rng.sample(range(len(p.lenders)), 150)
    _plan_private_loans(p, rng, product, [(lender, PRIVATE_MIN_TICKET) for lender in lenders], 10)


PLATFORM_PLANS: dict[str, tuple[Profile, Callable[[Platform, random.Random], None] | None]] = {
    "busy_platform": (BUSY, None),
    "mismatch_below_threshold": (LARGE, plan_below_threshold),
    "pool_direct": (SMALL, plan_pool_direct),
    "pool_via_related": (SMALL, plan_pool_via_related),
    "pool_idle": (SMALL, plan_pool_idle),
    "mismatch_direct": (SMALL, plan_mismatch_direct),
    "term_split": (LARGE, plan_term_split),
    "self_financing_controller": (TINY, plan_self_financing_controller),
    "guaranteed_payout": (TINY, plan_guaranteed_payout),
    "excessive_rate": (TINY, plan_excessive_rate),
    "related_party_lookalike": (TINY, plan_related_lookalike),
    "down_payment_to_developer": (TINY, plan_down_payment_to_developer),
    "home_with_own_money": (TINY, plan_home_with_own_money),
    "private_split": (PRIVATE, plan_private_split),
    "private_at_min_ticket": (PRIVATE, plan_private_at_min_ticket),
}


# --------------------------------------------------------------------------- payment institutions

# Client payments: (cumulative share, purpose, counterparty, yuan from, yuan to, clearing systems).
# Money in and money out balance on average, so reserves drift but do not run dry.
PAYMENT_MIX = (
    (0.45, "topup", "client", 50, 20_000, ("NUCC",)),
    (0.78, "settlement", "merchant", 100, 25_000, ("CUP", "NUCC", "CNAPS")),
    (0.85, "refund", "client", 10, 2_000, ("NUCC", "CUP")),
    (1.00, "withdraw", "client", 100, 5_000, ("NUCC", "CNAPS")),
)


class Institution:
    """A payment institution: two reserve accounts, its clients and merchants, a daily report."""

    CLIENTS = 300
    MERCHANTS = 30
    PAYMENTS_PER_DAY = (120, 180)
    # (clients, merchants, payments a day) of the smaller businesses
    SMALL = (80, 10, (30, 50))

    def __init__(
        self, iid: str, look: str, reg: Registry, banks: Banks, days: int, rng: random.Random
    ) -> None:
        self.iid, self.look = iid, look
        small = look in ("cross_bank_settlement", "cnaps_rebalance", "unlicensed_payment")
        clients, merchants, self.payments_per_day = (
            self.SMALL if small else (self.CLIENTS, self.MERCHANTS, self.PAYMENTS_PER_DAY)
        )
        # Without a payment licence there are no reserve accounts: clients' money
        # sits in the business's own corporate accounts.
        self.licensed = look != "unlicensed_payment"
        bank_a, bank_b = rng.sample(banks.custody, 2)
        if look == "reserve_unlicensed_bank":
            bank_b = rng.choice(banks.plain)
        self.reserves = [Party(iid, f"ACC-{iid}-R1", bank_a), Party(iid, f"ACC-{iid}-R2", bank_b)]
        self.operating = Party(iid, f"ACC-{iid}-OP", bank_a)
        for reserve in self.reserves:
            role = "client_reserve" if self.licensed else "corporate"
            reg.account(reserve.account_id, iid, reserve.bank_id, role)
        reg.account(self.operating.account_id, iid, bank_a, "operating")
        # R1 holds most of the money, so the shortfall pattern can divert from it alone.
        self.opening = [
            rng.randint(2000, 5000) * 10_000 * FEN + rng.randrange(10_000 * FEN),
            rng.randint(500, 1500) * 10_000 * FEN + rng.randrange(10_000 * FEN),
        ]
        self.balance = list(self.opening)
        self.clients = [reg.person() for _ in range(clients)]
        self.merchants = [
            reg.company(rng.choice(("settlement", "corporate"))) for _ in range(merchants)
        ]
        self.diverted = 0
        self.interest = 0
        self.actions: dict[int, list[Action]] = {}
        if look == "reserve_shortfall":
            for day in rng.sample(range(2, days - 2), 3):
                self.actions[day] = [(_at(rng, day, 11, 15), self._divert, ())]
        elif look == "reserve_interest":
            day = min(
                20, days - 2
            )  # Chinese banks settle deposit interest on the 20th of a quarter's last month
            self.actions[day] = [(_at(rng, day, 9, 10), self._pay_interest, ())]
        elif look in ("cross_bank_settlement", "cnaps_rebalance"):
            # Every day one or two moves from R1 to R2, to pay the merchants banking at R2's
            # bank: outside the clearing systems (变相跨行清算), or the honest way, over CNAPS.
            system = "direct" if look == "cross_bank_settlement" else "CNAPS"
            for day in range(1, days):
                self.actions[day] = [
                    (_at(rng, day, 9, 17), self._rebalance, (system,))
                    for _ in range(rng.randint(1, 2))
                ]
        name = f"{reg.names.brand()}{rng.choice(('支付', '支付科技', '网络支付'))}有限公司"
        related = ((reg.person_entity(), "shareholder", rng.randint(40, 80)),)
        if self.licensed:
            reg.entity(iid, name, "payment_institution", ("payment",), related)
        else:
            reg.entity(iid, name, "company", (), related)

    @property
    def heart_accounts(self) -> list[str]:
        if self.look == "cross_bank_settlement":
            return [reserve.account_id for reserve in self.reserves]
        return [self.reserves[1 if self.look == "reserve_unlicensed_bank" else 0].account_id]

    def open(self, sink: EventSink) -> None:
        for reserve, fen in zip(self.reserves, self.opening, strict=True):
            sink.balance(0, reserve.account_id, fen)

    def liabilities(self) -> int:
        """What the institution reports it owes its clients at the end of the day."""
        total = sum(self.balance)
        if self.look == "near_threshold":  # 0.3 % more than it holds
            return total + (total * 3 + 999) // 1000
        if self.look == "reserve_shortfall":  # the clients are still owed what was diverted
            return total + self.diverted
        if self.look == "reserve_interest":  # the interest is the institution's, not the clients'
            return total - self.interest
        return total

    def run_day(self, day: int, sink: EventSink, rng: random.Random) -> None:
        actions: list[Action] = [
            (_at(rng, day, 7, 23.5), self._client_payment, ())
            for _ in range(rng.randint(*self.payments_per_day))
        ]
        actions.extend(self.actions.get(day, ()))
        actions.sort(key=itemgetter(0))
        for t, method, args in actions:
            method(sink, rng, t, *args)
        if self.licensed:  # an unlicensed business reports to no one
            sink.report(day, self.iid, self.liabilities())

    def _client_payment(self, sink: EventSink, rng: random.Random, t: int) -> None:
        """One top-up into, or one payment out of, a reserve account (never overdrawn)."""
        r = rng.random()
        _, purpose, counterparty, low, high, systems = next(m for m in PAYMENT_MIX if r < m[0])
        party = rng.choice(self.merchants if counterparty == "merchant" else self.clients)
        fen, system = rng.randint(low * FEN, high * FEN), rng.choice(systems)
        i = 0 if rng.random() < 0.7 else 1
        if purpose == "topup":
            sink.clearing(t, system, self.iid, party, self.reserves[i], fen, purpose)
            self.balance[i] += fen
            return
        if self.balance[i] < fen:
            i = 1 - i
        if self.balance[i] >= fen:
            sink.clearing(t, system, self.iid, self.reserves[i], party, fen, purpose)
            self.balance[i] -= fen

    def _rebalance(self, sink: EventSink, rng: random.Random, t: int, system: str) -> None:
        """Move 80,000-250,000 yuan from reserve account R1 to R2, at another bank."""
        fen = rng.randint(800, 2500) * HUNDRED
        if self.balance[0] >= fen:
            sink.clearing(t, system, self.iid, self.reserves[0], self.reserves[1], fen, "transfer")
            self.balance[0] -= fen
            self.balance[1] += fen

    def _divert(self, sink: EventSink, rng: random.Random, t: int) -> None:
        """Move 3-10 % of the reserves to the institution's own operating account."""
        fen = min(sum(self.balance) * rng.randint(300, 1000) // 10_000, self.balance[0] // 2)
        sink.clearing(t, "internal", self.iid, self.reserves[0], self.operating, fen, "transfer")
        self.balance[0] -= fen
        self.diverted += fen

    def _pay_interest(self, sink: EventSink, rng: random.Random, t: int) -> None:
        """The custody bank credits a quarter's demand-deposit interest (0.35 % a year)."""
        bank = self.reserves[0].bank_id
        fen = self.balance[0] * 35 * 90 // (10_000 * 360)
        payer = Party(bank, f"ACC-{bank}-OP", bank)
        sink.clearing(t, "internal", bank, payer, self.reserves[0], fen, "interest")
        self.balance[0] += fen
        self.interest += fen


def register_fund_seller(reg: Registry, n: int) -> Party:
    """A fund distributor (基金销售) holding the ``fund_sales`` licence: a restricted
    word in its name, and the licence that allows it. It is paid as a merchant."""
    entity_id = f"AM{n:03d}"
    name = f"{reg.names.brand()}基金销售有限公司"
    reg.entity(entity_id, name, "asset_manager", ("fund_sales",))
    bank = reg.rng.choice(reg.banks)
    reg.account(f"ACC-{entity_id}-STL", entity_id, bank, "settlement")
    return Party(entity_id, f"ACC-{entity_id}-STL", bank)


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    registry: Registry
    platforms: list[Platform] = field(default_factory=list)
    institutions: list[Institution] = field(default_factory=list)
    # Honest subjects that are neither platforms nor institutions: truth entries.
    other_honest: list[dict] = field(default_factory=list)

    def actors(self) -> list[Platform | Institution]:
        return [*self.platforms, *self.institutions]

    def truth_lists(self) -> tuple[list[dict], list[dict]]:
        """(violators, honest), platforms first, each in subject id order."""
        detector = {pattern: det for det, pattern in PLATFORM_VIOLATIONS + INSTITUTION_VIOLATIONS}
        also: dict[str, list[str]] = {}
        for pattern, det in ALSO_DETECTED:
            also.setdefault(pattern, []).append(det)
        subjects = [(p.pid, "p2p_platform", p) for p in self.platforms]
        subjects += [(i.iid, "payment_institution", i) for i in self.institutions]
        violators: list[dict] = []
        honest: list[dict] = []
        for subject, kind, actor in subjects:
            if actor.look in detector:
                # One entry per detector whose rule the pattern breaks.
                for det in (detector[actor.look], *also.get(actor.look, ())):
                    violators.append(
                        {
                            "detector": det,
                            "subject_id": subject,
                            "pattern": actor.look,
                            "accounts": actor.heart_accounts,
                        }
                    )
            else:
                honest.append({"subject_id": subject, "kind": kind, "look_alike": actor.look})
        honest += self.other_honest
        return violators, honest


def _looks(
    rng: random.Random, honest: dict[str, int], violations: tuple[tuple[str, str], ...], scale: int
) -> list[str]:
    """Every honest kind and violation pattern ``count * scale`` times, in random order."""
    looks = [look for look, n in honest.items() for _ in range(n * scale)]
    looks += [pattern for _, pattern in violations for _ in range(scale)]
    rng.shuffle(looks)
    return looks


def build_world(rng: random.Random, scale: int, days: int, clock: Clock) -> World:
    """Plan everything: entities, accounts, products, every loan and every pattern."""
    reg = Registry(clock, Names(rng), rng)
    banks = register_banks(reg)
    world = World(reg)
    platform_looks = _looks(
        rng,
        {
            "busy_platform": 2,
            "mismatch_below_threshold": 1,
            "related_party_lookalike": 1,
            "home_with_own_money": 1,
            "private_at_min_ticket": 1,
        },
        PLATFORM_VIOLATIONS,
        scale,
    )
    for n, look in enumerate(platform_looks, start=1):
        profile, plan = PLATFORM_PLANS[look]
        p = Platform(f"P{n:03d}", look, profile, reg, rng.choice(banks.custody), days, rng)
        p.plan_honest(rng)
        if plan is not None:
            plan(p, rng)
        p.register()
        world.platforms.append(p)
    institution_looks = _looks(
        rng,
        {"fully_covered": 2, "near_threshold": 2, "cnaps_rebalance": 1},
        INSTITUTION_VIOLATIONS,
        scale,
    )
    for n, look in enumerate(institution_looks, start=1):
        world.institutions.append(Institution(f"I{n:03d}", look, reg, banks, days, rng))
    rebalancing = [i for i in world.institutions if i.look == "cnaps_rebalance"]
    for n, institution in enumerate(rebalancing, start=1):
        seller = register_fund_seller(reg, n)
        institution.merchants.append(seller)
        entry = {"subject_id": seller.entity_id, "kind": "asset_manager"}
        world.other_honest.append({**entry, "look_alike": "licensed_fund_seller"})
    return world


# --------------------------------------------------------------------------- writing

_TXN_ID = re.compile(r'"txn_id":"[^"]*"')
_TXN_ID_FIELD = re.compile(r'"txn_id":"[^"]*",')
_TYPE = re.compile(r'"type":"[a-z_]+"')
_AMOUNT = re.compile(r'"amount":("[^"]*"|[0-9.]+)')
_TS = re.compile(r'"ts":("[^"]*"|[0-9]+)')


class WorldWriter:
    """Writes lines in big chunks, mixing noise in after transaction lines."""

    CHUNK = 50_000

    def __init__(self, out: IO[bytes], noise: float, rng: random.Random) -> None:
        self.out, self.noise, self.rng = out, noise, rng
        self.records = 0
        self.duplicates = 0
        self.dead_letters = dict.fromkeys(DEAD_LETTER_REASONS, 0)
        self._buffer: list[str] = []
        self._noise_count = 0
        self._fake_ids = 0

    def line(self, text: str) -> None:
        self._buffer.append(text)
        self.records += 1
        if len(self._buffer) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.out.write(("\n".join(self._buffer) + "\n").encode())
            self._buffer.clear()

    def drain(self, day: int, events: list[Event], sink: EventSink) -> None:
        """Write the events of ``day`` in time order (a duplicate may join the queue)."""
        heapq.heapify(events)
        while events:
            t, _, text, is_txn = heapq.heappop(events)
            self.line(text)
            if is_txn and self.noise and self.rng.random() < self.noise:
                self._add_noise(day, t, text, events, sink)

    def _add_noise(self, day: int, t: int, text: str, events: list[Event], sink: EventSink) -> None:
        kind = NOISE_CYCLE[self._noise_count % len(NOISE_CYCLE)]
        self._noise_count += 1
        if kind != "duplicate":
            self.line(self._malformed(kind, text))
            self.dead_letters[kind] += 1
            return
        later = t + self.rng.randint(180, 4 * HOUR)
        copy = (later, sink.next_seq(), text, False)
        if later // DAY == day:
            heapq.heappush(events, copy)
        else:
            sink.pending.setdefault(later // DAY, []).append(copy)
        self.duplicates += 1

    def _malformed(self, kind: str, text: str) -> str:
        """A broken variant of a transaction line, under a txn_id of its own."""
        if kind == "missing_field":
            return _TXN_ID_FIELD.sub("", text, count=1)
        self._fake_ids += 1
        fake = _TXN_ID.sub(f'"txn_id":"NX{self._fake_ids:09d}"', text, count=1)
        if kind == "not_json":
            return fake[: len(fake) // 2]
        if kind == "unknown_type":
            return _TYPE.sub('"type":"wire_txn"', fake, count=1)
        if kind == "bad_amount":
            return _AMOUNT.sub(
                '"amount":' + self.rng.choice(('"-5.00"', '"12.345"')), fake, count=1
            )
        return _TS.sub('"ts":"2026-13-45T99:00:00+08:00"', fake, count=1)


def _write_events(
    world: World, writer: WorldWriter, sink: EventSink, days: int, rng: random.Random
) -> None:
    for institution in world.institutions:
        institution.open(sink)
    actors = world.actors()
    for day in range(days):
        sink.floor_day = day
        for actor in actors:
            actor.run_day(day, sink, rng)
        writer.drain(day, sink.pending.pop(day, []), sink)
    while sink.pending:  # the last reports and late duplicates
        day = min(sink.pending)
        sink.floor_day = day
        writer.drain(day, sink.pending.pop(day), sink)


def _check_args(seed: int, scale: int, days: int, noise: float, start: str) -> date:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    if not isinstance(days, int) or days < MIN_DAYS:
        raise ValueError(f"days must be an integer >= {MIN_DAYS}, got {days!r}")
    if not 0 <= noise <= 0.5:
        raise ValueError(f"noise must be between 0 and 0.5, got {noise!r}")
    try:
        return date.fromisoformat(start)
    except (TypeError, ValueError):
        raise ValueError(f"start must be a date YYYY-MM-DD, got {start!r}") from None


def write_world(
    out_dir: pathlib.Path,
    *,
    seed: int = 1,
    scale: int = 1,
    days: int = 30,
    noise: float = 0.002,
    start: str = "2026-03-01",
    compress: bool = False,
) -> dict:
    """Write ``out_dir/world.jsonl`` (``world.jsonl.gz`` when ``compress``) and
    ``out_dir/truth.json``; return the truth dict.

    ``scale`` multiplies every kind of platform and institution (about 88,000
    records per unit at 30 days); ``days`` is the length of the event part
    (at least 8); ``noise`` is the share of transaction lines followed by a
    duplicate or a malformed line. Raises ``ValueError`` on a bad argument.
    """
    start_date = _check_args(seed, scale, days, noise, start)
    master = random.Random(seed)
    # Separate streams: the noise never changes the world, the world never the formats.
    plan_rng, run_rng, format_rng, noise_rng = (
        random.Random(master.getrandbits(64)) for _ in range(4)
    )
    clock = Clock(start_date)
    world = build_world(plan_rng, scale, days, clock)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("world.jsonl.gz" if compress else "world.jsonl")
    with open(path, "wb") as raw:
        out: IO[bytes] = gzip.GzipFile("world.jsonl", "wb", 6, raw, mtime=0) if compress else raw
        writer = WorldWriter(out, noise, noise_rng)
        for line in world.registry.lines():
            writer.line(line)
        _write_events(world, writer, EventSink(clock, format_rng), days, run_rng)
        writer.flush()
        if compress:
            out.close()
    violators, honest = world.truth_lists()
    truth = {
        "seed": seed,
        "scale": scale,
        "days": days,
        "start": start_date.isoformat(),
        "zone": ZONE,
        "records": writer.records,
        "violators": violators,
        "honest": honest,
        "noise": {"duplicates": writer.duplicates, "dead_letters": writer.dead_letters},
    }
    (out_dir / "truth.json").write_text(
        json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return truth

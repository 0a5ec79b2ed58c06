"""reserve_misuse — 挪用客户备付金 (seed 二(三)1: "非银行支付机构不得挪用、占用客户备付金,
客户备付金账户应开立在人民银行或符合要求的商业银行").

A payment institution holds its clients' money in ``client_reserve`` accounts
and must not use it for itself. Per institution (the owner of the reserve
account), four signals:

``coverage_shortfall``
    The institution's reserve balances at the end of day D against the
    ``client_liabilities`` its report for D states. A ratio below
    1 - ``tolerance_pct`` is an alert; severity grows with the shortfall.
    Balances are the latest ``balance`` record of each reserve account plus
    every transaction since (custody and clearing alike, each ``txn_id``
    once). A report is compared when event time passes the end of its day
    (or at the end of a replay), so the day's own payments are in; a report
    that arrives after its day closed is compared with that day's recorded
    closing total.
``reserve_outflow``
    Money debited from a reserve account and credited to the institution's
    own or a related entity's account (other than its own reserve accounts),
    or to any account whose role is not ``settlement``, ``client_reserve``,
    ``personal`` or ``corporate`` — unless it is an outside party paid for a
    normal purpose (``refund``, ``payout``, ``withdraw``, ``settlement``).
``reserve_at_unlicensed_bank``
    A reserve account held at a bank whose entity record lacks the
    ``custody`` licence.
``reserve_interest``
    ``interest`` credited to a reserve account ("吃利差").

Each of these findings but the bank's licence is an episode
(:mod:`~fundflow.detectors.episodes`): a misuse episode per signal and
counterparty account lasts while offending transactions come within
``episode_gap_days`` of each other; a shortfall episode is named by its
first short day and lasts, with no gap, until a day's reserves cover the
liabilities again.

Balances are kept per reserve account as a settled base plus a short tail of
recent movements, so a bank snapshot (``balance``) that arrives a little late
still lands on the right transactions.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from fundflow.schemas.records import Account, Balance, ReserveReport

from .alerting import Stated, band, day_end_ms, local_day, make_alert_id, ratio_text, yuan
from .base import Detector, SlotState
from .episodes import Episode, Episodes
from .reference import Flow
from .settings import BasisPoints, Days, Fen, Int, Strings, rising, section, setting


@section(
    "reserve_misuse",
    checks=(
        rising(
            "reserve_misuse shortfall bands must rise: low <= medium <= high",
            "shortfall_low_max_bp", "shortfall_medium_max_bp", "shortfall_high_max_bp",
        ),
    ),
)  # fmt: skip
@dataclass(frozen=True, slots=True)
class ReserveConfig:
    """``[reserve_misuse]``."""

    tolerance_bp: int = setting(BasisPoints(), key="tolerance_pct")
    shortfall_low_max_bp: int = setting(BasisPoints(), key="shortfall_low_max_pct")
    shortfall_medium_max_bp: int = setting(BasisPoints(), key="shortfall_medium_max_pct")
    shortfall_high_max_bp: int = setting(BasisPoints(), key="shortfall_high_max_pct")
    misuse_severity_medium: int = setting(Fen())
    misuse_severity_high: int = setting(Fen())
    misuse_severity_critical: int = setting(Fen())
    outside_purposes: frozenset[str] = setting(Strings())
    episode_gap_ms: int = setting(Days(1, 366), key="episode_gap_days")
    report_lateness_days: int = setting(Int(0, 366))


CLIENT_ROLES = frozenset({"settlement", "client_reserve", "personal", "corporate"})


class _Reserve:
    """One reserve account's balance: ``base`` at ``base_ms`` plus ``tail``."""

    __slots__ = ("base", "base_ms", "tail", "tail_sum")

    def __init__(self) -> None:
        self.base = 0
        self.base_ms = -1
        self.tail: deque[tuple[int, int]] = deque()
        self.tail_sum = 0

    @property
    def balance(self) -> int:
        return self.base + self.tail_sum

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.base, self.base_ms, self.tail, self.tail_sum)

    def __setstate__(self, s: tuple[Any, ...]) -> None:
        self.base, self.base_ms, self.tail, self.tail_sum = s


#: A coverage_shortfall episode lasts until a day is covered again.
_SHORTFALL = Episodes(gap_ms=None)


class _Institution(SlotState):
    __slots__ = (
        "accounts",
        "closes",
        "pending",
        "shortfall_episode",
        "misuse",
        "misuse_figures",
        "unchecked",
        "closed_through",
        "day_end",
    )

    def __init__(self) -> None:
        # The institution's own clock: the last local day closed, and the
        # instant the current day ends. Driven only by its own records, so
        # its findings do not depend on how other subjects' records interleave.
        self.closed_through: str | None = None
        self.day_end = -1
        self.accounts: set[str] = set()
        # local day -> closing reserve total (fen)
        self.closes: dict[str, int] = {}
        # local day -> liabilities reported for a day not yet closed
        self.pending: dict[str, int] = {}
        # The coverage_shortfall episode, named by the first short day.
        self.shortfall_episode = Episode()
        # (signal, account) -> its misuse episode, and its figures [amount, txn_ids]
        self.misuse: dict[tuple[str, str], Episode] = {}
        self.misuse_figures: dict[tuple[str, str], list[Any]] = {}
        # reserve accounts whose bank's licence has not been seen yet
        self.unchecked: set[str] = set()

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "misuse_figures" not in state:  # checkpoints of 1.0 kept the episodes as lists
            state = dict(state)
            day = state["shortfall_episode"]
            state["shortfall_episode"] = Episode() if day is None else Episode(day, -1)
            misuse = state["misuse"]
            state["misuse"] = {k: Episode(ep[0], ep[1]) for k, ep in misuse.items()}
            state["misuse_figures"] = {k: [ep[2], ep[3]] for k, ep in misuse.items()}
        super().__setstate__(state)


class ReserveMisuse(Detector):
    """Finds misused client reserves; see the module docstring for the rule."""

    name = "reserve_misuse"
    version = "1.0"

    def _fresh(self) -> dict[str, Any]:
        self._lateness_ms = self.config.engine.dedup_window_ms
        self._misuse = Episodes(self.config.reserve_misuse.episode_gap_ms, self._lateness_ms)
        return {"reserves": {}, "institutions": {}, "unmatched_reports": 0}

    # -- records -------------------------------------------------------------

    def _institution(self, owner: str) -> _Institution:
        inst = self.institutions.get(owner)
        if inst is None:
            inst = self.institutions[owner] = _Institution()
        return inst

    def _on_reference(self, record: Any) -> None:
        if type(record) is Account and record.role == "client_reserve":
            inst = self._institution(record.owner_id)
            inst.accounts.add(record.account_id)
            inst.unchecked.add(record.account_id)
            self.reserves.setdefault(record.account_id, _Reserve())

    def _on_report(self, record: Any) -> None:
        if type(record) is Balance:
            self._on_balance(record)
        elif type(record) is ReserveReport:
            self._on_liabilities(record)

    def _on_balance(self, b: Balance) -> None:
        res = self.reserves.get(b.account_id)
        if res is None:
            res = self.reserves[b.account_id] = _Reserve()
        acc = self.ref.accounts.get(b.account_id)
        if acc is not None and acc.role == "client_reserve":
            self._clock_institution(acc.owner_id, b.as_of)
            self._settle(acc.owner_id, b.as_of)
        if b.as_of < res.base_ms:
            return  # older than what is already settled: superseded
        # Movements after the snapshot stay; those before are in it.
        kept = deque((ts, d) for ts, d in res.tail if ts > b.as_of)
        res.tail = kept
        res.tail_sum = sum(d for _, d in kept)
        res.base = b.balance
        res.base_ms = b.as_of
        if acc is not None and acc.role == "client_reserve":
            inst = self.institutions[acc.owner_id]
            if b.account_id in inst.unchecked:
                self._check_banks(acc.owner_id, inst, b.as_of, [b.account_id])

    def _on_liabilities(self, r: ReserveReport) -> None:
        inst = self._institution(r.institution_id)
        closed = inst.closed_through
        if closed is not None and r.as_of <= closed:
            total = inst.closes.get(r.as_of)
            if total is not None:
                self._compare(r.institution_id, inst, r.as_of, total, r.client_liabilities)
            else:
                # Its day closed before the stream began or beyond the kept
                # closing totals: nothing to compare it with.
                self.unmatched_reports += 1
            return
        inst.pending[r.as_of] = r.client_liabilities

    # -- flows ---------------------------------------------------------------

    def _on_flow(self, f: Flow) -> None:
        src, dst = f.src, f.dst
        src_res = src is not None and src.role == "client_reserve"
        dst_res = dst is not None and dst.role == "client_reserve"
        if not (src_res or dst_res) or f.currency != "CNY":
            return
        ts = f.ts
        if src_res:
            inst = self.institutions.get(src.owner_id)  # type: ignore[union-attr]
            if inst is None or ts >= inst.day_end:
                self._clock_institution(src.owner_id, ts)  # type: ignore[union-attr]
        if dst_res:
            inst = self.institutions.get(dst.owner_id)  # type: ignore[union-attr]
            if inst is None or ts >= inst.day_end:
                self._clock_institution(dst.owner_id, ts)  # type: ignore[union-attr]
        # After the days closed: a day's comparison supersedes the day before's.
        if src_res:
            self._settle(src.owner_id, ts)  # type: ignore[union-attr]
        if dst_res:
            self._settle(dst.owner_id, ts)  # type: ignore[union-attr]
        if src_res:
            self._move(f.src_id, f.ts, -f.amount)
            self._check_outflow(src, f)  # type: ignore[arg-type]
        if dst_res:
            self._move(f.dst_id, f.ts, f.amount)
            if f.purpose == "interest":
                self._episode(dst.owner_id, "reserve_interest", f.dst_id, f)  # type: ignore[union-attr]
        for acc, is_res in ((src, src_res), (dst, dst_res)):
            if is_res:
                inst = self.institutions[acc.owner_id]  # type: ignore[union-attr]
                if inst.unchecked and acc.account_id in inst.unchecked:  # type: ignore[union-attr]
                    self._check_banks(acc.owner_id, inst, ts, [acc.account_id])  # type: ignore[union-attr]

    def subjects_of(self, flow: Flow) -> tuple[str, ...]:
        """The owners of the client-reserve accounts on either side: a
        payment between two institutions' reserves moves both balances."""
        out: tuple[str, ...] = ()
        for acc in (flow.src, flow.dst):
            if acc is not None and acc.role == "client_reserve" and acc.owner_id not in out:
                out += (acc.owner_id,)
        return out

    def _move(self, account: str, ts: int, delta: int) -> None:
        res = self.reserves.get(account)
        if res is None:
            res = self.reserves[account] = _Reserve()
        if ts <= res.base_ms:
            return  # already inside the balance snapshot
        tail = res.tail
        tail.append((ts, delta))
        res.tail_sum += delta
        # Fold movements older than the lateness window into the base.
        horizon = ts - self._lateness_ms
        while tail[0][0] < horizon:
            t, d = tail.popleft()
            res.base += d
            res.tail_sum -= d
            res.base_ms = t

    def _check_outflow(self, src: Account, f: Flow) -> None:
        owner = src.owner_id
        dst = f.dst
        if dst is not None and dst.role == "client_reserve" and dst.owner_id == owner:
            return  # between its own reserve accounts
        own = dst is not None and self.ref.is_related_or_self(owner, dst.owner_id)
        if not own:
            role = dst.role if dst is not None else "unknown"
            if role in CLIENT_ROLES:
                return
            if f.purpose in self.config.reserve_misuse.outside_purposes:
                return
        self._episode(owner, "reserve_outflow", f.dst_id, f)

    def _episode(self, owner: str, signal: str, account: str, f: Flow) -> None:
        cfg = self.config.reserve_misuse
        inst = self._institution(owner)
        key = (signal, account)
        ep, started = self._misuse.hold_key(inst.misuse, key, f.ts)
        if started:
            inst.misuse_figures[key] = [0, []]
        figures = inst.misuse_figures[key]
        figures[0] += f.amount
        if len(figures[1]) < self.config.alerts.sample_txns:
            figures[1].append(f.txn_id)
        severity = band(
            figures[0],
            (
                (cfg.misuse_severity_medium, "medium"),
                (cfg.misuse_severity_high, "high"),
                (cfg.misuse_severity_critical, "critical"),
            ),
            "low",
        )
        aid = make_alert_id(self.name, owner, signal, account, ep.start)
        self.book.offer(
            aid,
            owner,
            severity,
            figures[0],
            ep.start,
            ep.last,
            # The reserve balances move without a new offer: taken now.
            Stated(self._misuse_evidence(owner, signal, account, f, figures)),
            ends=self._misuse.ends(ep),
        )

    def _misuse_evidence(
        self, owner: str, signal: str, account: str, f: Flow, figures: list[Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        amount, txn_ids = figures
        inst = self.institutions[owner]
        reserve_accounts = sorted(inst.accounts)
        if signal == "reserve_interest":
            summary = f"Interest of {yuan(amount)} yuan was credited to client reserve account {account} of {owner}."
            accounts = [account]
        else:
            dst = f.dst
            who = "unknown party" if dst is None else f"{dst.role} account owned by {dst.owner_id}"
            summary = (
                f"{owner} moved {yuan(amount)} yuan of client reserves to {account} ({who}), "
                f"which is not a client or an outside party paid for normal business."
            )
            accounts = [f.src_id, account]
        evidence = {
            "signal": signal,
            "counterparty_account": account,
            "counterparty_owner": None
            if f.dst is None or signal == "reserve_interest"
            else f.dst.owner_id,
            "reserve_accounts": reserve_accounts,
            "reserve_balance": yuan(
                sum(self.reserves[a].balance for a in reserve_accounts if a in self.reserves)
            ),
            "amount": yuan(amount),
            "offending_txn_ids": list(txn_ids),
        }
        return accounts, summary, evidence

    # -- days ----------------------------------------------------------------

    def _clock_institution(self, owner: str, now: int) -> None:
        """Event time of ``owner`` has reached ``now``: close each of its local
        days that ended at or before ``now`` (comparing pending reports), from
        the day of its first event on."""
        inst = self._institution(owner)
        if now < inst.day_end:
            return
        today = local_day(now, self.zone)
        if inst.closed_through is None:
            inst.closed_through = _prev_day(today)
            # Reports for days before the institution's first event: its
            # balances then are the ones it had before that event.
            total = self._total(inst)
            for day in sorted(d for d in inst.pending if d < today):
                self._compare(owner, inst, day, total, inst.pending.pop(day))
        day = _next_day(inst.closed_through)
        closed = day < today
        while day < today:
            self._close_day(owner, inst, day)
            inst.closed_through = day
            day = _next_day(day)
        inst.day_end = day_end_ms(today, self.zone)
        if closed and inst.misuse:
            self._forget_episodes(inst, now)

    def _forget_episodes(self, inst: _Institution, now: int) -> None:
        """Drop misuse episodes that have ended: their last offending
        transaction is more than the episode gap behind ``now``, and more
        than the lateness horizon besides, so no transaction still accepted
        could extend them (a new one starts a new episode either way)."""
        if self._misuse.forget(inst.misuse, now) < len(inst.misuse_figures):
            for key in [k for k in inst.misuse_figures if k not in inst.misuse]:
                del inst.misuse_figures[key]

    def _on_tick(self, now: int) -> None:
        for owner in sorted(self.institutions):
            self._clock_institution(owner, now)
            inst = self.institutions[owner]
            if inst.unchecked:
                self._check_banks(owner, inst, now)

    def _close_day(self, owner: str, inst: _Institution, day: str) -> None:
        if not inst.accounts and not inst.pending:
            return
        keep = self.config.reserve_misuse.report_lateness_days
        total = self._total(inst)
        inst.closes[day] = total
        while len(inst.closes) > keep + 1:
            del inst.closes[min(inst.closes)]
        liabilities = inst.pending.pop(day, None)
        if liabilities is not None:
            self._compare(owner, inst, day, total, liabilities)

    def _total(self, inst: _Institution) -> int:
        reserves = self.reserves
        return sum(reserves[a].balance for a in inst.accounts if a in reserves)

    def _compare(
        self,
        owner: str,
        inst: _Institution,
        day: str,
        total: int,
        liabilities: int,
    ) -> None:
        cfg = self.config.reserve_misuse
        if liabilities <= 0:
            return
        if not inst.accounts:
            # No reserve account of this institution is known: a missing
            # reference, not a proven shortfall.
            self.unmatched_reports += 1
            return
        shortfall = liabilities - total
        if shortfall * 10000 <= liabilities * cfg.tolerance_bp:
            _SHORTFALL.end(inst.shortfall_episode)
            return
        end = day_end_ms(day, self.zone)
        _SHORTFALL.hold(inst.shortfall_episode, end, start=day)
        episode = inst.shortfall_episode.start
        short_bp = shortfall * 10000 // liabilities
        if short_bp < cfg.shortfall_low_max_bp:
            severity = "low"
        elif short_bp < cfg.shortfall_medium_max_bp:
            severity = "medium"
        elif short_bp < cfg.shortfall_high_max_bp:
            severity = "high"
        else:
            severity = "critical"
        first = day_end_ms(episode, self.zone)
        aid = make_alert_id(self.name, owner, "coverage_shortfall", episode)
        accounts = sorted(inst.accounts)

        def build() -> tuple[list[str], str, dict[str, Any]]:
            ratio = ratio_text(total, liabilities)
            return (
                accounts,
                f"{owner}'s client reserves covered {ratio} of its client liabilities at the end of {day}: "
                f"{yuan(total)} yuan held against {yuan(liabilities)} yuan owed, short {yuan(shortfall)}.",
                {
                    "signal": "coverage_shortfall",
                    "as_of": day,
                    "since": episode,
                    "reserve_accounts": accounts,
                    "reserve_balance": yuan(total),
                    "client_liabilities": yuan(liabilities),
                    "coverage_ratio": ratio,
                    "shortfall": yuan(shortfall),
                },
            )

        # The next day's comparison, when its report is on time, supersedes
        # this one: settled once that day has closed.
        ends = day_end_ms(_next_day(day), self.zone) - 1
        self.book.offer(aid, owner, severity, shortfall, first, end, build, ends=ends)

    def _check_banks(
        self, owner: str, inst: _Institution, now: int, only: list[str] | None = None
    ) -> None:
        """Each reserve account's bank is checked once its entity is known:
        at the account's own first record (so the alert states the balance it
        holds), and for all of them at a heartbeat or the end."""
        accounts = self.ref.accounts
        for acc_id in only if only is not None else sorted(inst.unchecked):
            acc = accounts.get(acc_id)
            if acc is None:
                continue
            licensed = self.ref.has_license(acc.bank_id, "custody")
            if licensed is None:
                continue  # the bank is not known yet
            inst.unchecked.discard(acc_id)
            if licensed:
                continue
            bank = acc.bank_id
            balance = self.reserves[acc_id].balance if acc_id in self.reserves else 0
            aid = make_alert_id(self.name, owner, "reserve_at_unlicensed_bank", acc_id, bank)
            self.book.offer(
                aid,
                owner,
                "high",
                max(balance, 0),
                now,
                now,
                lambda acc_id=acc_id, bank=bank, balance=balance: (
                    [acc_id],
                    f"{owner} keeps client reserves in account {acc_id} at {bank}, "
                    f"which holds no custody licence.",
                    {
                        "signal": "reserve_at_unlicensed_bank",
                        "reserve_account": acc_id,
                        "bank_id": bank,
                        "bank_licenses": list(self.ref.entities[bank].licenses),
                        "reserve_balance": yuan(balance),
                    },
                ),
            )

    def _on_finish(self) -> None:
        if self.now >= 0:
            self._on_tick(self.now)
        # Reports for days not yet closed (all of them in a stream of balances
        # and reports only, which never moves the clock): compare with the
        # balances now, provisionally: the reports stay pending and the
        # shortfall episode as it was, for the days' own close if the stream
        # goes on.
        for owner in sorted(self.institutions):
            inst = self.institutions[owner]
            if not inst.pending:
                continue
            total = self._total(inst)
            ep = inst.shortfall_episode
            episode = ep.start, ep.last
            for day in sorted(inst.pending):
                self._compare(owner, inst, day, total, inst.pending[day])
            ep.start, ep.last = episode


def _next_day(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _prev_day(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()

"""unlicensed_business — 无证经营 / 名称使用金融字样 (seed 二(三)3 "开展支付业务的机构应依法取得相应业务
资质,不得无证经营支付业务"; 三(一) "设立金融机构、从事金融活动,必须依法接受准入管理" and the restricted words
of registered names).

The subject is the entity itself. Two kinds of finding:

``restricted_name`` (checked when an ``entity`` record arrives)
    The registered name holds a word of ``restricted_words`` (交易所, 金融,
    理财, 基金, 支付 ...) and the entity holds none of the licences listed
    for that word. The name is read left to right; at each place the longest
    word found there is the one that counts (基金管理 before 基金) and the
    reading continues after it. A word inside one of ``harmless_phrases``
    (基金会, a charitable foundation; 金融街, a place name) does not count;
    a Latin word (P2P) matches in any case but only standing alone, not
    inside a longer run of Latin letters or digits. Kinds in
    ``licensed_kinds`` (banks) and ``unnamed_kinds`` (persons) are not
    checked. A new name is judged afresh (the alert id includes the name,
    never a time).

    An entity record carries no time, so the alert is dated when the entity
    is first seen acting: ``first_ts`` and ``last_ts`` are both the event
    time of the first transaction of the entity's own feed
    (:func:`~fundflow.detectors.reference.feed_key`: the custody ledger of a
    platform it runs, clearing payments through a ``client_reserve``
    account it owns, or that it initiates), and ``sample_txn_ids`` names
    that transaction. Its amount is 0.00: a name moves no money. The entity
    record may come before or after that transaction (the first transaction
    of each feed is remembered); an entity never seen acting raises no
    alert. Only the entity's own feed counts because one engine (one
    partition) reads it whole and in order, so the date is the same in a
    replay and in the daemon; an account's opening time (optional) or a
    payment seen on another subject's feed would depend on how the feeds
    interleave.

Flow findings (checked on each transaction; an unknown entity is never
judged):

``unlicensed_payment``
    A ``clearing_txn`` initiated by an entity, not of a licensed kind and
    without ``payment_licence``, moving money from an account it does not
    own (someone else's money); or money moving through a ``client_reserve``
    account whose owner lacks ``payment_licence``.
``unlicensed_lending``
    A custody ``invest`` or ``disburse`` for a loan (``loan_id`` set) on a
    platform without ``lending_licence``.
``unlicensed_custody``
    Money moving through a custody sub-account (``lender_sub``,
    ``borrower_sub``, ``platform_custody``) held at a bank without
    ``custody_licence``: the subject is the bank.

Each flow finding is one alert per entity and signal, growing with the
money moved (re-emitted under the same id as it grows).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fundflow.schemas.records import Account, Entity

from .alerting import make_alert_id, yuan
from .base import Detector
from .reference import Flow, feed_key
from .settings import Custom, Name, Names, section, setting


def _restricted_words(section: str, key: str, value: Any) -> tuple[tuple[str, frozenset[str]], ...]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{section}.{key} must be a table of word = [licences], got {value!r}")
    words = []
    for word, licences in value.items():
        if not word.strip():
            raise ValueError(f"{section}.{key} has an empty word")
        allowed = Names(required="must name at least one licence").parse(
            section, f"{key}.{word}", licences
        )
        words.append((word, allowed))
    words.sort(key=lambda w: (-len(w[0]), w[0]))
    return tuple(words)  # type: ignore[arg-type]


@section("unlicensed_business")
@dataclass(frozen=True, slots=True)
class UnlicensedConfig:
    """``[unlicensed_business]``."""

    restricted_words: tuple[tuple[str, frozenset[str]], ...] = setting(
        Custom(_restricted_words)
    )  # longest word first
    harmless_phrases: tuple[str, ...] = setting(Names(sort=True))
    unnamed_kinds: frozenset[str] = setting(Names())
    licensed_kinds: frozenset[str] = setting(Names())
    payment_licence: str = setting(Name())
    lending_licence: str = setting(Name())
    custody_licence: str = setting(Name())


CUSTODY_ROLES = frozenset({"lender_sub", "borrower_sub", "platform_custody"})
LENDING_PURPOSES = frozenset({"invest", "disburse"})


def restricted_words_in(name: str, cfg: UnlicensedConfig) -> list[str]:
    """The restricted words a registered name uses, in the order they appear.

    >>> from fundflow.detectors import load_config
    >>> cfg = load_config().unlicensed_business
    >>> restricted_words_in("上海鑫源基金管理有限公司", cfg)
    ['基金管理']
    >>> restricted_words_in("北京金融街物业有限公司", cfg), restricted_words_in("P2PE科技", cfg)
    ([], [])
    >>> restricted_words_in("杭州p2p金融信息服务有限公司", cfg)
    ['P2P', '金融']
    """
    folded = name.upper()
    harmless = [
        (i, i + len(p)) for p in cfg.harmless_phrases for i in _positions(folded, p.upper())
    ]
    by_first = _words_by_first_letter(cfg.restricted_words)
    found: list[str] = []
    i = 0
    while i < len(folded):
        for word, w, latin in by_first.get(folded[i], ()):  # longest first
            if not folded.startswith(w, i):
                continue
            end = i + len(w)
            if any(a <= i and end <= b for a, b in harmless):
                continue
            if latin and (_latin(folded, i - 1) or _latin(folded, end)):
                continue
            if word not in found:
                found.append(word)
            i = end - 1
            break
        i += 1
    return found


@lru_cache(maxsize=8)
def _words_by_first_letter(
    words: tuple[tuple[str, frozenset[str]], ...],
) -> dict[str, tuple[tuple[str, str, bool], ...]]:
    """The restricted words, upper-cased, grouped by their first letter in
    their order (longest first): ``(word, upper-cased, is Latin)``. Only a
    word starting with the letter at a place can match there."""
    groups: dict[str, list[tuple[str, str, bool]]] = {}
    for word, _ in words:
        w = word.upper()
        groups.setdefault(w[0], []).append((word, w, w.isascii()))
    return {letter: tuple(group) for letter, group in groups.items()}


def _positions(text: str, phrase: str) -> list[int]:
    out, i = [], text.find(phrase)
    while i >= 0:
        out.append(i)
        i = text.find(phrase, i + 1)
    return out


def _latin(text: str, i: int) -> bool:
    return 0 <= i < len(text) and text[i].isascii() and text[i].isalnum()


class UnlicensedBusiness(Detector):
    """Finds financial business without the licence for it; see the module
    docstring for the rules.

    >>> from fundflow.schemas.records import ClearingTxn, Entity
    >>> det = UnlicensedBusiness()
    >>> det.update(Entity(entity_id="E1", name="鼎盛财富管理有限公司", kind="company")).drain()
    []
    >>> pay = ClearingTxn(txn_id="T1", ts=1772330400000, system="CNAPS", initiator_id="E1",
    ...     payer_bank="B", payer_account="A", payee_bank="B", payee_account="C", amount=100)
    >>> [(a.evidence["signal"], a.first_ts) for a in det.update(pay).drain()]
    [('restricted_name', '2026-03-01T10:00:00+08:00'), ('unlicensed_payment', '2026-03-01T10:00:00+08:00')]
    """

    name = "unlicensed_business"
    version = "1.0"

    def _fresh(self) -> dict[str, Any]:
        return {
            # entity id -> signal -> [first_ts, last_ts, amount, count, sample txn ids, accounts]
            "entities": {},
            # feed subject -> (ts, txn id) of its first transaction: when it first acted
            "acts": {},
            # entity id -> its restricted-name finding, waiting for the entity to act
            "names": {},
        }

    # -- names -----------------------------------------------------------------

    def _on_reference(self, record: Any) -> None:
        if type(record) is Entity:
            self._check_name(record)

    def _check_name(self, e: Entity) -> None:
        cfg = self.config.unlicensed_business
        allowed = dict(cfg.restricted_words)
        words: list[str] = []
        if e.kind not in cfg.unnamed_kinds and e.kind not in cfg.licensed_kinds:
            held = set(e.licenses)
            words = [w for w in restricted_words_in(e.name, cfg) if not held & allowed[w]]
        if not words:
            self.names.pop(e.entity_id, None)  # renamed clean before it acted
            return
        needed = {w: sorted(allowed[w]) for w in words}
        finding = (e.name, e.kind, words, needed, list(e.licenses))
        act = self.acts.get(e.entity_id)
        if act is None:
            self.names[e.entity_id] = finding
        else:
            self._name_alert(e.entity_id, finding, act)

    def _name_alert(self, eid: str, finding: tuple[Any, ...], act: tuple[int, str]) -> None:
        name, kind, words, needed, licences = finding
        ts, txn_id = act
        self.book.offer(
            make_alert_id(self.name, eid, "restricted_name", name),
            eid,
            "medium",
            0,
            ts,
            ts,
            lambda: (
                [],
                f"{eid} ({kind}) is registered as {name!r}, using "
                f"{', '.join(words)} without a matching licence.",
                {
                    "signal": "restricted_name",
                    "entity_id": eid,
                    "name": name,
                    "kind": kind,
                    "words": words,
                    "licences_needed": needed,
                    "licences_held": licences,
                    "sample_txn_ids": [txn_id],
                },
            ),
        )

    # -- flows -----------------------------------------------------------------

    def _on_flow(self, f: Flow) -> None:
        actor = feed_key(f)
        self._settle(actor, f.ts)
        if actor not in self.acts:
            act = self.acts[actor] = (f.ts, f.txn_id)
            finding = self.names.pop(actor, None)
            if finding is not None:
                self._name_alert(actor, finding, act)
        if f.currency != "CNY":
            return  # amounts are never added across currencies
        cfg = self.config.unlicensed_business
        entities = self.ref.entities
        src, dst = f.src, f.dst
        # (subject, signal) -> accounts involved; one transaction counts once
        # per finding. Made only for a transaction that has a finding.
        hits: dict[tuple[str, str], list[str]] | None = None
        if f.custody:
            pid = f.platform_id
            if f.loan_id is not None and pid is not None and f.purpose in LENDING_PURPOSES:
                e = entities.get(pid)
                if e is not None and cfg.lending_licence not in e.licenses:
                    hits = {(pid, "unlicensed_lending"): [f.src_id, f.dst_id]}
        else:
            initiator = self._unlicensed_initiator(f)
            if initiator is not None:
                hits = {(initiator, "unlicensed_payment"): [f.src_id, f.dst_id]}
        for acc in (src, dst):
            # A known account: its id is the flow's id for that side.
            if acc is None:
                continue
            hit = self._account_finding(acc)
            if hit is not None:
                if hits is None:
                    hits = {}
                hits.setdefault(hit, []).append(acc.account_id)
        if hits is not None:
            for (subject, signal), accounts in hits.items():
                self._found(subject, signal, f, accounts)

    def _unlicensed_initiator(self, f: Flow) -> str | None:
        """The initiator of clearing payment ``f`` when it makes a payment
        it has no licence for (not of its own money)."""
        cfg = self.config.unlicensed_business
        initiator = self.ref.entities.get(f.initiator_id)  # type: ignore[arg-type]
        if (
            initiator is not None
            and initiator.kind not in cfg.licensed_kinds
            and cfg.payment_licence not in initiator.licenses
            and (f.src is None or f.src.owner_id != initiator.entity_id)
        ):
            return initiator.entity_id
        return None

    def _account_finding(self, acc: Account) -> tuple[str, str] | None:
        """``(subject, signal)`` when a payment touching ``acc`` is a finding
        of its holder: a custody account at a bank with no custody licence,
        client reserves held by an entity with no payment licence."""
        cfg = self.config.unlicensed_business
        role = acc.role
        if role in CUSTODY_ROLES:
            bank = self.ref.entities.get(acc.bank_id)
            if bank is not None and cfg.custody_licence not in bank.licenses:
                return acc.bank_id, "unlicensed_custody"
        elif role == "client_reserve":
            owner = self.ref.entities.get(acc.owner_id)
            if owner is not None and cfg.payment_licence not in owner.licenses:
                return acc.owner_id, "unlicensed_payment"
        return None

    def subjects_of(self, flow: Flow) -> tuple[str, ...]:
        """The entities a payment is a finding of (an unlicensed initiator, a
        bank holding custody accounts with no custody licence, an unlicensed
        holder of client reserves), whatever feed it is on."""
        out: list[str] = []
        if not flow.custody:
            initiator = self._unlicensed_initiator(flow)
            if initiator is not None:
                out.append(initiator)
        for acc in (flow.src, flow.dst):
            if acc is not None:
                hit = self._account_finding(acc)
                if hit is not None and hit[0] not in out:
                    out.append(hit[0])
        return tuple(out)

    def _found(self, subject: str, signal: str, f: Flow, accounts: list[str]) -> None:
        # A bank's custody finding grows from many feeds: settled as it does.
        self._settle(subject, f.ts)
        per = self.entities.get(subject)
        if per is None:
            per = self.entities[subject] = {}
        fd = per.get(signal)
        if fd is None:
            fd = per[signal] = [f.ts, f.ts, 0, 0, [], []]
        fd[0] = min(fd[0], f.ts)
        fd[1] = max(fd[1], f.ts)
        fd[2] += f.amount
        fd[3] += 1
        if len(fd[4]) < self.config.alerts.sample_txns:
            fd[4].append(f.txn_id)
        for a in accounts:
            if a not in fd[5] and len(fd[5]) < 20:
                fd[5].append(a)
        aid = make_alert_id(self.name, subject, signal)
        self.book.offer(
            aid,
            subject,
            "high",
            fd[2],
            fd[0],
            fd[1],
            lambda: self._evidence(subject, signal, fd),
            # One finding for the entity's life: settled by the day.
            ends=self._day_ends(fd[1]),
        )

    def _evidence(
        self, subject: str, signal: str, fd: list[Any]
    ) -> tuple[list[str], str, dict[str, Any]]:
        cfg = self.config.unlicensed_business
        e = self.ref.entities.get(subject)
        needed = {
            "unlicensed_payment": cfg.payment_licence,
            "unlicensed_lending": cfg.lending_licence,
            "unlicensed_custody": cfg.custody_licence,
        }[signal]
        what = {
            "unlicensed_payment": "moved clients' money as a payment business",
            "unlicensed_lending": "ran lender-to-borrower loan flows",
            "unlicensed_custody": "held custody sub-accounts that moved money",
        }[signal]
        summary = (
            f"{subject} {what} without the {needed} licence: {yuan(fd[2])} yuan in "
            f"{fd[3]} transaction(s)."
        )
        evidence = {
            "signal": signal,
            "entity_id": subject,
            "kind": None if e is None else e.kind,
            "licence_needed": needed,
            "licences_held": [] if e is None else list(e.licenses),
            "amount": yuan(fd[2]),
            "transactions": fd[3],
            "accounts": list(fd[5]),
            "sample_txn_ids": list(fd[4]),
        }
        return list(fd[5]), summary, evidence

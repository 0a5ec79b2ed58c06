"""Decoding and validation: raw bytes, lines or CSV rows into records.

:class:`RecordDecoder` is the one place where outside input becomes a typed
record. It never raises on bad input: a record that breaks a rule of
``docs/wire-format.md`` comes back as a :class:`DeadLetter` holding the raw
input and a reason from :data:`REASONS`.

>>> dec = RecordDecoder()
>>> rec = dec.decode(b'{"type":"balance","account_id":"A1",'
...                  b'"as_of":"2026-03-01T00:00:00+08:00","balance":"12.30"}')
>>> rec.balance, rec.as_of
(1230, 1772294400000)
>>> dec.decode(b'{"type":"balance","account_id":"A1","as_of":0,"balance":"-1"}').reason
'bad_amount'
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from .records import (
    Account,
    Balance,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    Record,
    Related,
    ReserveReport,
)
from .wire import (
    ID_FIELDS,
    MONEY_FIELDS,
    TIME_FIELDS,
    WIRE_TYPES,
    WireAccount,
    WireBalance,
    WireClearingTxn,
    WireCustodyTxn,
    WireEntity,
    WireLoan,
    WireProduct,
    WireRecord,
    WireReserveReport,
)

#: Every reason a record can be refused for. Shells count dead letters by
#: these labels, so the set is small and fixed.
REASONS = (
    "not_json",  # not parseable as JSON or as a CSV row (or not UTF-8)
    "not_object",  # JSON, but not an object
    "unknown_type",  # `type` missing (where required) or not a known kind
    "missing_field",  # a required field is absent
    "bad_id",  # an identifier empty, too long or not a string
    "bad_amount",  # money negative, zero in a transaction, > 2 decimals, > 10^15, NaN
    "bad_time",  # a time or date that is not ISO-8601 / epoch ms, or outside 1970..2099
    "bad_enum",  # a value outside its enumeration (role, purpose, system, ...)
    "bad_field",  # any other field of the wrong type or out of range
    "too_large",  # a line or CSV cell over its limit, or JSON nested too deep to decode
    "too_late",  # a transaction older than the deduplication horizon (set by the engine)
)

MAX_MONEY_FEN = 10**15 * 100
_BOM = b"\xef\xbb\xbf"
# Accepted event times: 1970-01-01T00:00Z up to (not including) 2100-01-01T00:00Z.
MIN_MS = 0
MAX_MS = 4102444800000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: The longest line read by default, in bytes (the record limit of
#: ``docs/wire-format.md``); a longer one is ``too_large``.
MAX_LINE_BYTES = 1 << 20


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A refused record: why, where it came from, and the input itself."""

    reason: str
    detail: str
    raw: str
    source: str = ""


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def money_to_fen(value: str | int | float, field: str, *, positive: bool = False) -> int:
    """Yuan (string or JSON number, already shape-checked) to integer fen.

    >>> money_to_fen("12.5", "amount"), money_to_fen(7, "amount"), money_to_fen("0.01", "amount")
    (1250, 700, 1)
    """
    t = type(value)
    if t is str:
        s: str = value  # type: ignore[assignment]
        if len(s) > 3 and s[-3] == "." and s[-1] != "\n":
            # The common shape, two decimals (already checked against the
            # money pattern, so one point at most): the digits are the fen.
            fen = int(s.replace(".", ""))
            if fen > MAX_MONEY_FEN:
                raise _Refused("bad_amount", f"{field}: over 10^15 yuan")
            if positive and fen <= 0:
                raise _Refused("bad_amount", f"{field}: must be greater than 0")
            return fen
        if s[-1:] == "\n":
            # The shape check runs Python's `re`, whose `$` also matches before
            # a final newline, and int() skips it: "12.3\n" would read as 12.03.
            raise _Refused("bad_amount", f"{field}: {s!r} is not a plain decimal")
        i = s.find(".")
        if i < 0:
            fen = int(s) * 100
        elif len(s) - i == 3:
            fen = int(s[:i]) * 100 + int(s[i + 1 :])
        else:
            fen = int(s[:i]) * 100 + int(s[i + 1 :]) * 10
    elif t is int:
        fen = value * 100  # type: ignore[operator]
    else:
        # A JSON number with a fraction arrives as a double: take its shortest
        # round-trip text, which is exact for amounts up to 15 significant
        # digits; send larger amounts as strings.
        text = repr(value)
        if "e" in text or "E" in text or "n" in text:
            raise _Refused("bad_amount", f"{field}: {text} is not a plain decimal")
        if "." in text and len(text) - text.index(".") - 1 > 2:
            raise _Refused("bad_amount", f"{field}: {text} has more than 2 decimals")
        return money_to_fen(text if "." in text else text + ".00", field, positive=positive)
    if fen > MAX_MONEY_FEN:
        raise _Refused("bad_amount", f"{field}: over 10^15 yuan")
    if positive and fen <= 0:
        raise _Refused("bad_amount", f"{field}: must be greater than 0")
    return fen


def _rate(value: str | int | float, field: str) -> Decimal:
    try:
        d = Decimal(value if type(value) is not float else repr(value))
    except InvalidOperation as e:  # pragma: no cover - shape checked before
        raise _Refused("bad_field", f"{field}: not a decimal") from e
    if not d.is_finite() or d < 0 or d > 10:
        raise _Refused("bad_field", f"{field}: must be a decimal in 0..10")
    return d


# ASCII digits only: `\d` also takes other scripts' digits, which int() reads.
# "00".."59" -> milliseconds: the seconds of a timestamp in one dict look-up,
# which also refuses anything but two ASCII digits.
_SECONDS = {f"{n:02d}": n * 1000 for n in range(60)}


class TimeParser:
    """ISO-8601 or epoch-ms values to epoch milliseconds.

    Times without an offset are read in ``zone``. The common shapes
    ``YYYY-MM-DDTHH:MM:SS`` with ``±HH:MM``, ``Z`` or no offset take a fast
    path: the start of each minute is parsed once and cached, and only the
    seconds are read per record.

    >>> p = TimeParser("Asia/Shanghai")
    >>> p.to_ms("2026-03-01T10:00:07+08:00", "ts"), p.to_ms("2026-03-01T02:00:07Z", "ts")
    (1772330407000, 1772330407000)
    """

    def __init__(self, zone: str = "Asia/Shanghai") -> None:
        self.zone = ZoneInfo(zone)
        self._minutes: dict[str, int] = {}

    def to_ms(self, value: str | int, field: str) -> int:
        if type(value) is str:
            n = len(value)
            if (n == 25 or n == 20 or n == 19) and value[16] == ":":
                secs = _SECONDS.get(value[17:19])
                if secs is not None:
                    key = value[:16] + value[19:]
                    base = self._minutes.get(key)
                    if base is None:
                        base = self._minute(key, field)
                    return base + secs
            ms = self._parse(value, field)  # type: ignore[arg-type]
        else:
            ms = value  # type: ignore[assignment]
        if ms < MIN_MS or ms >= MAX_MS:
            raise _Refused("bad_time", f"{field}: outside 1970-01-01..2099-12-31")
        return ms

    def _minute(self, key: str, field: str) -> int:
        """The start of a minute (``YYYY-MM-DDTHH:MM`` plus offset), checked
        and cached; only minutes whose every second is in range are cached."""
        base = self._parse(key[:16] + ":00" + key[16:], field)
        if base < MIN_MS or base + 59_000 >= MAX_MS:
            raise _Refused("bad_time", f"{field}: outside 1970-01-01..2099-12-31")
        if len(self._minutes) >= 1 << 17:
            self._minutes.clear()
        self._minutes[key] = base
        return base

    def _parse(self, s: str, field: str) -> int:
        try:
            dt = datetime.fromisoformat(s)
        except ValueError as e:
            raise _Refused("bad_time", f"{field}: {s[:40]!r} is not ISO-8601") from e
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.zone)
        delta = dt - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _check_date(s: str, field: str) -> str:
    try:
        date.fromisoformat(s)
    except ValueError as e:
        raise _Refused("bad_time", f"{field}: {s!r} is not a date") from e
    if not ("1970" <= s[:4] <= "2099"):
        raise _Refused("bad_time", f"{field}: outside 1970..2099")
    return s


_PATH = re.compile(r"at `\$\.([A-Za-z_]+)[^`]*?([A-Za-z_]+)?`")
_MISSING = re.compile(r"missing required field `([A-Za-z_]+)`")


def _classify(message: str) -> str:
    """Map a msgspec validation message to one of :data:`REASONS`."""
    m = _MISSING.search(message)
    if m:
        return "unknown_type" if m.group(1) == "type" else "missing_field"
    m = _PATH.search(message)
    if not m:
        return "not_object" if message.startswith("Expected `object`") else "bad_field"
    field = m.group(1)
    leaf = m.group(2) or field  # `$.related[0].entity_id` -> entity_id
    if field == "type":
        return "unknown_type"
    if field in MONEY_FIELDS:
        return "bad_amount"
    if field in TIME_FIELDS:
        return "bad_time"
    if message.startswith("Invalid enum value"):
        return "bad_enum"
    if leaf in ID_FIELDS:
        return "bad_id"
    return "bad_field"


class RecordDecoder:
    """Turns raw input into records or dead letters; never raises on input.

    ``decode(raw)`` takes one JSON object (bytes or str; ``type`` required).
    ``decode(raw, kind=K)`` takes a payload whose kind is known from its topic
    (``type`` may be absent, and must equal K when present).
    ``from_row(mapping)`` takes a CSV row of strings.
    """

    #: Renames a foreign CSV layout's columns to wire fields before
    #: ``from_row`` reads a row (``None``: the header uses the wire names).
    columns: ColumnMap | None = None

    def __init__(self, zone: str = "Asia/Shanghai", max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.times = TimeParser(zone)
        self.max_line_bytes = max_line_bytes
        self._any = msgspec.json.Decoder(WireRecord)
        self._by_kind = {k: msgspec.json.Decoder(t) for k, t in WIRE_TYPES.items()}
        self._convert = {
            WireCustodyTxn: self._custody,
            WireClearingTxn: self._clearing,
            WireEntity: self._entity,
            WireAccount: self._account,
            WireProduct: self._product,
            WireLoan: self._loan,
            WireReserveReport: self._report,
            WireBalance: self._balance,
        }

    # -- entry points -------------------------------------------------------

    def decode(
        self, raw: bytes | str, kind: str | None = None, source: str = ""
    ) -> Record | DeadLetter:
        t = type(raw)
        if t is not bytes and t is not str:
            raw = bytes(raw)  # bytearray, memoryview (a Kafka payload)
            t = bytes
        if len(raw) > self.max_line_bytes:
            return self._dead(
                "too_large", f"{len(raw)} bytes, limit {self.max_line_bytes}", raw, source
            )
        decoder = self._any if kind is None else self._by_kind.get(kind)
        if decoder is None:
            return self._dead("unknown_type", f"unknown record kind {kind!r}", raw, source)
        try:
            if t is bytes and raw.isascii():  # type: ignore[union-attr]
                wire = decoder.decode(raw)
            elif t is bytes:
                # msgspec skips the bytes of unknown fields unchecked; a line
                # that is not UTF-8 is not JSON (RFC 8259) wherever the bad
                # bytes sit. A BOM comes from dumps written by Windows tools.
                str(raw, "utf-8")  # type: ignore[call-overload]
                wire = decoder.decode(raw[3:] if raw.startswith(_BOM) else raw)  # type: ignore[union-attr,arg-type]
            else:
                wire = decoder.decode(raw[1:] if raw[:1] == "\ufeff" else raw)
        except msgspec.ValidationError as e:
            return self._dead(_classify(str(e)), str(e), raw, source)
        except (msgspec.DecodeError, UnicodeError) as e:
            # UnicodeEncodeError: a str holding lone surrogates (text read
            # with errors="surrogateescape").
            return self._dead("not_json", str(e), raw, source)
        except RecursionError:
            # msgspec walks nested arrays recursively, unknown fields too.
            return self._dead("too_large", "JSON nested too deep to decode", raw, source)
        try:
            return self._convert[type(wire)](wire)
        except _Refused as e:
            return self._dead(e.reason, e.detail, raw, source)

    def too_large(self, head: bytes, size: int, source: str = "") -> DeadLetter:
        """The dead letter of a line of ``size`` bytes, over the limit, of
        which a reader kept only ``head`` (the rest was skipped unread)."""
        return self._dead("too_large", f"{size} bytes, limit {self.max_line_bytes}", head, source)

    def from_row(
        self, row: dict[str, Any], kind: str | None = None, source: str = ""
    ) -> Record | DeadLetter:
        """A CSV row (all strings): empty cells are absent fields; list and
        object cells (``licenses``, ``related``) hold JSON, or for
        ``licenses`` a ``;``-separated list. With :attr:`columns` set, the
        row is first renamed to wire fields (a foreign dump's layout)."""
        got = self.wire_of_row(row, kind, source)
        if type(got) is DeadLetter:
            return got
        wire, raw = got  # type: ignore[misc]
        try:
            return self._convert[type(wire)](wire)
        except _Refused as e:
            return self._dead(e.reason, e.detail, raw, source)

    def row_line(
        self, row: dict[str, Any], kind: str | None = None, source: str = ""
    ) -> bytes | DeadLetter:
        """A CSV row as the wire JSON line that says the same (``type``
        included): what ``fundflow replay --to-kafka`` sends for a CSV
        dump, so the worker decodes what :meth:`from_row` would have read.
        A row :meth:`from_row` refuses for its shape is the same dead
        letter here; one it refuses for its content (a payment to itself)
        is refused where the line is decoded."""
        got = self.wire_of_row(row, kind, source)
        if type(got) is DeadLetter:
            return got
        return msgspec.json.encode(got[0])  # type: ignore[index]

    def wire_of_row(
        self, row: dict[str, Any], kind: str | None = None, source: str = ""
    ) -> tuple[Any, str] | DeadLetter:
        """The wire struct of a CSV row and the row as JSON text (a dead
        letter's ``raw``), or the row's dead letter."""
        if self.columns is not None:
            row = self.columns.apply(row)
        fields: dict[str, Any] = {}
        for key, value in row.items():
            if key is None or value is None or value == "":
                continue
            fields[key] = value
        # csv.DictReader files surplus cells under the key None. Cells read
        # with errors="surrogateescape" hold lone surrogates where the file
        # was not UTF-8.
        try:
            raw = msgspec.json.encode({"" if k is None else k: v for k, v in row.items()}).decode()
        except (UnicodeEncodeError, TypeError):
            raw = repr(row)
            return self._dead("not_json", "row is not valid UTF-8", raw, source)
        if len(raw) > self.max_line_bytes:
            detail = f"row of {len(raw)} characters, limit {self.max_line_bytes}"
            return self._dead("too_large", detail, raw, source)
        given = fields.get("type")
        if kind is not None and given is not None and given != kind:
            return self._dead("unknown_type", f"type {given!r} on a {kind!r} input", raw, source)
        kind = kind or given
        cls = WIRE_TYPES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            return self._dead("unknown_type", f"unknown record kind {kind!r}", raw, source)
        fields.pop("type", None)
        try:
            for name in ("licenses", "related"):
                if name in fields and isinstance(fields[name], str):
                    text = fields[name].strip()
                    if text.startswith("["):
                        fields[name] = msgspec.json.decode(text)
                    else:
                        fields[name] = [p.strip() for p in text.split(";") if p.strip()]
            for name in ("ts", "opened_at", "issued_at", "as_of"):
                v = fields.get(name)
                if isinstance(v, str) and v.isascii() and v.isdigit():
                    fields[name] = int(v)
            wire = msgspec.convert(fields, cls, strict=False)
        except msgspec.ValidationError as e:
            return self._dead(_classify(str(e)), str(e), raw, source)
        except msgspec.DecodeError as e:
            return self._dead("bad_field", str(e), raw, source)
        except RecursionError:
            return self._dead("too_large", "a JSON cell nested too deep to decode", raw, source)
        return wire, raw

    @staticmethod
    def _dead(reason: str, detail: str, raw: bytes | str, source: str) -> DeadLetter:
        if isinstance(raw, bytes | bytearray | memoryview):
            raw = bytes(raw).decode("utf-8", "backslashreplace")
        elif not raw.isascii():
            # Lone surrogates would break the sink that writes it as UTF-8.
            raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
        return DeadLetter(reason=reason, detail=detail[:300], raw=raw[:65536], source=source)

    # -- conversions: wire struct -> record ---------------------------------

    def _custody(self, w: WireCustodyTxn) -> CustodyTxn:
        if w.debit_account == w.credit_account:
            raise _Refused("bad_field", "debit_account equals credit_account")
        return CustodyTxn(
            txn_id=w.txn_id,
            ts=self.times.to_ms(w.ts, "ts"),
            bank_id=w.bank_id,
            platform_id=w.platform_id,
            debit_account=w.debit_account,
            credit_account=w.credit_account,
            amount=money_to_fen(w.amount, "amount", positive=True),
            purpose=w.purpose,
            currency=w.currency,
            product_id=w.product_id,
            loan_id=w.loan_id,
        )

    def _clearing(self, w: WireClearingTxn) -> ClearingTxn:
        if w.payer_account == w.payee_account:
            raise _Refused("bad_field", "payer_account equals payee_account")
        return ClearingTxn(
            txn_id=w.txn_id,
            ts=self.times.to_ms(w.ts, "ts"),
            system=w.system,
            initiator_id=w.initiator_id,
            payer_bank=w.payer_bank,
            payer_account=w.payer_account,
            payee_bank=w.payee_bank,
            payee_account=w.payee_account,
            amount=money_to_fen(w.amount, "amount", positive=True),
            currency=w.currency,
            purpose=w.purpose,
        )

    def _entity(self, w: WireEntity) -> Entity:
        related = tuple(
            Related(
                entity_id=r.entity_id,
                relation=r.relation,
                share=None if r.share is None else Decimal(repr(r.share)),
            )
            for r in w.related
        )
        return Entity(
            entity_id=w.entity_id,
            name=w.name,
            kind=w.kind,
            licenses=tuple(w.licenses),
            related=related,
        )

    def _account(self, w: WireAccount) -> Account:
        return Account(
            account_id=w.account_id,
            owner_id=w.owner_id,
            bank_id=w.bank_id,
            role=w.role,
            platform_id=w.platform_id,
            opened_at=None if w.opened_at is None else self.times.to_ms(w.opened_at, "opened_at"),
        )

    def _product(self, w: WireProduct) -> Product:
        return Product(
            product_id=w.product_id,
            platform_id=w.platform_id,
            term_days=w.term_days,
            annual_rate=_rate(w.annual_rate, "annual_rate"),
            min_ticket=None if w.min_ticket is None else money_to_fen(w.min_ticket, "min_ticket"),
            private=w.private,
        )

    def _loan(self, w: WireLoan) -> Loan:
        return Loan(
            loan_id=w.loan_id,
            platform_id=w.platform_id,
            borrower_account=w.borrower_account,
            principal=money_to_fen(w.principal, "principal", positive=True),
            term_days=w.term_days,
            annual_rate=_rate(w.annual_rate, "annual_rate"),
            issued_at=self.times.to_ms(w.issued_at, "issued_at"),
            purpose=w.purpose,
        )

    def _report(self, w: WireReserveReport) -> ReserveReport:
        return ReserveReport(
            institution_id=w.institution_id,
            as_of=_check_date(w.as_of, "as_of"),
            client_liabilities=money_to_fen(w.client_liabilities, "client_liabilities"),
        )

    def _balance(self, w: WireBalance) -> Balance:
        return Balance(
            account_id=w.account_id,
            as_of=self.times.to_ms(w.as_of, "as_of"),
            balance=money_to_fen(w.balance, "balance"),
        )


class ColumnMap:
    """A foreign CSV layout, described in wire fields of one record kind.

    ``columns`` maps a wire field to the dump's column holding it
    (``payer_account=src``); ``constants`` gives a field one value for every
    row (``system=CNAPS``). One column may feed several fields; a field is
    named once. Columns the map does not read pass through under their own
    names (a column already named like a wire field needs no entry).

    >>> m = ColumnMap.parse("clearing_txn", "payer_account=src,amount=value", "system=CNAPS")
    >>> m.apply({"src": "A", "value": "5.00", "memo": "rent"})
    {'payer_account': 'A', 'amount': '5.00', 'system': 'CNAPS', 'memo': 'rent'}
    >>> ColumnMap.parse("clearing_txn", "payer=src", "")
    Traceback (most recent call last):
    ...
    ValueError: --map: payer is not a field of clearing_txn (fields: txn_id, ts, system, initiator_id, payer_bank, payer_account, payee_bank, payee_account, amount, currency, purpose)
    """

    def __init__(self, kind: str, columns: dict[str, str], constants: dict[str, str]) -> None:
        self.kind = kind
        self.columns = columns
        self.constants = constants
        self._sources = frozenset(columns.values())

    @classmethod
    def parse(cls, kind: str, columns: str, constants: str) -> ColumnMap:
        """From ``field=column,...`` and ``field=value,...``; a ``ValueError``
        (one line) names the first bad entry."""
        wire = WIRE_TYPES.get(kind)
        if wire is None:
            raise ValueError(f"unknown record kind {kind!r}")
        names = wire.__struct_fields__
        seen: set[str] = set()

        def pairs(text: str, flag: str) -> dict[str, str]:
            out: dict[str, str] = {}
            for item in (p.strip() for p in text.split(",")):
                if not item:
                    continue
                field, sep, value = (s.strip() for s in item.partition("="))
                if not sep or not field or not value:
                    raise ValueError(f"{flag}: {item!r} is not FIELD=VALUE")
                if field not in names:
                    raise ValueError(
                        f"{flag}: {field} is not a field of {kind} (fields: {', '.join(names)})"
                    )
                if field in seen:
                    raise ValueError(f"{flag}: {field} is given more than once")
                seen.add(field)
                out[field] = value
            return out

        return cls(kind, pairs(columns, "--map"), pairs(constants, "--const"))

    def check_header(self, header: list[str], name: str) -> None:
        """A ``ValueError`` (one line) when dump ``name``, whose header row is
        ``header``, lacks a mapped column or any column for a required field."""
        have = set(header)
        for field, column in self.columns.items():
            if column not in have:
                raise ValueError(f"{name}: no column {column!r} (mapped to {field}) in its header")
        wire = WIRE_TYPES[self.kind]
        fields = wire.__struct_fields__
        required = fields[: len(fields) - len(wire.__struct_defaults__)]
        for field in required:
            if field not in self.columns and field not in self.constants and field not in have:
                raise ValueError(
                    f"{name}: no column for required field {field}: "
                    f"add --map {field}=COLUMN or --const {field}=VALUE"
                )

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` renamed to wire fields, constants added."""
        out: dict[str, Any] = {f: row.get(c) for f, c in self.columns.items()}
        out.update(self.constants)
        for key, value in row.items():
            if key not in self._sources and key not in out:
                out[key] = value
        return out


def encode_record(record: Record) -> dict[str, Any]:
    """A record back to its wire shape (money as yuan strings, time as epoch
    ms), e.g. for producing a dump into Kafka or a test fixture."""
    out: dict[str, Any] = {"type": record.TYPE}
    for name in record.__struct_fields__:
        value = getattr(record, name)
        if value is None:
            continue
        if name in MONEY_FIELDS:
            value = fen_to_yuan(value)
        elif isinstance(value, Decimal):
            value = str(value)
        elif name == "related":
            value = [
                msgspec.structs.asdict(r) | {"share": None if r.share is None else float(r.share)}
                for r in value
            ]
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def fen_to_yuan(fen: int) -> str:
    """Integer fen as a yuan string with 2 decimals.

    >>> fen_to_yuan(123450), fen_to_yuan(-5), fen_to_yuan(0)
    ('1234.50', '-0.05', '0.00')
    """
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q}.{r:02d}"

"""Decoding and validation: raw bytes, lines or CSV rows into records.

Every rule of ``docs/wire-format.md`` is the compiled decoder's
(``fundflow._core.Decoder``, ``core/src/decode.rs``): the replay and the
worker hand it whole chunks; :class:`RecordDecoder` hands it one record at
a time, and types a CSV row first. Neither raises on bad input: a record
that breaks a rule comes back as a :class:`DeadLetter` holding the raw
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
from decimal import Decimal
from typing import Any

import msgspec

from fundflow._core import Decoder

from .records import Record
from .wire import (
    ID_FIELDS,
    MONEY_FIELDS,
    TIME_FIELDS,
    WIRE_TYPES,
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


#: The longest line read by default, in bytes (the record limit of
#: ``docs/wire-format.md``); a longer one is ``too_large``.
MAX_LINE_BYTES = 1 << 20


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A refused record: why, where it came from, and the input itself."""

    reason: str
    detail: str
    raw: str
    source: str = ""


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

    Every rule of ``docs/wire-format.md`` is the compiled decoder's
    (``fundflow._core.Decoder``, ``core/src/decode.rs``): this class hands it
    one record at a time. A CSV row is first typed by its kind's wire struct
    (:mod:`~fundflow.schemas.wire`, which reads the cells' text as the
    numbers and lists they hold) and then decoded as the JSON line that says
    the same (:meth:`row_line`).
    """

    #: Renames a foreign CSV layout's columns to wire fields before
    #: ``from_row`` reads a row (``None``: the header uses the wire names).
    columns: ColumnMap | None = None

    def __init__(self, zone: str = "Asia/Shanghai", max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.zone = zone
        self.max_line_bytes = max_line_bytes
        # A zone the tz database lacks is a ValueError here.
        self._any = Decoder(zone, max_line_bytes)
        self._by_kind: dict[str, Decoder] = {}

    # -- entry points -------------------------------------------------------

    def decode(
        self, raw: bytes | str, kind: str | None = None, source: str = ""
    ) -> Record | DeadLetter:
        t = type(raw)
        if t is str:
            try:
                raw = raw.encode()  # type: ignore[union-attr]
            except UnicodeEncodeError as e:
                # Lone surrogates: text read with errors="surrogateescape".
                return self._dead("not_json", str(e), raw, source)
        elif t is not bytes:
            raw = bytes(raw)  # bytearray, memoryview (a Kafka payload)
        if kind is None:
            return self._any.decode(raw, source)  # type: ignore[arg-type,no-any-return]
        dec = self._by_kind.get(kind)
        if dec is None:
            dec = self._by_kind[kind] = Decoder(self.zone, self.max_line_bytes, kind)
        return dec.decode(raw, source)  # type: ignore[arg-type,no-any-return]

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
        row is first renamed to wire fields (a foreign dump's layout). A
        dead letter's ``raw`` is the row as JSON text."""
        got = self.wire_of_row(row, kind, source)
        if type(got) is DeadLetter:
            return got
        wire, raw = got  # type: ignore[misc]
        rec = self.decode(msgspec.json.encode(wire), source=source)
        if type(rec) is DeadLetter:
            return self._dead(rec.reason, rec.detail, raw, source)
        return rec

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

"""The replay shell: dumps in, engine in-process, alerts and dead letters out.

:func:`replay` reads JSONL and CSV dumps (or standard input), gzip or not
(told by the first bytes, :mod:`fundflow.sniff`), in the order given, feeds
every record to one :class:`~fundflow.detectors.Engine`,
and carries the results away: alerts to an :class:`~fundflow.store.AlertSink`
and a JSONL stream, refused records to a dead-letter JSONL file with their
reason. It returns a :class:`Summary` whose figures always satisfy
``read == accepted + duplicates + sum(dead_letters.values())``.

Output files are written beside their final name and moved into place only
when the replay completes, so a file that exists is a complete one.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import secrets
import stat
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgspec

from fundflow.detectors import Config, Engine
from fundflow.detectors.metrics import DEFAULT_SUBJECT_LIMIT, AlertReporter, Metrics, NullMetrics
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.decode import MAX_LINE_BYTES, ColumnMap
from fundflow.schemas.records import (
    KINDS,
    RECORD_TYPES,
    Alert,
    ClearingTxn,
    CustodyTxn,
)

from .sniff import sniff
from .store import AlertSink


class ReplayError(Exception):
    """A problem with the replay's inputs or outputs (one line, for the user)."""


@dataclass
class Summary:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # detector -> alert_id -> severity
    revisions: int = 0
    seconds: float = 0.0

    def by_detector(self) -> dict[str, int]:
        return {d: len(ids) for d, ids in sorted(self.alerts.items())}

    def by_severity(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for det, ids in sorted(self.alerts.items()):
            counts: dict[str, int] = {}
            for sev in ids.values():
                counts[sev] = counts.get(sev, 0) + 1
            out[det] = dict(sorted(counts.items()))
        return out

    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "alerts": self.by_detector(),
            "alerts_by_severity": self.by_severity(),
            "alert_revisions": self.revisions,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.rate()),
        }

    def balanced(self) -> bool:
        return self.read == self.accepted + self.duplicates + sum(self.dead_letters.values())

    def refused(self) -> int:
        """Records read that became dead letters."""
        return sum(self.dead_letters.values())

    def refused_all(self) -> bool:
        """Records were read and every one became a dead letter."""
        return self.read > 0 and self.refused() == self.read

    def refused_warning(self, deadletter_out: str | None = None) -> str | None:
        """One line when more than :data:`REFUSED_WARNING_SHARE` of the
        records read were refused (almost always a usage error): how many,
        the three commonest reasons, what the commonest one most often
        means, and where each record's reason is. ``None`` otherwise."""
        refused = self.refused()
        if not self.read or refused <= REFUSED_WARNING_SHARE * self.read:
            return None
        reasons = sorted(self.dead_letters.items(), key=lambda kv: (-kv[1], kv[0]))
        top = ", ".join(f"{r} {n:,}" for r, n in reasons[:3])
        more = f", {len(reasons) - 3} more reasons" if len(reasons) > 3 else ""
        line = (
            f"warning: {refused:,} of the {self.read:,} records read were refused "
            f"({top}{more}): {REFUSED_HINTS.get(reasons[0][0], REFUSED_HINTS['bad_field'])}"
        )
        if deadletter_out is not None:
            line += f"; each refused record, with its reason, is in {deadletter_out}"
        return line

    def render(self) -> str:
        lines = [
            f"records read   {self.read:>12,}",
            f"  accepted     {self.accepted:>12,}",
            f"  duplicates   {self.duplicates:>12,}",
            f"  dead letters {sum(self.dead_letters.values()):>12,}"
            + (
                "  (" + ", ".join(f"{r} {n:,}" for r, n in sorted(self.dead_letters.items())) + ")"
                if self.dead_letters
                else ""
            ),
        ]
        total = sum(self.by_detector().values())
        lines.append(f"alerts         {total:>12,}  ({self.revisions:,} revisions emitted)")
        by_severity = self.by_severity()
        # One column of detector names, at least 20 wide, as wide as the longest.
        width = max([20, *(len(det) for det in by_severity)])
        for det, sev in by_severity.items():
            parts = ", ".join(
                f"{s} {n}" for s, n in sorted(sev.items(), key=lambda kv: _SEV_ORDER[kv[0]])
            )
            lines.append(f"  {det:<{width}} {sum(sev.values()):>5}  ({parts})")
        lines.append(f"{self.rate():,.0f} records/s over {self.seconds:.2f} s")
        return "\n".join(lines)


_SEV_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}

#: A replay that refused more than this share of the records it read ends
#: with a warning (:meth:`Summary.refused_warning`).
REFUSED_WARNING_SHARE = 0.5

#: What the commonest reason of a mostly refused replay most often means.
REFUSED_HINTS: dict[str, str] = {
    "not_json": "the dump is not JSON lines (a CSV dump needs a .csv name; of the "
    "compressions only gzip is read)",
    "not_object": "the lines are JSON but not objects (a dump holds one record object a line)",
    "unknown_type": "the records name no known type (a dump without a type field or column "
    "needs --kind)",
    "missing_field": "required fields are missing (field and column names are the wire "
    "format's; a CSV dump in another layout needs --kind with --map)",
    "bad_time": "times are neither ISO-8601 nor epoch milliseconds",
    "bad_amount": "amounts are not yuan with at most 2 decimals",
    "too_large": "lines are over the size limit (a dump holds one record a line, not one "
    "JSON document)",
    "too_late": "transactions come behind newer ones by more than the deduplication horizon "
    "(replay dumps in time order)",
    "bad_field": "values do not fit the wire format (each dead letter's detail says how)",
}


# -- inputs ---------------------------------------------------------------------


def _open_binary(path: str) -> tuple[BinaryIO, BinaryIO | None]:
    """The decoded byte stream and the raw file under it (for progress;
    ``None`` for standard input). Gzip is told by its first bytes, not the
    name: a ``.jsonl`` file or standard input that is gzip is read through
    gzip, and a ``.gz`` file that is not gzip is read as it is. A dump in
    another compression (:data:`fundflow.sniff.MAGIC`) is a
    :class:`ReplayError`."""
    name = "stdin" if path == "-" else path
    raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        stream, packed = sniff(raw)
        if packed is not None and packed != "gzip":
            raise ReplayError(
                f"cannot read {name}: it is {packed}-compressed, and only gzip is read "
                "(decompress it first)"
            )
    except (OSError, ReplayError) as e:
        if path != "-":
            raw.close()
        if isinstance(e, ReplayError):
            raise
        raise ReplayError(f"cannot read {name}: {e.strerror or e}") from None
    if packed == "gzip":
        stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
    return stream, (None if path == "-" else raw)


def is_csv(path: str) -> bool:
    name = path[:-3] if path.endswith(".gz") else path
    return name.lower().endswith(".csv")


class _Overlong:
    """A line over the limit: its first bytes and its whole size."""

    __slots__ = ("head", "size")

    def __init__(self, head: bytes, size: int) -> None:
        self.head = head
        self.size = size


_CHUNK = 1 << 16
_BOM = b"\xef\xbb\xbf"


def _chunks(stream: BinaryIO, limit: int) -> Iterator[tuple[bytes | _Overlong, int]]:
    """The lines of ``stream`` in runs, read in chunks: ``(run, lines)``, a
    run being whole lines joined by ``\\n`` (none longer than ``limit``
    bytes, blank ones kept: they count as lines) or an :class:`_Overlong`,
    a line over the limit holding its first 64 KiB, and ``lines`` how many
    lines it is. The rest of an overlong line is read past, never held, so
    memory stays within about ``limit`` plus a chunk whatever the input."""
    # read1: what is there, up to a chunk (a pipe fed slowly is not waited on).
    read = getattr(stream, "read1", stream.read)
    carry = b""
    skipping: _Overlong | None = None
    while True:
        block = read(_CHUNK)
        if not block:
            if skipping is not None:
                yield skipping, 1
            elif carry:
                yield carry, 1
            return
        if skipping is not None:
            cut = block.find(b"\n")
            if cut < 0:
                skipping.size += len(block)
                continue
            skipping.size += cut
            yield skipping, 1
            skipping = None
            block = block[cut + 1 :]
        elif carry:
            block = carry + block
        cut = block.rfind(b"\n")
        if cut < 0:
            carry = block
        else:
            carry = block[cut + 1 :]
            yield from _runs(block[:cut], limit)
        if len(carry) > limit:
            skipping = _Overlong(carry[:_CHUNK], len(carry))
            carry = b""


def _runs(body: bytes, limit: int) -> Iterator[tuple[bytes | _Overlong, int]]:
    """``body`` (whole lines) as :func:`_chunks` gives it: one run when no
    line can be over ``limit``, else the runs between the lines that are."""
    if len(body) <= limit:
        yield body, body.count(b"\n") + 1
        return
    run: list[bytes] = []
    for part in body.split(b"\n"):
        if len(part) <= limit:
            run.append(part)
            continue
        if run:
            yield b"\n".join(run), len(run)
            run = []
        yield _Overlong(part[:_CHUNK], len(part)), 1
    if run:
        yield b"\n".join(run), len(run)


def _lines(stream: BinaryIO, limit: int) -> Iterator[bytes | _Overlong]:
    """The lines of ``stream`` without their newline (:func:`_chunks`, one
    by one): a line longer than ``limit`` bytes comes as an
    :class:`_Overlong`."""
    for run, _ in _chunks(stream, limit):
        if type(run) is bytes:
            yield from run.split(b"\n")
        else:
            yield run


def _csv_lines(
    stream: BinaryIO, limit: int, overlong: list[tuple[int, _Overlong]]
) -> Iterator[str]:
    """The physical lines of a CSV dump as text, for :mod:`csv`: a line over
    ``limit`` bytes is noted in ``overlong`` with its line number and given
    to :mod:`csv` as an empty line."""
    for n, line in enumerate(_lines(stream, limit), start=1):
        if type(line) is _Overlong:
            overlong.append((n, line))
            yield "\n"
            continue
        if n == 1 and line.startswith(_BOM):  # type: ignore[union-attr]
            line = line[3:]  # type: ignore[index]
        yield line.decode("utf-8", "surrogateescape") + "\n"  # type: ignore[union-attr]


def _iter_csv(
    stream: BinaryIO,
    decoder: RecordDecoder,
    kind: str | None,
    name: str,
    row_of: Callable[[dict[str, Any], str | None, str], Any] | None = None,
) -> Iterator[Any]:
    """Records and dead letters of one CSV dump, one per row. A row the
    :mod:`csv` module cannot parse (a cell over its 131,072-character limit)
    and a line over the decoder's limit are dead letters; the rows after them
    are read as usual. ``row_of`` reads a row (default the decoder's
    ``from_row``; ``row_line`` gives wire JSON lines instead)."""
    from_row = row_of or decoder.from_row
    overlong: list[tuple[int, _Overlong]] = []
    reader = csv.DictReader(_csv_lines(stream, decoder.max_line_bytes, overlong))
    n = 1  # rows so far, the header included
    while True:
        row: dict[str, Any] | None = None
        error: csv.Error | None = None
        try:
            row = next(reader)
        except StopIteration:
            pass
        except csv.Error as e:
            error = e
        # Lines read past come first, in the order met, then the row they preceded.
        for line_no, line in overlong:
            yield decoder.too_large(line.head, line.size, f"{name}:line {line_no}")
        overlong.clear()
        if error is not None:
            n += 1
            reason = "too_large" if "field larger" in str(error) else "not_json"
            yield DeadLetter(
                reason=reason, detail=f"CSV row: {error}", raw="", source=f"{name}:{n}"
            )
        elif row is None:
            return
        else:
            n += 1
            yield from_row(row, kind, f"{name}:{n}")


def csv_lines(path: str, decoder: RecordDecoder, kind: str | None) -> Iterator[bytes | DeadLetter]:
    """The rows of CSV dump ``path`` (gzip or not) as wire JSON lines, in
    the decoder's column layout, and the dead letters of the rows that are
    none: what ``fundflow replay --to-kafka`` sends for a CSV dump."""
    stream, raw = _open_binary(path)
    try:
        yield from _iter_csv(stream, decoder, kind, path, decoder.row_line)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ReplayError(f"cannot read {path}: {e}") from None
    finally:
        stream.close()
        if raw is not None and raw is not stream:
            raw.close()


class _Run:
    """A run of whole lines of a JSON-lines dump (:func:`_chunks`), the
    dump's name and the number of its first line."""

    __slots__ = ("data", "first", "source")

    def __init__(self, data: bytes, source: str, first: int) -> None:
        self.data = data
        self.source = source
        self.first = first


def _units(
    paths: list[str], decoder: RecordDecoder, kind: str | None
) -> Iterator[tuple[Any, BinaryIO | None]]:
    """Yields (unit, raw file) for every dump in order: a CSV dump's records
    and dead letters one by one, a JSON-lines dump's lines in runs
    (:class:`_Run`), and for a line longer than the decoder's
    ``max_line_bytes``, read past and never held whole, its ``too_large``
    dead letter."""
    limit = decoder.max_line_bytes
    for path in paths:
        stream, raw = _open_binary(path)
        name = "stdin" if path == "-" else path
        try:
            if is_csv(path):
                for rec in _iter_csv(stream, decoder, kind, name):
                    yield rec, raw
            else:
                n = 1
                for run, lines in _chunks(stream, limit):
                    if type(run) is bytes:
                        yield _Run(run, name, n), raw
                    else:
                        too_long: _Overlong = run  # type: ignore[assignment]
                        yield decoder.too_large(too_long.head, too_long.size, f"{name}:{n}"), raw
                    n += lines
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ReplayError(f"cannot read {name}: {e}") from None
        finally:
            if path != "-":
                stream.close()
                if raw is not None and raw is not stream:
                    raw.close()


def iter_records(
    paths: list[str], decoder: RecordDecoder, kind: str | None = None
) -> Iterator[tuple[Any, BinaryIO | None]]:
    """Yields (record or DeadLetter, raw file) for every line of every dump
    (:func:`_units`, each line decoded by ``decoder``); blank lines are not
    records and are skipped. A line longer than the decoder's
    ``max_line_bytes`` is read past, never held whole, and is one
    ``too_large`` dead letter."""
    dec = decoder.decode
    for unit, raw in _units(paths, decoder, kind):
        if type(unit) is not _Run:
            yield unit, raw
            continue
        for n, line in enumerate(unit.data.split(b"\n"), start=unit.first):
            if not line.strip():
                continue
            rec = dec(line, kind)
            if type(rec) is DeadLetter:
                rec = msgspec.structs.replace(rec, source=f"{unit.source}:{n}")
            yield rec, raw


def _header(path: str, read: bool = True) -> list[str]:
    """Opens a dump file as the replay does (which refuses a compression
    other than gzip) and returns its first line as CSV cells, or nothing
    when ``read`` is false."""
    stream, raw = _open_binary(path)
    try:
        first = stream.readline(MAX_LINE_BYTES).decode("utf-8-sig", "replace") if read else ""
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ReplayError(f"cannot read {path}: {e}") from None
    finally:
        stream.close()
        if raw is not None and raw is not stream:
            raw.close()
    return next(csv.reader([first]), [])


def check_columns(paths: list[str], columns: ColumnMap) -> None:
    """Checks the header row of every CSV dump in ``paths`` (standard input
    is read as it comes) against a column map."""
    for path in paths:
        if path == "-":
            continue
        if not is_csv(path):
            raise ReplayError(f"--map and --const read CSV dumps, not {path}")
        header = _header(path)
        try:
            columns.check_header(header, path)
        except ValueError as e:
            raise ReplayError(str(e)) from None


def check_dumps(paths: list[str], kind: str | None) -> None:
    """Refuses, before a replay starts, a dump it could only turn into dead
    letters whole: a file in a compression other than gzip, and a CSV dump
    whose header has no ``type`` column when ``kind`` is not given (each
    row would be ``unknown_type``). Standard input and other streams are
    not read ahead: they are read once, as they come."""
    for path in paths:
        if path == "-" or not Path(path).is_file():
            continue
        header = _header(path, read=kind is None and is_csv(path))
        if header and "type" not in header:
            raise ReplayError(
                f"{path} has no type column: give the record kind of its rows with --kind "
                f"({', '.join(KINDS)})"
            )


def check_inputs(paths: list[str]) -> None:
    for path in paths:
        if path == "-":
            continue
        p = Path(path)
        if not p.exists():
            raise ReplayError(f"no such file: {path}")
        if p.is_dir():
            raise ReplayError(f"is a directory, not a dump: {path}")
        if not os.access(p, os.R_OK):
            raise ReplayError(f"cannot read {path}: permission denied")


# -- outputs --------------------------------------------------------------------


def _temp_name(target: Path) -> str:
    """A fresh, unguessable name beside ``target`` for its temporary file."""
    return f".{target.name}.{secrets.token_hex(8)}.part"


# The process's own descriptors: a path naming one is a stream, written in place.
_OWN_STREAMS = ("/dev/stdout", "/dev/stderr")
_OWN_STREAM_DIRS = ("/dev/fd/", "/proc/self/fd/")


class AtomicFile:
    """A binary file written under a temporary name in the target's folder
    and moved into place by :meth:`commit` (after an fsync); :meth:`discard`
    removes it. A file that exists under the target's name is complete.

    The temporary file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``
    under a random name, so nothing planted beside the target (a symlink at
    the temporary name) can redirect the writes; the move replaces a symlink
    at the target itself, never the file it points to. A target that is a
    stream rather than a file (a FIFO or character device such as
    ``/dev/null``, or the process's own ``/dev/stdout``, ``/dev/fd/N``) is
    written in place, appended to and never replaced. A directory or any
    other kind of file at the target is refused with :class:`ReplayError`.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.tmp: str | None = None
        folder = self.path.parent
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise ReplayError(f"cannot write {path}: {e.strerror}") from None
        if st is not None and stat.S_ISLNK(st.st_mode) and _is_own_stream(path):
            try:
                st = os.stat(path)
            except OSError as e:
                raise ReplayError(f"cannot write {path}: {e.strerror}") from None
            in_place = True
        elif st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
            in_place = True
        elif st is None or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            in_place = False
        elif stat.S_ISDIR(st.st_mode):
            raise ReplayError(f"cannot write {path}: is a directory")
        else:
            raise ReplayError(f"cannot write {path}: not a regular file")
        if in_place:
            flags = os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC
            try:
                fd = os.open(path, flags)
            except OSError as e:
                raise ReplayError(f"cannot write {path}: {e.strerror}") from None
        else:
            if not folder.is_dir():
                raise ReplayError(f"cannot write {path}: no such directory {folder}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = -1
            for _ in range(100):
                tmp = str(folder / _temp_name(self.path))
                try:
                    fd = os.open(tmp, flags, 0o600)
                except FileExistsError:
                    continue
                except OSError as e:
                    raise ReplayError(f"cannot write {path}: {e.strerror}") from None
                self.tmp = tmp
                break
            if fd < 0:
                raise ReplayError(f"cannot write {path}: no free temporary name in {folder}")
        self.file: IO[bytes] = os.fdopen(fd, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        """Flushes and moves the file into place; raises ``OSError`` (disk
        full, ...) with the temporary file still there for :meth:`discard`."""
        self.file.flush()
        if self.tmp is None:
            self.file.close()
            return
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        self.tmp = None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None


def _is_own_stream(path: str) -> bool:
    return path in _OWN_STREAMS or path.startswith(_OWN_STREAM_DIRS)


class _Progress:
    """A one-line progress report on stderr, refreshed a few times a second."""

    def __init__(self, total_bytes: int, enabled: bool) -> None:
        self.total = total_bytes
        self.enabled = enabled
        self.started = time.perf_counter()
        self.last = 0.0
        self.done_bytes = 0

    def update(self, n: int, raw: BinaryIO | None) -> None:
        now = time.perf_counter()
        if now - self.last < 0.25:
            return
        self.last = now
        rate = n / max(now - self.started, 1e-9)
        pct = ""
        if raw is not None and self.total:
            try:
                pct = f" {min(100.0, 100.0 * (self.done_bytes + raw.tell()) / self.total):5.1f}%"
            except (OSError, ValueError):
                pct = ""
        sys.stderr.write(f"\r{n:>12,} records{pct}  {rate:,.0f}/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


#: The replay hands its counters to the metrics once per this many records,
#: with one time a record took for ``fundflow_processing_seconds``: that of
#: the record that ends the batch, or of a run of lines (Engine.process_batch)
#: that does, the run's time over its records.
METRICS_BATCH = 4096
#: ``topic`` label of the records a replay reads (they come from files).
REPLAY_TOPIC = "replay"
#: ``kind`` label of lines that could not be decoded into any record kind.
INVALID_KIND = "invalid"


def replay(
    paths: list[str],
    *,
    config: Config,
    kind: str | None = None,
    sink: AlertSink | None = None,
    alerts_out: IO[bytes] | AtomicFile | None = None,
    deadletter_out: IO[bytes] | AtomicFile | None = None,
    progress: bool = False,
    finish: bool = True,
    metrics: Metrics | None = None,
    subject_limit: int = DEFAULT_SUBJECT_LIMIT,
    max_line_bytes: int = MAX_LINE_BYTES,
    detectors: list[str] | None = None,
    columns: ColumnMap | None = None,
) -> Summary:
    """Runs the engine over ``paths`` in order and returns the figures.

    A line (JSONL) or physical line (CSV) longer than ``max_line_bytes`` is a
    ``too_large`` dead letter, read past without being held in memory.

    With ``metrics``, reports to it as it goes: the counters in batches of
    :data:`METRICS_BATCH` records and once more at the end (so after the
    return the metrics equal the summary), one call per alert emitted, and
    the engine's state size at most once a second and at the end.
    """
    engine = Engine(config, detectors)
    decoder = RecordDecoder(config.engine.zone, max_line_bytes=max_line_bytes)
    decoder.columns = columns  # a foreign CSV layout (``--map``/``--const``)
    summary = Summary()
    encode = msgspec.json.encode
    total_bytes = sum(os.path.getsize(p) for p in paths if p != "-" and os.path.isfile(p))
    bar = _Progress(total_bytes, progress)
    dead = summary.dead_letters
    started = time.perf_counter()
    live = metrics is not None
    report = _Reporter(engine, metrics if metrics is not None else NullMetrics(), dead)
    reporter = AlertReporter(report.metrics, subject_limit) if live else None

    def carry(alerts: list[Alert]) -> None:
        summary.revisions += len(alerts)
        for a in alerts:
            summary.alerts.setdefault(a.detector, {})[a.alert_id] = a.severity
            if alerts_out is not None:
                alerts_out.write(encode(a) + b"\n")
            if reporter is not None:
                reporter.report(a)
        if sink is not None:
            sink.upsert(alerts)

    def refuse(letter: DeadLetter) -> None:
        dead[letter.reason] = dead.get(letter.reason, 0) + 1
        if deadletter_out is not None:
            deadletter_out.write(encode(letter) + b"\n")

    def refuse_all(letters: list[DeadLetter]) -> None:
        for letter in letters:
            refuse(letter)
        letters.clear()

    n = 0
    # Records go to the ordering stage, which hands them to the detectors
    # in event-time order per feed (detectors/ordering.py); a JSON-lines
    # dump's runs of lines are decoded and submitted by the engine in one
    # call each (Engine.process_batch).
    process = engine.submit
    process_batch = engine.process_batch
    clock = time.perf_counter
    kinds = report.kinds
    n_custody = n_clearing = 0
    # The next record number at which a batch ends. A comparison, not n & mask:
    # ints compare without allocating, and every instruction here is paid
    # once per record.
    batch_end = METRICS_BATCH
    last_raw: BinaryIO | None = None
    for unit, raw in _units(paths, decoder, kind):
        t = type(unit)
        if t is _Run:
            t0 = clock()
            batch = process_batch(
                unit.data,
                source=unit.source,
                first_line=unit.first,
                kind=kind,
                max_line_bytes=max_line_bytes,
            )
            # The mean time a record of the run took.
            sample = (clock() - t0) / (batch.read or 1)
            n += batch.read
            if batch.alerts:
                carry(batch.alerts)
            for letter in batch.dead_letters:
                refuse(letter)
            if live:
                for name, count in batch.kinds.items():
                    if name == "custody_txn":
                        n_custody += count
                    elif name == "clearing_txn":
                        n_clearing += count
                    else:
                        kinds[RECORD_TYPES[name]] += count
            if n < batch_end:
                continue
        else:
            n += 1
            if t is DeadLetter:
                refuse(unit)
                continue
            if live:
                # The one count metrics add per record (records_in by kind); the
                # two transaction kinds, most of any stream, by identity: hashing a
                # record class costs more than the comparisons.
                if t is CustodyTxn:
                    n_custody += 1
                elif t is ClearingTxn:
                    n_clearing += 1
                else:
                    kinds[t] += 1
            if n < batch_end:
                alerts = process(unit)
                if alerts:
                    carry(alerts)
                if engine.dead_letters:
                    refuse_all(engine.dead_letters)
                continue
            # The first decodable record at or past a batch's end: time it.
            t0 = clock()
            alerts = process(unit)
            sample = clock() - t0
            if alerts:
                carry(alerts)
            if engine.dead_letters:
                refuse_all(engine.dead_letters)
        # At or past a batch's end: hand the counters over and refresh the
        # progress.
        batch_end = n + METRICS_BATCH
        if live:
            report.metrics.processing_seconds(sample)
            report.flush(n, n_custody, n_clearing, state=False)
        if progress:
            if raw is not last_raw and last_raw is not None:
                bar.done_bytes += _size(last_raw)
            last_raw = raw
            bar.update(n, raw)
    if finish:
        carry(engine.finish())
    else:
        carry(engine.release())
    bar.close()
    if live:
        report.flush(n, n_custody, n_clearing, state=True)
    summary.read = n
    summary.accepted = engine.counts["accepted"]
    summary.duplicates = engine.counts["duplicates"]
    summary.seconds = time.perf_counter() - started
    if sink is not None:
        sink.flush()
    return summary


class _Reporter:
    """The replay's side of the metrics: what was already reported, so each
    flush hands over only the differences. ``kinds`` (records decoded, per
    record type, the transaction kinds apart) is the one count the replay loop
    keeps for it, and only while metrics are on."""

    def __init__(self, engine: Engine, metrics: Metrics, dead: dict[str, int]) -> None:
        self.engine = engine
        self.metrics = metrics
        self.dead = dead
        self.kinds: dict[type, int] = dict.fromkeys(RECORD_TYPES.values(), 0)
        self._sent_kinds: dict[type, int] = dict.fromkeys(RECORD_TYPES.values(), 0)
        self._sent_invalid = 0
        self._sent_dead: dict[str, int] = {}
        self._sent_accepted = 0
        self._sent_duplicates = 0
        self._state_at = -1.0

    def flush(self, read: int, custody: int, clearing: int, *, state: bool) -> None:
        """Reports what changed since the last flush; ``read``, ``custody`` and
        ``clearing`` are the records read and the transactions of each kind
        decoded so far. The state size is counted when ``state`` is set or a
        second has passed since it last was."""
        m = self.metrics
        self.kinds[CustodyTxn] = custody
        self.kinds[ClearingTxn] = clearing
        decoded = 0
        for t, count in self.kinds.items():
            decoded += count
            delta = count - self._sent_kinds[t]
            if delta:
                m.records_in(REPLAY_TOPIC, t.TYPE, delta)
                self._sent_kinds[t] = count
        invalid = read - decoded
        if invalid != self._sent_invalid:
            m.records_in(REPLAY_TOPIC, INVALID_KIND, invalid - self._sent_invalid)
            self._sent_invalid = invalid
        counts = self.engine.counts
        if counts["accepted"] != self._sent_accepted:
            m.accepted(counts["accepted"] - self._sent_accepted)
            self._sent_accepted = counts["accepted"]
        if counts["duplicates"] != self._sent_duplicates:
            m.duplicates(counts["duplicates"] - self._sent_duplicates)
            self._sent_duplicates = counts["duplicates"]
        for reason, count in self.dead.items():
            delta = count - self._sent_dead.get(reason, 0)
            if delta:
                m.dead_letters(reason, delta)
                self._sent_dead[reason] = count
        newest = self.engine.now
        if newest >= 0:
            m.last_record_timestamp_seconds(newest / 1000)
            m.event_time_lag_seconds(time.time() - newest / 1000)
        now = time.perf_counter()
        if state or now - self._state_at >= 1.0:
            self._state_at = now
            m.state_size(*self.engine.state_size())


def _size(raw: BinaryIO) -> int:
    try:
        return os.fstat(raw.fileno()).st_size
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0

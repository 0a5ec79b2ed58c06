"""Dumps into Kafka: ``fundflow replay --to-kafka`` (kafka-python producer).

Each line goes to the topic of its kind, as it was written, keyed by
:meth:`~fundflow.detectors.reference.Reference.key_of`: the rule the
engine orders and deduplicates by, read off the record decoded as the
worker will decode it, with the reference records sent before. A
transaction whose findings belong to other subjects too (the payee's
institution of a payment between two reserves, an unlicensed initiator, a
bank holding custody accounts without the licence, an institution moving
money between its own accounts: :meth:`Engine.subjects_of
<fundflow.detectors.engine.Engine.subjects_of>`, from the workers'
detector configuration) is sent once more, keyed by each of them, to every
other partition they are on: each partition's engine keeps only its own
subjects' alerts, and this way it has every record they need. A record the
decoder refuses has no key (any partition does: the worker dead-letters it,
with its topic, partition and offset). Reference records go first, all of
them, and are flushed before any other record, so a worker never meets a
transaction whose accounts it cannot know yet. Transactions carry their
event time as the Kafka timestamp; reference records, reports and records
the decoder refuses the time they are sent.

A line that names no known kind (not JSON, not an object, no ``type``) has
no topic: it goes straight to the dead-letter topic with the reason the
decoder gives, keyed ``replay``.
"""

from __future__ import annotations

import gzip
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from fundflow.detectors import Config, Engine, load_config
from fundflow.detectors.reference import Reference
from fundflow.replay import csv_lines, is_csv
from fundflow.schemas.decode import ColumnMap, DeadLetter, RecordDecoder
from fundflow.schemas.records import ClearingTxn, CustodyTxn

from .settings import KafkaSettings
from .topics import TOPIC_OF_KIND, TopicNames, partition_for


class _Head(msgspec.Struct):
    """The kind of a line, of any type: which topic it goes to."""

    type: Any = None


@dataclass
class ProduceSummary:
    sent: dict[str, int] = field(default_factory=dict)  # short topic -> records
    dead_letters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: records sent again to another subject's partition (``DumpProducer._keys``)
    copies: int = 0

    @property
    def total(self) -> int:
        return sum(self.sent.values()) + sum(self.dead_letters.values())

    def render(self) -> str:
        parts = ", ".join(f"{t} {n:,}" for t, n in sorted(self.sent.items()))
        dead = sum(self.dead_letters.values())
        rate = self.total / self.seconds if self.seconds > 0 else 0.0
        line = f"sent {sum(self.sent.values()):,} records ({parts})"
        if self.copies:
            line += f", {self.copies:,} copies to other subjects' partitions"
        if dead:
            line += (
                f", {dead:,} unreadable lines to the dead-letter topic ("
                + ", ".join(f"{r} {n}" for r, n in sorted(self.dead_letters.items()))
                + ")"
            )
        return line + f" in {self.seconds:.2f} s, {rate:,.0f} records/s"


def _lines(path: str) -> Iterator[bytes]:
    """The lines of a dump (``-``: standard input). Gzip is told by the
    first bytes, whatever the name; another compression is an ``OSError``."""
    from fundflow.sniff import sniff  # noqa: PLC0415

    name = "stdin" if path == "-" else path
    raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        stream, packed = sniff(raw)
        if packed == "gzip":
            stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
        elif packed is not None:
            raise OSError(f"{name} is {packed}-compressed, and only gzip is read")
        yield from stream
    finally:
        if path != "-":
            raw.close()


class DumpProducer:
    """Sends dumps to the topics of one namespace.

    ``rate``: records per second (``None``: as fast as possible).
    ``timestamps``: ``"event"`` (transactions carry their event time) or
    ``"send"`` (every record carries the wall clock when it is sent: what the
    latency benchmark measures from).
    ``file_order``: every record in the dumps' own order, reference records
    where they stand (as a live system publishes an account when it opens
    it); by default the reference records of every dump go first, so the
    workers know them all before the first transaction. Either way a
    record is keyed by the reference records sent before it.
    ``kind`` and ``columns``: how a CSV dump (told by its ``.csv`` name,
    as ``fundflow replay`` tells it) is read, the kind of its rows and a
    foreign layout (``--kind``, ``--map``, ``--const``); each row is sent as
    the wire JSON line that says the same (:meth:`RecordDecoder.row_line`).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        rate: float | None = None,
        timestamps: str = "event",
        zone: str = "Asia/Shanghai",
        producer: Any = None,
        progress: Callable[[int], None] | None = None,
        config: Config | None = None,
        file_order: bool = False,
        kind: str | None = None,
        columns: ColumnMap | None = None,
    ) -> None:
        self.names = TopicNames(settings.namespace)
        self.kind = kind
        self.rate = rate
        self.file_order = file_order
        self.timestamps = timestamps
        self.decoder = RecordDecoder(zone)
        self.decoder.columns = columns
        self.head = msgspec.json.Decoder(_Head)
        # The workers' detectors, for the subjects each record reaches
        # (Engine.subjects_of); only their shared reference is fed.
        self.engine = Engine(config or load_config())
        self.ref: Reference = self.engine.ref
        self._partitions: dict[str, int] = {}
        self.progress = progress
        if producer is None:
            from kafka import KafkaProducer  # noqa: PLC0415

            producer = KafkaProducer(
                acks="all",
                linger_ms=20,
                batch_size=256 * 1024,
                max_request_size=2 * 1024 * 1024,
                **settings.client_options(),
            )
        self.producer = producer
        self.summary = ProduceSummary()
        self._n = 0
        self._t0 = 0.0

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()

    def send_dumps(self, paths: list[str]) -> ProduceSummary:
        """Reference records of every dump first (flushed), then the rest;
        with ``file_order``, everything in one pass. The summary counts
        every call's records."""
        started = time.perf_counter()
        self._t0 = time.monotonic()
        self._n = 0
        stdin_lines: list[bytes] | None = None
        if "-" in paths and not self.file_order:
            stdin_lines = list(_lines("-"))  # read twice below
        passes: tuple[bool | None, ...] = (None,) if self.file_order else (True, False)
        for reference_pass in passes:
            for path in paths:
                if is_csv(path):
                    self._csv(path, reference_pass)
                    continue
                lines = stdin_lines if path == "-" else _lines(path)
                for n, line in enumerate(lines, start=1):  # type: ignore[arg-type]
                    self._line(line, reference_pass, path, n)
            self.producer.flush()
        self.summary.seconds += time.perf_counter() - started
        return self.summary

    def _csv(self, path: str, reference_pass: bool | None) -> None:
        """One CSV dump's rows, as wire JSON lines; a row that is none is a
        dead letter (in the pass for the rest), as ``fundflow replay`` has it."""
        for n, item in enumerate(csv_lines(path, self.decoder, self.kind), start=2):
            if type(item) is DeadLetter:
                if not reference_pass:
                    self._letter(item)  # type: ignore[arg-type]
            else:
                self._line(item, reference_pass, path, n)  # type: ignore[arg-type]

    def _line(self, line: bytes, reference_pass: bool | None, path: str, n: int) -> None:
        """One dump line, in the pass for reference records (``True``), for
        the rest (``False``), or in the one pass of ``file_order`` (``None``)."""
        line = line.rstrip(b"\r\n")
        if not line.strip():
            return
        try:
            head = self.head.decode(line)
            kind = head.type
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            # RecursionError: nesting too deep to parse; the line is unreadable.
            head, kind = None, None
        short = TOPIC_OF_KIND.get(kind) if type(kind) is str else None
        if short is None:
            if not reference_pass:
                self._unreadable(line, path, n)
            return
        if reference_pass is None:
            reference_pass = short == "reference"
        elif (short == "reference") != reference_pass:
            return
        rec = self.decoder.decode(line)
        t = type(rec)
        keys: tuple[str | None, ...] = (None,)
        ts = None
        topic = self.names.topic(short)
        if t is not DeadLetter:
            if reference_pass:
                self.ref.add(rec)  # type: ignore[arg-type]
                keys = (self.ref.key_of(rec),)  # type: ignore[arg-type]
            else:
                keys = self._keys(topic, rec)
            if t is CustodyTxn or t is ClearingTxn:
                ts = rec.ts  # type: ignore[union-attr]
        if self.timestamps == "send":
            ts = int(time.time() * 1000)
        self._throttle()
        for key in keys:
            self.producer.send(
                topic,
                value=line,
                key=key.encode() if key is not None else None,
                timestamp_ms=ts,
            )
        self.summary.sent[short] = self.summary.sent.get(short, 0) + 1
        if len(keys) > 1:
            self.summary.copies += len(keys) - 1

    def _keys(self, topic: str, rec: Any) -> tuple[str, ...]:
        """The keys ``rec`` is sent under: its feed, then each other subject
        whose findings it can change and whose partition differs
        (:meth:`Engine.subjects_of`), so that every partition's engine has
        what it needs for the alerts it keeps."""
        subjects = self.engine.subjects_of(rec)
        if len(subjects) == 1:
            return subjects
        n = self._partitions.get(topic)
        if n is None:
            n = self._partitions[topic] = len(self.producer.partitions_for(topic) or (0,))
        if n == 1:
            return subjects[:1]
        keys: list[str] = []
        seen: set[int] = set()
        for subject in subjects:
            p = partition_for(subject, n)
            if p not in seen:
                seen.add(p)
                keys.append(subject)
        return tuple(keys)

    def _unreadable(self, line: bytes, path: str, n: int) -> None:
        rec = self.decoder.decode(line)
        if type(rec) is not DeadLetter:  # a known kind after all: cannot happen
            return
        self._letter(msgspec.structs.replace(rec, source=f"{path}:{n}"))

    def _letter(self, letter: DeadLetter) -> None:
        self.summary.dead_letters[letter.reason] = (
            self.summary.dead_letters.get(letter.reason, 0) + 1
        )
        self._throttle()
        self.producer.send(self.names.deadletter, value=msgspec.json.encode(letter), key=b"replay")

    def _throttle(self) -> None:
        self._n += 1
        if self.progress is not None and not self._n & 4095:
            self.progress(self._n)
        if self.rate:
            due = self._t0 + self._n / self.rate
            wait = due - time.monotonic()
            if wait > 0.001:
                time.sleep(wait)


def create_topics(
    settings: KafkaSettings, partitions: int | None = None, *, timeout_s: float | None = None
) -> dict[str, str]:
    """Creates every topic of the namespace (idempotent): ``name -> "created"
    | "exists"``. Input topics get ``partitions`` (default: the settings');
    reference, alerts and the two checkpoint tables are compacted. ``timeout_s`` bounds
    the wait for the broker, at bootstrap and for each request (default:
    kafka-python's, 30 s)."""
    from kafka.admin import KafkaAdminClient, NewTopic  # noqa: PLC0415
    from kafka.errors import TopicAlreadyExistsError  # noqa: PLC0415

    names = TopicNames(settings.namespace)
    n = partitions or settings.partitions
    compacted = {"cleanup.policy": "compact"}
    # Records carry their event time as the Kafka timestamp, and a dump of
    # last year replayed today is older than any time retention: the input
    # and dead-letter topics are kept until an operator sets a retention.
    keep = {"retention.ms": "-1"}
    specs = {
        # The reference topic is a global table's changelog: one partition.
        names.reference: (1, compacted),
        names.custody: (n, keep),
        names.clearing: (n, keep),
        names.reports: (n, keep),
        names.alerts: (n, compacted),
        names.deadletter: (1, keep),
        # The checkpoint table's changelog: co-partitioned with the inputs,
        # compacted; small segments so superseded snapshots are cleaned up
        # within the hour.
        names.checkpoints: (
            n,
            {**compacted, "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"},
        ),
        # The whole-stream worker's, alike (its one engine's checkpoint is
        # on partition 0).
        names.whole_checkpoints: (
            n,
            {**compacted, "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"},
        ),
    }
    options = settings.client_options()
    if timeout_s is not None:
        ms = max(1, round(timeout_s * 1000))
        options["request_timeout_ms"] = ms
        if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
            options["bootstrap_timeout_ms"] = ms
    admin = KafkaAdminClient(**options)
    result: dict[str, str] = {}
    try:
        existing = set(admin.list_topics())
        todo = []
        for name, (parts, cfg) in specs.items():
            if name in existing:
                result[name] = "exists"
            else:
                todo.append(
                    NewTopic(name, num_partitions=parts,
                             replication_factor=settings.replication_factor, topic_configs=cfg)
                )  # fmt: skip
        for topic in todo:
            try:
                admin.create_topics([topic])
                result[topic.name] = "created"
            except TopicAlreadyExistsError:
                result[topic.name] = "exists"
    finally:
        admin.close()
    return result

"""Topic names, the record kinds each topic carries, and the keying rules.

Pure: no Kafka client is imported here. Every name takes the pipeline's
namespace as a prefix, so several pipelines (and test runs) share a cluster:

>>> names = TopicNames("t1.")
>>> names.custody, names.group
('t1.fundflow.custody', 't1.fundflow.worker')
>>> partition_for("P001", 4), partition_for("I002", 4)
(3, 1)

A record's key is its subject
(:meth:`~fundflow.detectors.reference.Reference.key_of`, the rule the
engine orders by); :func:`partition_for` is the partition Kafka's default
partitioner gives that key, and so the partition whose engine owns the
subject's alerts.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Input topics and the record kinds they carry (``type`` may be omitted on
#: a topic that carries one kind; it is required on the others).
INPUT_KINDS: dict[str, tuple[str, ...]] = {
    "custody": ("custody_txn",),
    "clearing": ("clearing_txn",),
    "reports": ("reserve_report", "balance"),
}
REFERENCE_KINDS = ("entity", "account", "product", "loan")

#: The topic (short name) each record kind goes to.
TOPIC_OF_KIND: dict[str, str] = {
    **{k: "reference" for k in REFERENCE_KINDS},
    "custody_txn": "custody",
    "clearing_txn": "clearing",
    "reserve_report": "reports",
    "balance": "reports",
}

#: Compacted topics: the latest value per key is what matters.
COMPACTED = frozenset({"reference", "alerts", "checkpoints"})

#: Merge order of the co-partitioned inputs when two records share an event
#: time (see :mod:`fundflow.streams.merge`).
INPUT_RANK = {"custody": 0, "clearing": 1, "reports": 2}


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Every topic and group name of one pipeline, under ``namespace``.
    ``whole``: the names of the whole-stream worker (``fundflow worker
    --whole-stream``), which has a consumer group and a checkpoint table of
    its own and shares every other topic.

    >>> TopicNames("t1.", whole=True).group, TopicNames(whole=True).checkpoints
    ('t1.fundflow.worker-whole', 'fundflow.checkpoints-whole')
    """

    namespace: str = ""
    whole: bool = False

    def topic(self, short: str) -> str:
        return f"{self.namespace}fundflow.{short}"

    @property
    def reference(self) -> str:
        return self.topic("reference")

    @property
    def custody(self) -> str:
        return self.topic("custody")

    @property
    def clearing(self) -> str:
        return self.topic("clearing")

    @property
    def reports(self) -> str:
        return self.topic("reports")

    @property
    def alerts(self) -> str:
        return self.topic("alerts")

    @property
    def deadletter(self) -> str:
        return self.topic("deadletter")

    @property
    def checkpoints(self) -> str:
        """The worker's checkpoint table (compacted, keyed by partition)."""
        return self.topic("checkpoints-whole" if self.whole else "checkpoints")

    @property
    def whole_checkpoints(self) -> str:
        """The whole-stream worker's checkpoint table."""
        return self.topic("checkpoints-whole")

    @property
    def group(self) -> str:
        """The workers' consumer group (the app id)."""
        return self.topic("worker-whole" if self.whole else "worker")

    def needed(self) -> list[str]:
        """The topics this worker reads or writes: :meth:`all` but the
        other kind of worker's checkpoint table (a deployment of one
        partition never runs a whole-stream worker)."""
        other = self.topic("checkpoints" if self.whole else "checkpoints-whole")
        return [t for t in self.all() if t != other]

    def inputs(self) -> dict[str, str]:
        """Full topic name -> short name, for the three co-partitioned inputs."""
        return {self.topic(s): s for s in INPUT_KINDS}

    def all(self) -> list[str]:
        return [
            self.topic(s)
            for s in (
                "reference", *INPUT_KINDS, "alerts", "deadletter", "checkpoints",
                "checkpoints-whole",
            )
        ]  # fmt: skip


def check_namespace(namespace: str) -> str:
    """A namespace is a topic-name prefix: Kafka's legal characters only."""
    import re

    if namespace and not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", namespace):
        raise ValueError(f"namespace {namespace!r} may hold only letters, digits, '.', '_' and '-'")
    return namespace


def partition_for(key: str, partitions: int) -> int:
    """The partition of a keyed record among ``partitions``: Kafka's
    default partitioner (murmur2 of the key's UTF-8 bytes, made positive,
    modulo the partition count), as the producers and the Java client
    compute it."""
    from kafka.partitioner.default import murmur2  # noqa: PLC0415

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions

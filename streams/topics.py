"""Topic names, the record kinds each topic carries, and the keying rules.

Pure: no Kafka client is imported here. Every name takes the pipeline's
namespace as a prefix, so several pipelines (and test runs) share a cluster:

>>> names = TopicNames("t1.")
>>> names.custody, names.group
('t1.fundflow.custody', 't1.fundflow.worker')
>>> record_key({"type": "custody_txn", "platform_id": "P001"}, {})
'P001'
>>> owners = {"ACC-R": ("I002", "client_reserve")}
>>> record_key({"type": "clearing_txn", "initiator_id": "BANK", "payer_account": "X",
...             "payee_account": "ACC-R"}, owners)
'I002'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    """Every topic and group name of one pipeline, under ``namespace``."""

    namespace: str = ""

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
        return self.topic("checkpoints")

    @property
    def group(self) -> str:
        """The workers' consumer group (the app id)."""
        return self.topic("worker")

    def inputs(self) -> dict[str, str]:
        """Full topic name -> short name, for the three co-partitioned inputs."""
        return {self.topic(s): s for s in INPUT_KINDS}

    def all(self) -> list[str]:
        return [
            self.topic(s)
            for s in ("reference", *INPUT_KINDS, "alerts", "deadletter", "checkpoints")
        ]


def check_namespace(namespace: str) -> str:
    """A namespace is a topic-name prefix: Kafka's legal characters only."""
    import re

    if namespace and not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", namespace):
        raise ValueError(f"namespace {namespace!r} may hold only letters, digits, '.', '_' and '-'")
    return namespace


def _id(value: Any) -> str | None:
    return value if type(value) is str and value else None


def record_key(rec: Mapping[str, Any], accounts: Mapping[str, tuple[str, str]]) -> str | None:
    """The Kafka key of one record (a decoded JSON object with ``type``).

    ``accounts`` maps account id -> (owner id, role), from the reference
    records sent before. ``None`` when the record lacks its key field (it is
    malformed and will be dead-lettered by the worker; any partition does).

    * reference records: their own id;
    * ``custody_txn``: ``platform_id``;
    * ``clearing_txn``: the owner of the ``client_reserve`` account when the
      payer or payee is one (so each payment institution's reserve flows stay
      on one partition), else ``initiator_id``;
    * ``reserve_report``: ``institution_id``; ``balance``: the account's
      owner (the account id when the account is unknown).
    """
    kind = rec.get("type")
    if kind == "custody_txn":
        return _id(rec.get("platform_id"))
    if kind == "clearing_txn":
        for side in ("payer_account", "payee_account"):
            acc = accounts.get(rec.get(side))  # type: ignore[arg-type]
            if acc is not None and acc[1] == "client_reserve":
                return acc[0]
        return _id(rec.get("initiator_id"))
    if kind == "reserve_report":
        return _id(rec.get("institution_id"))
    if kind == "balance":
        acc_id = _id(rec.get("account_id"))
        acc = accounts.get(acc_id) if acc_id else None  # type: ignore[arg-type]
        return acc[0] if acc is not None else acc_id
    if kind == "entity":
        return _id(rec.get("entity_id"))
    if kind == "account":
        return _id(rec.get("account_id"))
    if kind == "product":
        return _id(rec.get("product_id"))
    if kind == "loan":
        return _id(rec.get("loan_id"))
    return None

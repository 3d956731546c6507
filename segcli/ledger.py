"""The ledger: every object a reader or writer repaired, clipped, converted, skipped or dropped.

Readers and writers never change data silently; they add an entry here. The CLI prints the
ledger as a rich summary and saves it as ``OUTPUT.report.json``; ``--strict`` fails when it holds
any entry that loses or changes data. Entries of kind "error" are invalid input: ``convert``
refuses to write, ``stats`` lists them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from segcli.errors import SegcliError

ERROR = "error"
MISSING = "missing"
LOSSY_ACTIONS = ("dropped", "skipped", "clipped", "repaired", "changed")
REPAIRED_SAME_MASK = "repaired (mask unchanged)"
"""A geometry repair whose rasterised mask equals the original's: what COCO holds and a model
trains on is the same, so it is noted but is not a change (``--strict`` and ``stats --check``
pass)."""
INFO_ACTIONS = ("converted", "kept", "defaulted", "renumbered", "matched", REPAIRED_SAME_MASK)
ACTIONS = (ERROR, MISSING) + LOSSY_ACTIONS + INFO_ACTIONS


@dataclass(frozen=True)
class LedgerEntry:
    """One change or problem.

    Attributes:
        file: the annotation file (or image file) concerned.
        image: image file name, "" for file-level entries.
        item: the object, e.g. "region 3" or "annotation id 17"; "" for image-level entries.
        action: one of ACTIONS: "error" (invalid input), "missing" (an image file not found or
            unreadable), LOSSY_ACTIONS (data lost or changed) or INFO_ACTIONS (kept, nothing lost).
        reason: what happened and why.
    """

    file: str
    image: str
    item: str
    action: str
    reason: str

    def line(self) -> str:
        """One-line description: file: image: item: action: reason."""
        where = ": ".join(p for p in (self.file, self.image and f"image '{self.image}'", self.item) if p)
        return f"{where}: {self.action}: {self.reason}"


class Ledger:
    """An append-only list of ``LedgerEntry`` for one job."""

    def __init__(self, file: str = ""):
        self.file = file
        self.entries: list[LedgerEntry] = []

    def add(self, action: str, reason: str, image: str = "", item: str = "",
            file: str | None = None) -> None:
        """Record one entry (``file`` defaults to the ledger's file)."""
        self.entries.append(LedgerEntry(file if file is not None else self.file, image, item,
                                        action, reason))

    def error(self, reason: str, image: str = "", item: str = "") -> None:
        """Record invalid input that a strict reader would refuse."""
        self.add(ERROR, reason, image, item)

    @property
    def errors(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.action == ERROR]

    @property
    def lossy(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.action in LOSSY_ACTIONS]

    def raise_errors(self) -> None:
        """Raise the first error as a SegcliError (with the count of the others)."""
        errors = self.errors
        if not errors:
            return
        first = errors[0]
        more = f" (and {len(errors) - 1} more problems; `segcli stats` lists them)" if len(errors) > 1 else ""
        item = ": ".join(p for p in (first.image and f"image '{first.image}'", first.item) if p)
        raise SegcliError(first.reason + more, first.file, item or None)

    def counts(self) -> Counter:
        """Number of entries per (action, reason-head) for summaries."""
        return Counter((e.action, _reason_head(e.reason)) for e in self.entries)

    def to_json(self) -> dict:
        """JSON-able report: totals per action and every entry."""
        totals = Counter(e.action for e in self.entries)
        return {"totals": dict(sorted(totals.items())),
                "entries": [asdict(e) for e in self.entries]}


def _reason_head(reason: str) -> str:
    """The general part of a reason (before a colon), so similar entries group together."""
    return reason.split(":", 1)[0]

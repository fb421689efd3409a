"""The numeric series the collector keeps from each snapshot.

One `Sample` per snapshot: host-wide numbers in the catalog's column order
(the hot path of storage, charts and detection) and per-entity numbers (cores,
mounts, disks, network interfaces) in `detail`. `osmon.wire` has already
checked that every one of them is a finite number within its unit's range.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from osmon import catalog
from osmon.wire import Snapshot

COLUMNS = catalog.COLUMNS
# Metric name -> its position in Sample.values.
POSITION: dict[str, int] = {m.name: i for i, m in enumerate(catalog.STORED)}
# The names a snapshot's metrics are looked up under, by column; a derived one (disk.max) is never
# among them: wire keeps only the metrics agents send.
_FROM_WIRE = tuple(m.name for m in catalog.STORED)
_DISK_MAX = POSITION["disk.max"]


class Sample(NamedTuple):
    """The numbers of one snapshot, ready for storage."""

    host: str
    seq: int
    ts: float
    values: tuple[float | None, ...]  # one per catalog.STORED metric, in column order
    detail: dict[str, Any]  # {"cpu.core": [...], "disk.percent": {mount: %}, "disk.io": ..., "net.io": ...}

    def value(self, metric: str) -> float | None:
        """A host-wide number by its catalog name ("load.1"); None where the snapshot lacked it."""
        return self.values[POSITION[metric]]


def extract(snapshot: Snapshot) -> Sample:
    """The numbers of a validated snapshot."""
    values: list[float | None] = list(map(snapshot.metrics.get, _FROM_WIRE))
    usage = [v for v in snapshot.series.get("disk.percent", {}).values() if v is not None]
    values[_DISK_MAX] = max(usage) if usage else None
    return Sample(snapshot.host, snapshot.seq, snapshot.ts, tuple(values), snapshot.series)

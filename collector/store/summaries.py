"""Each host's summary: the few numbers of its latest snapshot that the overview filters and sorts on.

The overview ranks every host of the fleet at each refresh (worst first, or by CPU,
memory, fullest disk, load, uptime). Reading and decoding 10,000 latest snapshots
for that was nine tenths of its time; a summary row per host, written at ingest
in the same transaction as the latest snapshot it summarises, is read instead,
and only the page's hosts have their snapshots decoded. Both backends write it
through `SummaryWriter` (portable SQL, `?` placeholders rewritten by the
backend); a host without a summary yet (data stored before migration 9 / 4) is
read from its snapshot as before, until its next snapshot writes one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collector.store.records import Received
from osmon import wire

# (host_id, ts, cpu, mem, fullest disk, load1, boot) of a host's latest snapshot.
SummaryRow = tuple[int, float, Any, Any, Any, Any, Any]

_UPSERT = (
    "INSERT INTO host_summary (host_id, ts, cpu, mem, disk, load1, boot) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (host_id) DO UPDATE SET ts = excluded.ts, cpu = excluded.cpu, mem = excluded.mem, "
    "disk = excluded.disk, load1 = excluded.load1, boot = excluded.boot"
)


def summary_row(host_id: int, r: Received) -> SummaryRow:
    """The summary of snapshot `r`: numbers the collector validated already, and its boot time.

    boot.time is no stored column: ingest keeps it from decoding (`Received.boot`); a record
    without it has it read from the message (one msgpack unpack, ~13 µs a host a batch). An
    agent too old to send it has no boot time here (uptime sorts last); the overview row still
    shows its uptime, from the snapshot.
    """
    s = r.sample
    boot = r.boot
    if boot is None:  # not kept on receipt (a record made elsewhere), or not sent
        peeked = wire.peek(r.raw, ("boot.time",), "")
        boot = peeked.metrics.get("boot.time") if peeked else None
    return (
        host_id,
        s.ts,
        s.value("cpu.percent"),
        s.value("mem.percent"),
        s.value("disk.max"),
        s.value("load.1"),
        boot,
    )


class SummaryWriter:
    """Mixin of a store's writer (SequenceBook's `db` and `_sql`)."""

    db: Any
    _sql: Callable[[str], str]  # SequenceBook's

    def _save_summaries(self, newest: dict[int, Received]) -> None:
        """Replace the summary of every host whose latest snapshot this batch changed."""
        if newest:
            self.db.cursor().executemany(
                self._sql(_UPSERT), [summary_row(host_id, r) for host_id, r in newest.items()]
            )

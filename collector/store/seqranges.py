"""Which sequence numbers of one host are stored: first..last minus a few gaps.

Kept per host in memory and in the `hosts`/`gaps` tables, it answers "is this
(host, seq) already stored?" without an index lookup per snapshot, and gives
`status` its missing numbers without scanning the samples.
"""

from __future__ import annotations

from bisect import bisect_right


class SeqRanges:
    """A set of integers stored as [first, last] minus sorted, disjoint, inclusive gaps."""

    def __init__(
        self, first: int | None = None, last: int | None = None, gaps: list[tuple[int, int]] | None = None
    ) -> None:
        self.first, self.last = first, last
        self.gaps: list[list[int]] = sorted([a, b] for a, b in gaps or [])

    def _gap_index(self, seq: int) -> int | None:
        """Index of the gap holding `seq`, or None."""
        i = bisect_right(self.gaps, [seq, float("inf")]) - 1
        if i >= 0 and self.gaps[i][0] <= seq <= self.gaps[i][1]:
            return i
        return None

    def __contains__(self, seq: int) -> bool:
        if self.first is None or self.last is None or not self.first <= seq <= self.last:
            return False
        return self._gap_index(seq) is None

    def add(self, seq: int) -> None:
        """Record `seq` as stored (it must not be stored already)."""
        if self.first is None or self.last is None:
            self.first = self.last = seq
        elif seq > self.last:
            if seq > self.last + 1:
                self.gaps.append([self.last + 1, seq - 1])
            self.last = seq
        elif seq < self.first:
            if seq < self.first - 1:
                self.gaps.insert(0, [seq + 1, self.first - 1])
            self.first = seq
        else:
            self._fill(seq)

    def _fill(self, seq: int) -> None:
        i = self._gap_index(seq)
        if i is None:
            return
        a, b = self.gaps[i]
        replacement = [g for g in ([a, seq - 1], [seq + 1, b]) if g[0] <= g[1]]
        self.gaps[i : i + 1] = replacement

    def drop_below(self, seq: int) -> None:
        """Forget everything below `seq` (after retention pruned it)."""
        if self.first is None or self.last is None or seq <= self.first:
            return
        if seq > self.last:
            self.first = self.last = None
            self.gaps = []
            return
        self.gaps = [[max(a, seq), b] for a, b in self.gaps if b >= seq]
        self.first = seq
        while self.gaps and self.gaps[0][0] == self.first:  # the new first must be a stored number
            self.first = self.gaps.pop(0)[1] + 1

    def discard(self, seqs: list[int]) -> None:
        """Forget these stored numbers (pruned); ones inside the range become gaps."""
        for seq in sorted(seqs):
            if self.first is None or seq not in self:
                continue
            if seq == self.first:
                self.drop_below(seq + 1)
            elif seq == self.last:
                self.last = seq - 1
                while self.gaps and self.gaps[-1][1] == self.last:
                    self.last = self.gaps.pop()[0] - 1
            else:
                self._open_gap(seq)

    def _open_gap(self, seq: int) -> None:
        i = bisect_right(self.gaps, [seq, float("inf")])
        before = self.gaps[i - 1] if i > 0 and self.gaps[i - 1][1] == seq - 1 else None
        after = self.gaps[i] if i < len(self.gaps) and self.gaps[i][0] == seq + 1 else None
        if before and after:
            before[1] = after[1]
            del self.gaps[i]
        elif before:
            before[1] = seq
        elif after:
            after[0] = seq
        else:
            self.gaps.insert(i, [seq, seq])

    def trim(self, limit: int) -> int:
        """Forget the oldest gaps beyond `limit` (their numbers then count as stored); returns how many.

        A host stepping its sequence by 2 once made 200,000 gaps, each batch rewriting them all:
        the bound keeps that cost and memory fixed, at the price of treating a very late resend
        into a forgotten gap as a duplicate.
        """
        excess = len(self.gaps) - limit
        if excess <= 0:
            return 0
        del self.gaps[:excess]
        return excess

    def missing(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in self.gaps]

    def missing_count(self) -> int:
        return sum(b - a + 1 for a, b in self.gaps)

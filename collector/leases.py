"""Which hosts and duties this collector has: leases in the database, renewed while it works.

Several collectors may share one PostgreSQL database. Each host's detection
belongs to one of them at a time, the one that receives its data: it takes
the host's lease (free or expired) when a batch brings the host, renews it a
third of the way through, and loses it to another collector only once it
expired, i.e. once it stopped receiving the host (its agent moved, or it
died or froze). The epoch of the lease fences every alert write (the store
checks it in the write's transaction). Duties (CERT-FR, retention) are leases
too, renewed on every housekeeping pass by whoever holds them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from collector.store import Fence, Store
from collector.store.cluster import DUTY, HOST

log = logging.getLogger("osmon.leases")

RENEW_AT = 1 / 3  # of the lease time: renew this far in, so a slow batch never lets it lapse


class HostLeases:
    """The hosts this collector evaluates, with the epoch of each lease."""

    def __init__(
        self, store: Store, owner: str, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store, self.owner, self.ttl, self.clock = store, owner, ttl, clock
        self.held: dict[str, int] = {}  # host -> epoch of its lease
        self._renew_at: dict[str, float] = {}  # host -> when to renew (monotonic)
        self._retry_at: dict[str, float] = {}  # host held by another -> when its lease ends (monotonic)

    def claim(self, hosts: Iterable[str]) -> tuple[set[str], set[str]]:
        """Take or renew the leases of `hosts` that are due; returns (gained, lost).

        `gained`: hosts held at a new epoch (their state must be read from the database: another
        collector may have changed it); `lost`: hosts another collector holds now.
        """
        now = self.clock()
        due = [h for h in hosts if self._renew_at.get(h, 0.0) <= now and self._retry_at.get(h, 0.0) <= now]
        if not due:
            return set(), set()
        result = self.store.lease_take(self.owner, [HOST + h for h in due], self.ttl)
        gained, lost = set(), set()
        for host in due:
            epoch = result.held.get(HOST + host)
            if epoch is None:
                if self.held.pop(host, None) is not None:
                    lost.add(host)
                self._renew_at.pop(host, None)
                left = result.others.get(HOST + host, self.ttl)
                self._retry_at[host] = now + min(left, self.ttl)
                continue
            if self.held.get(host) != epoch:
                gained.add(host)
            self.held[host] = epoch
            self._renew_at[host] = now + self.ttl * RENEW_AT
            self._retry_at.pop(host, None)
        return gained, lost

    def may_claim(self, host: str) -> bool:
        """False while another collector's lease of `host` is known to run."""
        return self._retry_at.get(host, 0.0) <= self.clock()

    def fence(self) -> Fence:
        """What every alert write of this collector is checked against."""
        return Fence(self.owner, self.held)

    def drop(self, hosts: Iterable[str]) -> None:
        """Forget hosts a write found fenced: held by another collector now."""
        for host in hosts:
            self.held.pop(host, None)
            self._renew_at.pop(host, None)

    def release(self) -> None:
        """A clean stop: hand every lease over at once instead of letting it expire."""
        self.store.lease_release(self.owner)
        self.held.clear()
        self._renew_at.clear()


class Duties:
    """Work one collector at a time does (CERT-FR polling, retention): which of it is ours now."""

    def __init__(self, store: Store, owner: str, ttl: float, names: tuple[str, ...]) -> None:
        self.store, self.owner, self.ttl, self.names = store, owner, ttl, names
        self._held: set[str] = set()

    def renew(self) -> None:
        """Take or renew every duty that is free or ours; called every housekeeping pass."""
        result = self.store.lease_take(self.owner, [DUTY + name for name in self.names], self.ttl)
        held = {subject[len(DUTY) :] for subject in result.held}
        for name in held - self._held:
            log.info("this collector now does %s", name)
        self._held = held

    def holds(self, name: str) -> bool:
        return name in self._held

    def release(self) -> None:
        """A clean stop: nothing to do here (HostLeases.release ended every lease of this owner)."""
        self._held = set()

"""The pieces `osmon-collector run` runs beside ingest: detection, mail and webhooks, Alertmanager, the
CERT-FR feed, and its part in a cluster of collectors (leases of hosts and duties, heartbeats)."""

from __future__ import annotations

import os
import time

from collector.alertmanager import AlertPusher
from collector.certfr import CertfrPoller
from collector.config import CollectorConfig
from collector.detection import Detector
from collector.leases import Duties
from collector.notify import Notifier, certfr_mail
from collector.outbox import MailSender, outbox_from_config
from collector.packing import Packer
from collector.store import AlertEvent, CertfrItem, Received, Store
from osmon import __version__

REMIND_EVERY = 30.0  # seconds between two looks for due reminders
DUTY_TIME = 15.0  # seconds a duty's lease lasts at least: it is renewed every housekeeping pass (5 s)


class Services:
    """Detection, notification and the mail sender; ingest calls `on_batch`, `on_tick` and `on_housekeeping`."""

    def __init__(self, config: CollectorConfig, store: Store) -> None:
        self.config, self.store = config, store
        self.outbox = outbox_from_config(store, config)
        self.sender = MailSender(self.outbox)
        self.notifier = Notifier(config, store)
        self.held: frozenset[str] = frozenset()  # the hosts whose lease detection holds, as of the last tick
        self.pusher = None
        if config.alertmanagers:
            self.pusher = AlertPusher(
                store, config.alertmanagers, lambda: self.held, self.notifier.alert_summary, config.public_url
            )
        self.detector = Detector(
            store,
            config.thresholds,
            config.down_after,
            notify=self._queued,
            mailer=self.notifier.mails_for,
            owner=config.name,
            lease_time=config.lease_time,
        )
        duties = ("upkeep", "certfr") if config.certfr_enabled else ("upkeep",)
        self.duties = Duties(store, config.name, max(config.lease_time, DUTY_TIME), duties)
        self.packer = Packer(store, self.upkeep)
        self.certfr = None
        if config.certfr_enabled:
            self.certfr = CertfrPoller(config, store, notify=self._mail_certfr, active=self._polls_certfr)
        self._next_remind = 0.0
        self.started = time.time()
        self.received = 0
        self._rate_mark = (time.monotonic(), 0)  # (when, received then): the rate between heartbeats
        self.rate = 0.0

    def start(self) -> None:
        self.on_housekeeping()  # duties and a first heartbeat before the threads look at them
        self.sender.start()
        self.packer.start()
        if self.pusher is not None:
            self.pusher.start()
        if self.certfr is not None:
            self.certfr.start()

    def stop(self) -> None:
        """Stop the threads and hand this collector's leases to the others at once."""
        if self.certfr is not None:
            self.certfr.stop()
        self.sender.stop(timeout=10)
        self.packer.stop(timeout=10)
        if self.pusher is not None:
            self.pusher.stop(timeout=10)
        self.detector.leases.release()
        self.duties.release()
        self._beat(stopped=True)

    def on_batch(self, fresh: list[Received]) -> None:
        self.received += len(fresh)
        self.detector.process(fresh)

    def on_tick(self) -> None:
        self.detector.check_down()
        if time.monotonic() >= self._next_remind:
            self._next_remind = time.monotonic() + REMIND_EVERY
            self.detector.save_mails(self.notifier.reminders(self.detector.leases.held))
        if self.pusher is not None:
            held = self.detector.leases.held
            if len(held) != len(self.held) or not self.held.issuperset(held):
                self.held = frozenset(held)
                self.pusher.notify()  # hosts gained (or lost): their alerts are this collector's to push

    def on_housekeeping(self) -> None:
        """Renew the duties (or take those a dead collector left), and say this collector is alive."""
        self.duties.renew()
        self._beat()

    def upkeep(self) -> bool:
        """Whether retention (pruning, partitions) is this collector's to do now."""
        return self.duties.holds("upkeep")

    def _polls_certfr(self) -> bool:
        return self.duties.holds("certfr")

    def _mail_certfr(self, items: list[CertfrItem]) -> None:
        key = "certfr " + " ".join(sorted(item.guid for item in items))
        self.outbox.enqueue(certfr_mail(items, self.config.certfr_recipients), key=key)

    def _queued(self, events: list[AlertEvent]) -> None:
        self.sender.notify()  # mail was queued with the events: send it now, not at the next poll
        if self.pusher is not None:
            self.held = frozenset(self.detector.leases.held)
            self.pusher.notify()

    def _beat(self, stopped: bool = False) -> None:
        now = time.monotonic()
        since, count = self._rate_mark
        if now - since >= 1.0:
            self.rate = (self.received - count) / (now - since)
            self._rate_mark = (now, self.received)
        self.store.heartbeat(
            self.config.name,
            self.config.listen,
            os.getpid(),
            __version__,
            self.started,
            self.received,
            round(self.rate, 1),
            stopped,
        )

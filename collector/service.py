"""The pieces `osmon-collector run` runs beside ingest: detection, mail, the CERT-FR feed."""

from __future__ import annotations

import time

from collector.certfr import CertfrPoller
from collector.config import CollectorConfig
from collector.detection import Detector
from collector.notify import Notifier, certfr_mail
from collector.outbox import MailSender, outbox_from_config
from collector.store import Received, Store

REMIND_EVERY = 30.0  # seconds between two looks for due reminders


class Services:
    """Detection, notification and the mail sender; ingest calls `on_batch` and `on_tick`."""

    def __init__(self, config: CollectorConfig, store: Store) -> None:
        self.outbox = outbox_from_config(store, config)
        self.sender = MailSender(self.outbox)
        self.notifier = Notifier(config, store, self.outbox.enqueue)
        self.detector = Detector(store, config.thresholds, config.down_after, notify=self.notifier.on_events)
        self.certfr = None
        if config.certfr_enabled:
            recipients = config.certfr_recipients
            self.certfr = CertfrPoller(
                config, store, notify=lambda items: self.outbox.enqueue(certfr_mail(items, recipients))
            )
        self._next_remind = 0.0

    def start(self) -> None:
        self.sender.start()
        if self.certfr is not None:
            self.certfr.start()

    def stop(self) -> None:
        if self.certfr is not None:
            self.certfr.stop()
        self.sender.stop(timeout=10)

    def on_batch(self, fresh: list[Received]) -> None:
        self.detector.process(fresh)

    def on_tick(self) -> None:
        self.detector.check_down()
        if time.monotonic() >= self._next_remind:
            self._next_remind = time.monotonic() + REMIND_EVERY
            self.notifier.remind()

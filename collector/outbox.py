"""The persistent outbox: mail and webhook deliveries wait in the database until a server accepts them.

`Outbox.enqueue` only stores (alert mail and webhook deliveries are stored with the alert
changes, by detection); `MailSender`, one thread of the collector, delivers what is due
through its channel, retries with exponential backoff while a server is down or answers
a temporary error, and gives up only on permanent refusals or very old messages.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from collector.delivery import DeliveryError
from collector.mail import (
    Mail,
    Transport,
    compose,
    event_message_id,
    message_id,
    transport_from_config,
)
from collector.store import OutboxMessage, Store, StoreError
from collector.webhook import CHANNEL as WEBHOOK
from collector.webhook import WebhookChannel
from collector.worker import Worker

if TYPE_CHECKING:
    from collector.config import CollectorConfig

log = logging.getLogger("osmon.outbox")

FIRST_RETRY = 30.0
MAX_RETRY = 3600.0
JITTER = 0.2  # up to 20 % earlier, so mail queued together does not retry in lockstep
# RFC 5321 4.5.4.1 asks MTAs to keep trying for 4-5 days; an alert older than that is history.
GIVE_UP_AFTER = 5 * 86400.0
KEEP_SENT = 30 * 86400.0
MAIL = "mail"  # the channel of mail; a webhook's is "webhook:NAME"
CLAIM_MARGIN = 30.0  # seconds a claim outlasts the longest SMTP conversation (smtp.timeout)
CLAIM_HOLD = 60.0  # seconds a sender has to hand a claimed mail over before another may try it


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `attempts`-th failure: 30 s doubling up to 1 h, minus jitter."""
    delay = min(MAX_RETRY, FIRST_RETRY * 2 ** min(attempts - 1, 20))
    return delay * (1 - JITTER * rng())


class Channel(Protocol):
    """A way out of the outbox: mail, or one webhook (collector.webhook)."""

    def deliver(self, message: OutboxMessage) -> str | None:
        """Hand `message` over (a note if only partly taken), or raise DeliveryError."""
        ...


class MailChannel:
    """Mail through a transport (SMTP or a sendmail command)."""

    def __init__(self, transport: Transport, sender: str) -> None:
        self.transport, self.sender = transport, sender

    def __str__(self) -> str:
        return str(self.transport)

    def deliver(self, message: OutboxMessage) -> str | None:
        mail = Mail(message.recipients, message.subject, message.text, message.html)
        email = compose(mail, self.sender, message.message_id, date=message.created)
        refused = self.transport.send(email, message.recipients)
        return "; ".join(f"{rcpt} refused: {reply}" for rcpt, reply in refused.items()) or None


class Outbox:
    """Messages to deliver, kept in the store until their channel has handed them over.

    Each message has a channel: "mail" (the transport), or "webhook:NAME" (`channels`). A sender
    claims only messages of the channels it has: another collector configured with more may
    deliver the rest.
    """

    def __init__(
        self,
        store: Store,
        transport: Transport | None,
        sender: str,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        owner: str = "local",
        hold: float = CLAIM_HOLD,
        channels: dict[str, Channel] | None = None,
    ) -> None:
        self.store, self.transport, self.sender = store, transport, sender
        self.clock, self.rng = clock, rng
        self.owner, self.hold = owner, hold  # who claims mail before sending it, for how long
        self.channels: dict[str, Channel] = dict(channels or {})
        if transport is not None:
            self.channels[MAIL] = MailChannel(transport, sender)
        self.on_enqueue: Callable[[], None] | None = None  # set by MailSender to wake it up
        self._failing: dict[str, str] = {}  # channel -> the outage being reported, so it is logged once
        self._unserved: set[str] = (
            set()
        )  # channels with messages waiting that this collector cannot deliver, said once

    def enqueue(self, mail: Mail, key: str | None = None) -> int:
        """Store `mail` for sending (returns at once); returns its outbox id.

        `key` names what it reports: a mail of the same key is queued once, under one Message-ID.
        """
        mid = message_id(self.sender) if key is None else event_message_id(self.sender, key)
        outbox_id = self.store.outbox_add(mail, mid, self.clock(), key)
        if self.transport is None:
            self._say_unserved({MAIL: 1}, complete=False)
        elif self.on_enqueue is not None:
            self.on_enqueue()
        return outbox_id

    def size(self) -> int:
        """Messages waiting to be delivered."""
        return self.store.outbox_size()

    def deliver_due(self, now: float | None = None) -> int:
        """Deliver the messages that are due; returns how many went out."""
        now = self.clock() if now is None else now
        sent = 0
        working = dict(self.channels)
        # One message claimed at a time: every collector's sender may be at work on the same outbox,
        # and a claim held while a server is down would keep the others from trying.
        while working and (
            claimed := self.store.outbox_claim(self.owner, now, self.hold, limit=1, channels=sorted(working))
        ):
            message = claimed[0]
            channel = working[message.channel]
            try:
                note = channel.deliver(message)
            except DeliveryError as e:
                self._failed(message, e, now)
                if not e.permanent:
                    del working[message.channel]  # likely down for the rest too: try them next round
                continue
            # Recorded right away: from here on, a failure must not send it a second time.
            self.store.outbox_sent(message.id, self.clock(), note)
            sent += 1
            if note:
                log.warning("mail %r sent, but %s", message.subject, note)
            if self._failing.pop(message.channel, None) is not None:
                log.info("delivery through %s works again; %d message(s) waiting", channel, self.size())
        return sent

    def prune(self, now: float | None = None) -> int:
        """Forget messages sent (or given up on) more than 30 days ago."""
        return self.store.outbox_prune((self.clock() if now is None else now) - KEEP_SENT)

    def upkeep(self, now: float | None = None) -> None:
        """The hourly pass: forget old messages, give up the ones no sender took in time, and say
        what waits for a channel this collector does not deliver."""
        now = self.clock() if now is None else now
        self.prune(now)
        # A sender gives a message up at its first failure after GIVE_UP_AFTER; this catches the
        # ones no sender ever tries: a webhook removed from every config, mail with no transport.
        expired = self.store.outbox_expire(
            now - GIVE_UP_AFTER, "not delivered within 5 days: no sender for it"
        )
        for channel, count in sorted(expired.items()):
            log.error(
                "gave up on %d message(s) for %s queued more than 5 days ago: no collector delivered them",
                count,
                _describe(channel),
            )
        self._say_unserved(self.store.outbox_waiting(), complete=True)

    def _say_unserved(self, waiting: dict[str, int], complete: bool) -> None:
        """Warn, once per channel, of messages waiting that this collector has no way to deliver."""
        unserved = {channel for channel in waiting if channel not in self.channels}
        for channel in sorted(unserved - self._unserved):
            why = (
                "no smtp.host or sendmail is configured here"
                if channel == MAIL
                else "that webhook is not in this collector's config (removed or renamed?)"
            )
            log.warning(
                "%s wait in the outbox for %s: %s; another collector that has it delivers them, "
                "else they are given up after 5 days",
                "messages" if waiting[channel] > 1 else "a message",
                _describe(channel),
                why,
            )
        # The full list forgets channels served since, so a new backlog is said again.
        self._unserved = unserved if complete else self._unserved | unserved

    def _failed(self, message: OutboxMessage, e: DeliveryError, now: float) -> None:
        attempts = message.attempts + 1
        what = (
            f"mail {message.subject!r} to {message.recipients}"
            if message.channel == MAIL
            else f"{message.subject!r} to {message.channel}"
        )
        if e.permanent or now - message.created >= GIVE_UP_AFTER:
            self.store.outbox_failed(message.id, e.reason, None)
            log.error("gave up on %s after %d attempts: %s", what, attempts, e)
            return
        self.store.outbox_failed(message.id, e.reason, now + backoff(attempts, self.rng))
        if message.channel not in self._failing:
            kind = "mail" if message.channel == MAIL else "webhook"
            log.warning("%s delivery failing, it waits in the outbox and is retried: %s", kind, e)
        self._failing[message.channel] = e.reason


def _describe(channel: str) -> str:
    """'mail', or "webhook 'NAME'" for an outbox channel."""
    return "mail" if channel == MAIL else f"webhook {channel.removeprefix(WEBHOOK)!r}"


def outbox_from_config(store: Store, config: CollectorConfig) -> Outbox:
    """The outbox sending through the configured transport, from smtp.from, and to the webhooks."""
    # A claim outlasts the longest conversation with a server: smtp.timeout bounds all of an SMTP
    # one, three times a webhook's timeout all of its POST.
    hold = max([config.smtp_timeout, *(3 * hook.timeout for hook in config.webhooks)]) + CLAIM_MARGIN
    hooks: dict[str, Channel] = {hook.channel: WebhookChannel(hook) for hook in config.webhooks}
    return Outbox(
        store, transport_from_config(config), config.smtp_from, owner=config.name, hold=hold, channels=hooks
    )


class MailSender(Worker):
    """The thread that empties the outbox: woken by `notify()`, else polling every `poll` seconds."""

    name = "mail-sender"

    def __init__(self, outbox: Outbox, poll: float = 5.0, prune_every: float = 3600.0) -> None:
        super().__init__(outbox.store, poll)
        self.outbox, self.prune_every = outbox, prune_every
        self._last_prune = float("-inf")
        self._last_error: str | None = None  # a persisting error is logged once, not every poll
        outbox.on_enqueue = self.notify

    def round(self) -> None:
        """One pass; the errors of sending are handled here, so the thread carries on."""
        try:
            self.outbox.deliver_due()
            if time.monotonic() - self._last_prune >= self.prune_every:
                self._last_prune = time.monotonic()
                self.outbox.upkeep()
        except (DeliveryError, StoreError, OSError) as e:
            if str(e) != self._last_error:
                log.error("mail sender: %s", e)
            self._last_error = str(e)
        else:
            self._last_error = None

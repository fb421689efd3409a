"""Webhooks: alert changes POSTed as JSON to a URL, through the same persistent outbox as mail.

Two formats. `json`, our own (one POST per host and batch of alert changes, as a mail):

    {"version": 1, "host": "web-01", "summary": "CRITICAL web-01: memory 96.2 % >= 95 % for 5 min",
     "dashboard": "https://osmon.example.org/host/web-01",
     "events": [{"kind": "fired", "rule": "mem.percent", "severity": "critical", "value": 96.2,
                 "threshold": 95.0, "started": 1764000000.0, "ts": 1764000300.0,
                 "summary": "memory 96.2 % >= 95 % for 5 min"}]}

With a secret, each POST carries `X-Osmon-Timestamp` (Unix seconds, when it was sent) and
`X-Osmon-Signature: sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY` under the secret: a
receiver recomputes it, compares in constant time and refuses old timestamps (a replay).
`X-Osmon-Delivery` names the delivery: the same for a retry, so a receiver can drop a repeat.
`slack` is the incoming-webhook shape of Slack and Mattermost: {"text": "..."}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from collector import httppost
from collector.delivery import DeliveryError
from collector.store import OutboxMessage

FORMATS = ("json", "slack")
CHANNEL = "webhook:"  # an outbox channel: "webhook:NAME"


class Webhook(NamedTuple):
    """One [[notify.webhook]]."""

    name: str
    url: str
    format: str = "json"
    secret_file: str | None = None
    hosts: str = "*"  # a glob on host names, as [[alerts.route]]
    ca_file: str | None = None
    timeout: float = httppost.TIMEOUT  # to connect, and for the answer; the whole POST gets 3 times this

    @property
    def channel(self) -> str:
        return CHANNEL + self.name

    def __str__(self) -> str:
        return f"webhook {self.name!r} ({httppost.shown(self.url)})"


def body(
    format: str, host: str, summary: str, events: list[dict[str, Any]], link: str | None, lines: list[str]
) -> str:
    """What is POSTed: our JSON document, or Slack's {"text": ...} (`lines`: one per event)."""
    if format == "slack":
        text = "\n".join([f"*{summary}*", *lines, *([link] if link else [])])
        return json.dumps({"text": text}, ensure_ascii=False)
    doc = {"version": 1, "host": host, "summary": summary, "dashboard": link, "events": events}
    return json.dumps(doc, ensure_ascii=False)


def signature(secret: bytes, timestamp: int, payload: bytes) -> str:
    """The X-Osmon-Signature of `payload` sent at `timestamp`."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + payload, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel:
    """Delivers the outbox messages of one webhook."""

    def __init__(self, hook: Webhook, clock: Callable[[], float] = time.time) -> None:
        self.hook, self.clock = hook, clock
        self._context: ssl.SSLContext | None = None

    def __str__(self) -> str:
        return str(self.hook)

    def deliver(self, message: OutboxMessage) -> str | None:
        """POST the message's body; DeliveryError if it was not taken."""
        payload = (message.payload or "").encode()
        headers = {"X-Osmon-Delivery": message.message_id.strip("<>").partition(".")[0]}
        if self.hook.secret_file is not None:
            timestamp = int(self.clock())
            headers["X-Osmon-Timestamp"] = str(timestamp)
            headers["X-Osmon-Signature"] = signature(self._secret(), timestamp, payload)
        try:
            timeout = self.hook.timeout
            httppost.post(self.hook.url, payload, headers, timeout, 3 * timeout, self._tls())
        except DeliveryError as e:
            raise DeliveryError(f"webhook {self.hook.name!r}: {e.reason}", e.permanent) from None
        return None

    def _secret(self) -> bytes:
        assert self.hook.secret_file is not None
        try:
            secret = Path(self.hook.secret_file).read_bytes().rstrip(b"\r\n")
        except OSError as e:  # fixed on disk, the next attempt signs
            raise DeliveryError(f"{self.hook}: cannot read secret_file: {e.strerror}") from None
        if not secret:
            raise DeliveryError(f"{self.hook}: secret_file {self.hook.secret_file} is empty")
        return secret

    def _tls(self) -> ssl.SSLContext | None:
        if not self.hook.url.startswith("https:"):
            return None
        if self._context is None:
            try:
                self._context = httppost.tls_context(self.hook.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise DeliveryError(f"{self.hook}: cannot load ca_file: {e}") from None
        return self._context

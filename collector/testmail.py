"""`osmon-collector test-mail`: one real message through the configured path, and what the server said.

It goes straight through the transport, not the outbox: the person running it
wants the answer now, including a refusal, and no retry hours later.
"""

from __future__ import annotations

import socket
import time
from typing import NamedTuple

from collector.config import CollectorConfig
from collector.mail import Mail, MailError, compose, message_id, transport_from_config


class Sent(NamedTuple):
    transport: str  # 'SMTP mail.example.org:587 (starttls)' or 'command /usr/bin/msmtp -t'
    answer: str  # what the server or the command answered


def test_mail(config: CollectorConfig, to: str) -> Mail:
    host = socket.getfqdn()
    text = (
        f"This is a test message from the osMonitoring collector on {host}.\n\n"
        f"Config: {config.path}\nFrom: {config.smtp_from}\n\n"
        "If you read this, alert mail reaches this address.\n"
    )
    return Mail(
        [to], f"[osMonitoring] test message from {host}", text, f"<html><body><pre>{text}</pre></body></html>"
    )


def send(config: CollectorConfig, to: str) -> Sent:
    """Send the test message now; MailError says why it did not go."""
    transport = transport_from_config(config)
    if transport is None:
        raise MailError(f"{config.path}: neither [smtp] host nor sendmail is set: mail cannot be sent")
    mail = test_mail(config, to)
    email = compose(mail, config.smtp_from, message_id(config.smtp_from), date=time.time())
    refused = transport.send(email, [to])
    if refused:
        raise MailError(f"{transport} refused {to}: {refused[to]}", permanent=True)
    return Sent(str(transport), getattr(transport, "last_answer", None) or "accepted")

"""What every way of delivering an alert raises when it could not: mail, webhooks, Alertmanager."""

from __future__ import annotations


class DeliveryError(Exception):
    """A message was not handed over; `permanent` when retrying the same message cannot help."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent

"""Mail: composing a message, and sending it through SMTP or a sendmail-compatible command.

A transport either hands a message over or raises `MailError`, which says
whether trying again later can help (`permanent` False) or not.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shlex
import smtplib
import socket
import ssl
import subprocess
import threading
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from collector.delivery import DeliveryError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

    from collector.config import CollectorConfig

DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
# sysexits.h codes a sendmail-compatible command uses for mail that can never go out as is.
_PERMANENT_EXITS = {65: "EX_DATAERR", 67: "EX_NOUSER", 68: "EX_NOHOST"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class Mail(NamedTuple):
    """A mail to send: who to, and what, in plain text and HTML."""

    recipients: list[str]
    subject: str
    text: str
    html: str


class MailError(DeliveryError):
    """A mail was not handed over; `permanent` when retrying the same mail cannot help."""


class Transport(Protocol):
    def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        """Hand `message` over; returns the recipients refused while others were accepted."""
        ...


def one_line(value: str) -> str:
    """`value` with line breaks and control characters turned into spaces: safe in a header."""
    return _CONTROL.sub(" ", " ".join(value.splitlines())).strip()


def message_id(sender: str) -> str:
    """A new Message-ID in the sender's domain (make_msgid's default would resolve our FQDN)."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    return make_msgid(domain=one_line(domain) or "localhost")


def event_message_id(sender: str, key: str) -> str:
    """The Message-ID of the mail reporting `key` (collector.notify.event_key): the same for every
    collector and every resend, so a copy delivered twice is recognisably one mail."""
    domain = one_line(parseaddr(sender)[1].rpartition("@")[2]) or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}.osmon@{domain}>"


def compose(mail: Mail, sender: str, message_id: str, date: float | None = None) -> EmailMessage:
    """The message for `mail`: multipart/alternative text + HTML, dated `date` (default now).

    Raises a permanent MailError if an address cannot be parsed.
    """
    msg = EmailMessage()
    msg["Subject"] = one_line(mail.subject)
    try:
        msg["From"] = one_line(sender)
        msg["To"] = ", ".join(one_line(r) for r in mail.recipients)
    except (ValueError, IndexError) as e:  # the header parser's errors on a malformed address
        raise MailError(
            f"malformed address in {sender!r} or {mail.recipients!r}: {e}", permanent=True
        ) from None
    msg["Date"] = formatdate(date, localtime=True)
    msg["Message-ID"] = one_line(message_id)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a monitoring robot
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


class _SMTP(smtplib.SMTP):
    """Keeps the server's answer to the message itself (DATA), which smtplib's sendmail drops."""

    answer = ""
    _host: str  # smtplib's: the name TLS checks the certificate against

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        code, reply = super().data(msg)
        self.answer = f"{code} {_text(reply)}"
        return code, reply


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):
    """The same, over implicit TLS."""


class SmtpTransport:
    """Sends through an SMTP server: plain, STARTTLS or implicit TLS, with optional AUTH."""

    def __init__(self, config: CollectorConfig, ssl_context: ssl.SSLContext | None = None) -> None:
        if config.smtp_host is None:
            raise ValueError("SmtpTransport needs smtp.host")
        self.host = config.smtp_host
        self.security = config.smtp_security
        self.port = config.smtp_port or DEFAULT_PORTS[self.security]
        self.username = config.smtp_username
        self.password_file = config.smtp_password_file
        self.sender = parseaddr(config.smtp_from)[1] or config.smtp_from
        self.timeout = config.smtp_timeout
        # Only tests pass a context (one trusting their own certificate); verification stays on.
        self.ssl_context = ssl_context
        self.last_answer = ""  # the server's reply to the last message, e.g. '250 2.0.0 Ok: queued as 4Xk'

    def __str__(self) -> str:
        return f"SMTP {self.host}:{self.port} ({self.security})"

    def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        """Deliver one message in one SMTP conversation, ended if it lasts more than smtp.timeout."""
        password = self._password()
        context = self.ssl_context or ssl.create_default_context()
        if self.security == "tls":
            smtp: _SMTP | _SMTP_SSL = _SMTP_SSL(timeout=self.timeout, context=context)
        else:
            smtp = _SMTP(timeout=self.timeout)
        # Connected below, inside the deadline (the greeting can trickle too); TLS checks the
        # certificate against this name, which only a constructor given the host would set.
        smtp._host = self.host
        with Deadline(smtp, self.timeout) as deadline:
            try:
                smtp.connect(self.host, self.port)
                if self.security == "starttls":
                    smtp.starttls(context=context)  # raises rather than going on in clear text
                if self.username is not None:
                    smtp.login(self.username, password)
                refused = smtp.send_message(message, self.sender, recipients)
                self.last_answer = smtp.answer
            except (smtplib.SMTPException, OSError) as e:
                if deadline.expired:
                    raise MailError(
                        f"{self} did not finish the conversation within {self.timeout:g} s"
                    ) from None
                raise _smtp_error(e, self) from None
            finally:
                _close(smtp)
        return {rcpt: f"{code} {_text(reply)}" for rcpt, (code, reply) in refused.items()}

    def _password(self) -> str:
        """The password, read now so that a changed file is used without a restart."""
        if self.username is None:
            return ""
        if self.password_file is None:
            raise MailError("smtp.username is set but smtp.password_file is not")
        try:
            return Path(self.password_file).read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise MailError(f"cannot read smtp.password_file: {e}") from None


class Deadline:
    """Ends an SMTP conversation that lasts more than `seconds` in all, by shutting its socket down.

    smtplib's timeout bounds each socket operation: a server sending one byte every 5 s held the
    sender on one connection indefinitely with `timeout = 10s`, and delayed every other mail.
    """

    def __init__(self, smtp: smtplib.SMTP, seconds: float) -> None:
        self.smtp, self.expired = smtp, False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        sock = getattr(self.smtp, "sock", None)
        if sock is not None:
            # The blocked read returns at once; close() stays with smtplib. OSError: already closed.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _close(smtp: smtplib.SMTP) -> None:
    """End the conversation; a failure here cannot undo a mail the server already accepted."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _text(reply: bytes | str) -> str:
    return one_line(reply.decode(errors="replace") if isinstance(reply, bytes) else reply)


def _smtp_error(e: Exception, transport: SmtpTransport) -> MailError:
    """A MailError saying what went wrong; 5xx refusals of the mail itself are permanent."""
    where = str(transport)
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in e.recipients.values()]
        detail = "; ".join(f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in e.recipients.items())
        return MailError(f"{where} refused all recipients: {detail}", permanent=all(c >= 500 for c in codes))
    if isinstance(e, smtplib.SMTPAuthenticationError):
        # The password may be fixed in its file: the mail waits for that.
        return MailError(
            f"{where} rejected the login of {transport.username!r}: {e.smtp_code} {_text(e.smtp_error)}"
        )
    if isinstance(e, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        permanent = e.smtp_code >= 500
        return MailError(
            f"{where} refused the mail: {e.smtp_code} {_text(e.smtp_error)}", permanent=permanent
        )
    if isinstance(e, smtplib.SMTPResponseException):
        return MailError(f"{where} answered {e.smtp_code} {_text(e.smtp_error)}")
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return MailError(f"{where}: {e} (check smtp.security and smtp.username)")
    if isinstance(e, smtplib.SMTPException):  # before OSError, which it subclasses: a broken conversation
        return MailError(f"{where}: {e}")
    if isinstance(e, TimeoutError):
        return MailError(f"{where} did not answer within {transport.timeout:g} s")
    if isinstance(e, ssl.SSLError):
        return MailError(f"{where}: TLS failed: {e}")
    if isinstance(e, OSError):
        return MailError(f"cannot connect to {where}: {e.strerror or e}")
    return MailError(f"{where}: {e}")


class SendmailTransport:
    """Pipes the message into a sendmail-compatible command that reads the recipients from it (`-t`)."""

    def __init__(self, command: str, timeout: float = 30.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("the sendmail command is empty")
        self.timeout = timeout
        self.last_answer = ""

    def __str__(self) -> str:
        return f"command {shlex.join(self.argv)}"

    def send(self, message: EmailMessage, recipients: list[str]) -> dict[str, str]:
        """Run the command once with the message on its stdin."""
        try:
            done = subprocess.run(
                self.argv, input=message.as_bytes(), capture_output=True, timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            raise MailError(f"{self} did not finish within {self.timeout:g} s") from None
        except OSError as e:
            raise MailError(f"cannot run {self}: {e.strerror or e}") from None
        if done.returncode != 0:
            stderr = one_line(done.stderr.decode(errors="replace"))[:500] or "no message"
            name = _PERMANENT_EXITS.get(done.returncode)
            reason = f"{self} exited with {done.returncode}{f' ({name})' if name else ''}: {stderr}"
            raise MailError(reason, permanent=name is not None)
        said = one_line((done.stdout + done.stderr).decode(errors="replace"))[:500]
        self.last_answer = f"exit status 0{f': {said}' if said else ''}"
        return {}


def transport_from_config(config: CollectorConfig) -> Transport | None:
    """SMTP if smtp.host is set, else the sendmail command if set, else None (mail waits)."""
    if config.smtp_host is not None:
        return SmtpTransport(config)
    if config.sendmail is not None:
        return SendmailTransport(config.sendmail, timeout=config.smtp_timeout)
    return None

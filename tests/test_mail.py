"""Mail: composing, SMTP (plain, STARTTLS + AUTH, implicit TLS), sendmail, and the persistent outbox.

Every SMTP test talks to a real aiosmtpd server on 127.0.0.1 and reads the
message it received; the outbox is a real SQLite file.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from collector import config as collector_config
from collector.config import CollectorConfig
from collector.mail import (
    Mail,
    MailError,
    SendmailTransport,
    SmtpTransport,
    compose,
    message_id,
    transport_from_config,
)
from collector.outbox import GIVE_UP_AFTER, KEEP_SENT, MailSender, Outbox, backoff, outbox_from_config
from collector.store import Store, open_store
from tests.conftest import BIN, free_port, wait_for

T0 = 1_764_000_000.0
USER, PASSWORD = "osmon", "s3cret pass"
SENDER = "osMonitoring <osmon@example.org>"
SUBJECT = "[osMonitoring] CRITICAL web-01: memory 96.2 % >= 95 % for 5m"
MAIL = Mail(["ops@example.org"], SUBJECT, "memory 96.2 %", "<p>memory <b>96.2 %</b></p>")


# -- the SMTP server ---------------------------------------------------------


class Inbox:
    """aiosmtpd handler: keeps what it accepts; can answer RCPT or DATA with scripted replies."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.rcpt_replies: dict[str, str] = {}  # address -> reply instead of 250
        self.data_replies: list[str] = []  # replies to DATA before accepting again
        self.logins: list[tuple[str, str]] = []  # (mechanism, user) of successful AUTH

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        # As a mailbox stores it: local line endings, so bodies compare as written.
        self.messages.append(message_from_bytes(envelope.content.replace(b"\r\n", b"\n"), policy=default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (
            USER,
            PASSWORD,
        )
        if ok:
            self.logins.append((mechanism, USER))
        return AuthResult(success=ok, handled=False)  # handled=False: the server sends the 235/535 reply


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert, key)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """Trusts the test certificate; verification of host name and chain stays on."""
    return ssl.create_default_context(cafile=str(certificate[0]))


class Servers:
    """Starts aiosmtpd controllers and stops them all at the end of the test."""

    def __init__(self) -> None:
        self.running: list[Controller] = []

    def start(self, inbox: Inbox, port: int | None = None, **kwargs: Any) -> int:
        port = port or free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        self.running.append(controller)
        return port

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop()


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    try:
        yield s
    finally:
        s.stop_all()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


def starttls_server(servers: Servers, inbox: Inbox, server_tls: ssl.SSLContext, **kwargs: Any) -> int:
    """A submission server: STARTTLS required, then AUTH required."""
    return servers.start(
        inbox,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=inbox.authenticate,
        **kwargs,
    )


# -- configuration, store, outbox -------------------------------------------


def smtp_config(
    tmp_path: Path, port: int, security: str = "none", password: str | None = None
) -> CollectorConfig:
    """A collector config loaded from a real file, with an [smtp] section."""
    lines = [
        f'listen = "tcp://127.0.0.1:{free_port()}"',
        f'database = "{tmp_path / "osmon.db"}"',
        "[smtp]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f'security = "{security}"',
        f'from = "{SENDER}"',
        'timeout = "5s"',
    ]
    if password is not None:
        (tmp_path / "smtp.password").write_text(password + "\n")
        lines += [f'username = "{USER}"', f'password_file = "{tmp_path / "smtp.password"}"']
    path = tmp_path / "collector.toml"
    path.write_text("\n".join(lines) + "\n")
    return collector_config.load(path)


class Clock:
    """A clock the test moves: backoff of minutes without sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "osmon.db")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def outbox_for(store: Store, transport: Any, clock: Clock) -> Outbox:
    return Outbox(store, transport, SENDER, clock=clock, rng=lambda: 0.0)  # no jitter: exact retry times


def parts(message: EmailMessage) -> tuple[str, str]:
    """(text, html) bodies of a delivered message."""
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content().rstrip("\n"), html.get_content().rstrip("\n")  # set_content ends lines


def assert_delivered(message: EmailMessage, message_id: str) -> None:
    assert message["Subject"] == SUBJECT
    assert message["From"] == SENDER
    assert message["To"] == "ops@example.org"
    assert message["Message-ID"] == message_id
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    assert parts(message) == (MAIL.text, MAIL.html)


# -- composing ---------------------------------------------------------------


def test_compose_makes_text_and_html_alternatives() -> None:
    mid = message_id(SENDER)
    msg = compose(MAIL._replace(recipients=["a@example.org", "b@example.org"]), SENDER, mid, date=T0)
    assert mid.endswith("@example.org>")
    assert msg["To"] == "a@example.org, b@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    parsed = message_from_bytes(msg.as_bytes(), policy=default)
    assert parsed["Message-ID"] == mid
    assert parsed.get_content_type() == "multipart/alternative"
    assert parts(parsed) == (MAIL.text, MAIL.html)


def test_compose_keeps_injected_lines_out_of_the_headers() -> None:
    evil = MAIL._replace(
        subject="disk full on web-01\r\nBcc: x@evil.example\nX-Evil: 1", recipients=["a@x\nBcc: y@evil"]
    )
    raw = compose(evil, SENDER, message_id(SENDER)).as_bytes()
    parsed = message_from_bytes(raw, policy=default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert "\n" not in parsed["Subject"] and parsed["Subject"].startswith("disk full on web-01")


def test_backoff_doubles_from_30s_to_an_hour_with_jitter() -> None:
    assert [backoff(n, lambda: 0.0) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff(1000, lambda: 0.0) == 3600
    assert 24 <= backoff(1, lambda: 1.0) < 30


# -- SMTP transports ----------------------------------------------------------


def test_plain_smtp_delivers_through_the_outbox(
    tmp_path: Path, servers: Servers, inbox: Inbox, store: Store, clock: Clock
) -> None:
    port = servers.start(inbox)
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    outbox_id = outbox.enqueue(MAIL)
    assert outbox.size() == 1
    assert outbox.deliver_due() == 1
    [message] = inbox.messages
    row = store.outbox_get(outbox_id)
    assert row is not None and row.sent == T0 and row.attempts == 1
    assert_delivered(message, row.message_id)
    assert inbox.envelopes == [("osmon@example.org", ["ops@example.org"])]
    assert outbox.size() == 0 and outbox.deliver_due() == 0
    assert len(inbox.messages) == 1


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_starttls_with_auth_delivers(
    tmp_path: Path,
    servers: Servers,
    inbox: Inbox,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    mechanism: str,
) -> None:
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    port = starttls_server(servers, inbox, server_tls, auth_exclude_mechanism=[other])
    config = smtp_config(tmp_path, port, "starttls", password=PASSWORD)
    mid = message_id(SENDER)
    SmtpTransport(config, ssl_context=client_tls).send(compose(MAIL, SENDER, mid), MAIL.recipients)
    assert inbox.logins == [(mechanism, USER)]
    [message] = inbox.messages
    assert_delivered(message, mid)


def test_starttls_verifies_the_certificate_by_default(
    tmp_path: Path, servers: Servers, inbox: Inbox, server_tls: ssl.SSLContext, store: Store, clock: Clock
) -> None:
    port = starttls_server(servers, inbox, server_tls)
    outbox = outbox_for(
        store, transport_from_config(smtp_config(tmp_path, port, "starttls", PASSWORD)), clock
    )
    outbox_id = outbox.enqueue(MAIL)
    assert outbox.deliver_due() == 0
    row = store.outbox_get(outbox_id)
    assert row is not None and row.sent is None and "certificate verify failed" in (row.last_error or "")
    assert inbox.messages == [] and outbox.size() == 1


def test_implicit_tls_delivers(
    tmp_path: Path, servers: Servers, inbox: Inbox, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    port = servers.start(inbox, ssl_context=server_tls)
    mid = message_id(SENDER)
    SmtpTransport(smtp_config(tmp_path, port, "tls"), ssl_context=client_tls).send(
        compose(MAIL, SENDER, mid), MAIL.recipients
    )
    [message] = inbox.messages
    assert_delivered(message, mid)


def test_wrong_password_keeps_the_mail_until_the_file_is_fixed(
    tmp_path: Path,
    servers: Servers,
    inbox: Inbox,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    store: Store,
    clock: Clock,
) -> None:
    port = starttls_server(servers, inbox, server_tls)
    config = smtp_config(tmp_path, port, "starttls", password="wrong")
    outbox = outbox_for(store, SmtpTransport(config, ssl_context=client_tls), clock)
    outbox_id = outbox.enqueue(MAIL)
    assert outbox.deliver_due() == 0
    row = store.outbox_get(outbox_id)
    assert row is not None and row.sent is None and not row.gave_up
    assert "rejected the login of 'osmon'" in (row.last_error or "") and "535" in (row.last_error or "")
    assert inbox.messages == [] and outbox.size() == 1
    # The password file is read at each attempt: fixing it is enough.
    Path(config.smtp_password_file or "").write_text(PASSWORD + "\n")
    clock.now += 30
    assert outbox.deliver_due() == 1
    assert len(inbox.messages) == 1


def test_mail_waits_while_the_server_is_down_then_goes_once(
    tmp_path: Path,
    servers: Servers,
    inbox: Inbox,
    store: Store,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    first, second = outbox.enqueue(MAIL), outbox.enqueue(MAIL._replace(subject="second"))
    with caplog.at_level(logging.INFO, logger="osmon.outbox"):
        assert outbox.deliver_due() == 0  # tries the first, then leaves the rest for the next round
        clock.now += 1
        assert outbox.deliver_due() == 0
        rows = [store.outbox_get(first), store.outbox_get(second)]
        assert [(r.attempts, r.next_attempt) for r in rows if r] == [(1, T0 + 30), (1, T0 + 31)]
        assert all("cannot connect to SMTP 127.0.0.1" in (r.last_error or "") for r in rows if r)
        assert outbox.size() == 2
        servers.start(inbox, port=port)
        assert outbox.deliver_due() == 0  # not due yet: the backoff is respected
        clock.now += 3600
        assert outbox.deliver_due() == 2
        clock.now += 3600
        assert outbox.deliver_due() == 0
    assert sorted(m["Subject"] for m in inbox.messages) == sorted([SUBJECT, "second"])
    sent = [store.outbox_get(i) for i in (first, second)]
    assert [m.sent for m in sent if m] == [clock.now - 3600] * 2
    failing = [r for r in caplog.records if "delivery failing" in r.getMessage()]
    recovered = [r for r in caplog.records if "works again" in r.getMessage()]
    assert len(failing) == 1 and len(recovered) == 1


def test_451_is_retried_after_backoff(
    tmp_path: Path, servers: Servers, inbox: Inbox, store: Store, clock: Clock
) -> None:
    inbox.data_replies = ["451 4.3.0 try again later", "451 4.3.0 try again later"]
    port = servers.start(inbox)
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    outbox_id = outbox.enqueue(MAIL)
    assert outbox.deliver_due() == 0
    row = store.outbox_get(outbox_id)
    assert row is not None and row.next_attempt == T0 + 30 and "451" in (row.last_error or "")
    assert outbox.deliver_due(T0 + 29) == 0
    assert outbox.deliver_due(T0 + 30) == 0  # the second 451: now 60 s
    row = store.outbox_get(outbox_id)
    assert row is not None and row.next_attempt == T0 + 90 and row.attempts == 2
    assert outbox.deliver_due(T0 + 90) == 1
    [message] = inbox.messages
    assert_delivered(message, row.message_id)


def test_550_for_the_recipient_is_given_up(
    tmp_path: Path, servers: Servers, inbox: Inbox, store: Store, clock: Clock
) -> None:
    inbox.rcpt_replies["ops@example.org"] = "550 5.1.1 no such user"
    port = servers.start(inbox)
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    outbox_id = outbox.enqueue(MAIL)
    later = outbox.enqueue(MAIL._replace(recipients=["dev@example.org"]))
    assert outbox.deliver_due() == 1  # a permanent refusal does not hold back the next mail
    row = store.outbox_get(outbox_id)
    assert (
        row is not None
        and row.gave_up
        and row.attempts == 1
        and "550 5.1.1 no such user" in (row.last_error or "")
    )
    assert outbox.deliver_due(T0 + 86400) == 0
    assert store.outbox_get(outbox_id).attempts == 1  # type: ignore[union-attr]
    assert outbox.size() == 0
    assert [m["To"] for m in inbox.messages] == ["dev@example.org"]
    assert store.outbox_get(later).sent == T0  # type: ignore[union-attr]


def test_a_malformed_address_is_given_up_without_stopping_the_others(
    tmp_path: Path, servers: Servers, inbox: Inbox, store: Store, clock: Clock
) -> None:
    port = servers.start(inbox)
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    bad = outbox.enqueue(MAIL._replace(recipients=["ops@example.org, <"]))
    outbox.enqueue(MAIL)
    assert outbox.deliver_due() == 1
    row = store.outbox_get(bad)
    assert row is not None and row.gave_up and "malformed address" in (row.last_error or "")
    assert len(inbox.messages) == 1


def test_one_refused_recipient_of_two_is_recorded_and_not_resent(
    tmp_path: Path, servers: Servers, inbox: Inbox, store: Store, clock: Clock
) -> None:
    inbox.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"
    port = servers.start(inbox)
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    outbox_id = outbox.enqueue(MAIL._replace(recipients=["ops@example.org", "gone@example.org"]))
    assert outbox.deliver_due() == 1
    row = store.outbox_get(outbox_id)
    assert row is not None and row.sent == T0 and "gone@example.org refused: 550" in (row.last_error or "")
    assert inbox.envelopes == [("osmon@example.org", ["ops@example.org"])]


def test_temporary_failures_are_given_up_after_days(tmp_path: Path, store: Store, clock: Clock) -> None:
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, free_port())), clock)
    outbox_id = outbox.enqueue(MAIL)
    assert outbox.deliver_due(T0 + GIVE_UP_AFTER - 1) == 0
    assert not store.outbox_get(outbox_id).gave_up  # type: ignore[union-attr]
    assert outbox.deliver_due(T0 + GIVE_UP_AFTER + 3600) == 0
    assert store.outbox_get(outbox_id).gave_up  # type: ignore[union-attr]
    assert outbox.size() == 0


def test_prune_forgets_old_sent_and_given_up_mail(
    tmp_path: Path, servers: Servers, inbox: Inbox, store: Store, clock: Clock
) -> None:
    inbox.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"
    port = servers.start(inbox)
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    sent, gave_up = outbox.enqueue(MAIL), outbox.enqueue(MAIL._replace(recipients=["gone@example.org"]))
    assert outbox.deliver_due() == 1
    waiting = Outbox(store, None, SENDER, clock=clock).enqueue(MAIL)
    assert outbox.prune(T0 + KEEP_SENT - 1) == 0
    assert outbox.prune(T0 + KEEP_SENT + 1) == 2
    assert store.outbox_get(sent) is None and store.outbox_get(gave_up) is None
    assert store.outbox_get(waiting) is not None


def test_without_a_transport_mail_is_kept_and_said_once(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = outbox_for(store, None, clock)
    with caplog.at_level(logging.WARNING, logger="osmon.outbox"):
        outbox.enqueue(MAIL)
        outbox.enqueue(MAIL)
        assert outbox.deliver_due() == 0
    assert outbox.size() == 2
    assert len([r for r in caplog.records if "no smtp.host or sendmail" in r.getMessage()]) == 1


# -- sendmail ----------------------------------------------------------------


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_sendmail_command_gets_the_message_on_stdin(tmp_path: Path, store: Store, clock: Clock) -> None:
    out = tmp_path / "out.eml"
    fake = script(tmp_path, "fake sendmail", f'[ "$1" = "-t" ] || exit 64\ncat > "{out}"\n')
    outbox = outbox_for(store, SendmailTransport(f"'{fake}' -t"), clock)
    outbox_id = outbox.enqueue(MAIL)
    assert outbox.deliver_due() == 1
    message = message_from_bytes(out.read_bytes(), policy=default)
    row = store.outbox_get(outbox_id)
    assert row is not None and row.sent == T0
    assert_delivered(message, row.message_id)


def test_a_failing_sendmail_command_keeps_the_mail(tmp_path: Path, store: Store, clock: Clock) -> None:
    fail = script(
        tmp_path, "fail", "cat >/dev/null\necho 'msmtp: cannot connect to smtp.example.org' >&2\nexit 1\n"
    )
    outbox = outbox_for(store, SendmailTransport(str(fail)), clock)
    outbox_id = outbox.enqueue(MAIL)
    assert outbox.deliver_due() == 0
    row = store.outbox_get(outbox_id)
    assert row is not None and row.sent is None and not row.gave_up
    assert "exited with 1: msmtp: cannot connect to smtp.example.org" in (row.last_error or "")


def test_sendmail_errors_say_whether_to_retry(tmp_path: Path) -> None:
    message = compose(MAIL, SENDER, message_id(SENDER))
    nouser = script(tmp_path, "nouser", "cat >/dev/null\necho 'no such user' >&2\nexit 67\n")
    with pytest.raises(MailError, match="EX_NOUSER") as e:
        SendmailTransport(str(nouser)).send(message, MAIL.recipients)
    assert e.value.permanent
    with pytest.raises(MailError, match="cannot run") as e:
        SendmailTransport(str(tmp_path / "missing") + " -t").send(message, MAIL.recipients)
    assert not e.value.permanent


def test_transport_from_config(tmp_path: Path, store: Store) -> None:
    config = smtp_config(tmp_path, 2525)
    outbox = outbox_from_config(store, config)
    assert isinstance(outbox.transport, SmtpTransport) and outbox.sender == SENDER
    assert isinstance(transport_from_config(config), SmtpTransport)
    assert str(transport_from_config(config)) == "SMTP 127.0.0.1:2525 (none)"
    config = dataclasses.replace(config, smtp_host=None, sendmail="/usr/bin/msmtp -t")
    assert str(transport_from_config(config)) == "command /usr/bin/msmtp -t"
    assert transport_from_config(dataclasses.replace(config, sendmail=None)) is None


def test_default_ports_follow_security(tmp_path: Path) -> None:
    config = smtp_config(tmp_path, 2525)
    ports = {
        security: SmtpTransport(dataclasses.replace(config, smtp_port=None, smtp_security=security)).port
        for security in ("none", "starttls", "tls")
    }
    assert ports == {"none": 25, "starttls": 587, "tls": 465}


# -- the sender thread ---------------------------------------------------------


def test_mail_sender_sends_an_enqueued_mail_promptly_and_stops(
    tmp_path: Path, servers: Servers, inbox: Inbox, store: Store
) -> None:
    port = servers.start(inbox)
    outbox = Outbox(store, SmtpTransport(smtp_config(tmp_path, port)), SENDER)
    sender = MailSender(outbox, poll=60)  # only notify() can explain a prompt delivery
    sender.start()
    try:
        time.sleep(0.2)  # the first round has run, the thread now waits
        start = time.monotonic()
        outbox.enqueue(MAIL)
        wait_for(lambda: inbox.messages, timeout=5, what="the mail to arrive")
        assert time.monotonic() - start < 1.0
        wait_for(lambda: outbox.size() == 0, timeout=5, what="the mail to be marked sent")
    finally:
        sender.stop(timeout=5)
    assert not sender._thread or not sender._thread.is_alive()
    assert len(inbox.messages) == 1 and inbox.messages[0]["Subject"] == SUBJECT


def test_mail_sender_survives_an_outage(tmp_path: Path, servers: Servers, inbox: Inbox, store: Store) -> None:
    port = free_port()
    clock = Clock(time.time())
    outbox = outbox_for(store, SmtpTransport(smtp_config(tmp_path, port)), clock)
    sender = MailSender(outbox, poll=0.05)
    sender.start()
    try:
        outbox.enqueue(MAIL)
        wait_for(
            lambda: store.outbox_due(float("inf")) and store.outbox_due(float("inf"))[0].attempts,
            what="a failed attempt",
        )
        servers.start(inbox, port=port)
        clock.now += 3600
        wait_for(lambda: inbox.messages, timeout=5, what="the mail after the outage")
    finally:
        sender.stop(timeout=5)
    assert len(inbox.messages) == 1


def test_mail_cli(tmp_path: Path, servers: Servers, inbox: Inbox) -> None:
    """`osmon-collector test-mail` goes through the configured server and prints its answer."""
    port = servers.start(inbox)
    config = tmp_path / "collector.toml"
    config.write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path / "osmon.db"}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nfrom = "osmon@example.org"\n'
    )
    command = [str(BIN / "osmon-collector"), "test-mail", "--config", str(config)]
    result = subprocess.run([*command, "--to", "ops@example.org"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sent through SMTP 127.0.0.1:{port} (none): 250 2.0.0 accepted\n"
    assert [str(m["To"]) for m in inbox.messages] == ["ops@example.org"]
    assert "test message" in str(inbox.messages[0]["Subject"])

    inbox.rcpt_replies["nobody@example.org"] = "550 5.1.1 no such user"
    refused = subprocess.run([*command, "--to", "nobody@example.org"], capture_output=True, text=True)
    assert refused.returncode == 2 and "550 5.1.1 no such user" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr

    servers.stop_all()
    down = subprocess.run([*command, "--to", "ops@example.org"], capture_output=True, text=True)
    assert down.returncode == 2 and f"cannot connect to SMTP 127.0.0.1:{port}" in down.stderr


def test_mail_cli_through_sendmail(tmp_path: Path) -> None:
    out = tmp_path / "out.eml"
    fake = script(tmp_path, "sendmail", f'cat > "{out}"\necho "queued as 42"\n')
    config = tmp_path / "collector.toml"
    config.write_text(
        f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path / "osmon.db"}"\nsendmail = "{fake} -t"\n'
    )
    result = subprocess.run(
        [str(BIN / "osmon-collector"), "test-mail", "--config", str(config), "--to", "ops@example.org"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.endswith("exit status 0: queued as 42\n")
    assert "To: ops@example.org" in out.read_text()

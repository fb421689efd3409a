"""CERT-FR: the real feed capture parsed exactly, bad documents refused, and a real HTTP server polled."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from collector import config as collector_config
from collector.certfr import CertfrPoller, FeedError, clean_text, fetch, parse_date, parse_feed
from collector.store import CertfrItem, FeedItem, open_store
from collector.store.sqlite import SQLiteStore
from osmon import __version__
from tests.conftest import free_port, wait_for

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FEED = (FIXTURES / "certfr-alerte-feed.xml").read_bytes()
ALERTE = "https://www.cert.ssi.gouv.fr/alerte/"
NEW_ITEM = (
    "<item><title>Vulnérabilité **critique** dans  OpenSSL (20 août 2026)</title>"
    f"<link>{ALERTE}CERTFR-2026-ALE-009/</link>"
    "<description>Le 19 août 2026, OpenSSL a publié un avis \\[1\\] concernant la vulnérabilité "
    "*CVE-2026-0001*...</description>"
    f'<guid isPermaLink="true">{ALERTE}CERTFR-2026-ALE-009/</guid>'
    "<pubDate>Thu, 20 Aug 2026 10:00:00 +0000</pubDate></item>"
).encode()


def ts(year: int, month: int, day: int, hour: int = 0) -> float:
    return datetime(year, month, day, hour, tzinfo=UTC).timestamp()


def with_new_item(feed: bytes = FEED) -> bytes:
    """The fixture as it would be after CERT-FR published one more alert (appended: oldest first)."""
    return feed.replace(b"</channel>", NEW_ITEM + b"</channel>")


# -- parsing the real capture ---------------------------------------------------


def test_parse_real_feed_keeps_every_item_oldest_first() -> None:
    items = parse_feed(FEED)
    assert len(items) == 40
    assert items[0] == FeedItem(
        guid=f"{ALERTE}CERTFR-2023-ALE-010/",
        title="Multiples vulnérabilités dans Exim (02 octobre 2023)",
        link=f"{ALERTE}CERTFR-2023-ALE-010/",
        published=ts(2023, 10, 2),
        description=(
            "Le 27 septembre 2023, Zero Day Initiative (ZDI) a publié six avis de sécurité [1] concernant "
            "des vulnérabilités de type zéro-jour affectant les versions antérieures à 4.96.1 ou 4.97 de "
            "l'agent de transfert de courriels (Mail Transfer Agent ou MTA) Exim. Le 1er octobre 2023, "
            "l'éditeur a..."
        ),
    )
    assert items[-1].guid == f"{ALERTE}CERTFR-2026-ALE-008/"
    assert items[-1].title == "Multiples vulnérabilités dans Microsoft Sharepoint (22 juillet 2026)"
    assert items[-1].published == ts(2026, 7, 22)
    assert [i.published for i in items] == sorted(i.published for i in items)
    assert len({i.guid for i in items}) == 40


def test_an_updated_alert_keeps_its_original_date() -> None:
    citrix = {i.guid: i for i in parse_feed(FEED)}[f"{ALERTE}CERTFR-2023-ALE-012/"]
    assert (
        citrix.title == "[MàJ] Vulnérabilité dans Citrix NetScaler ADC et NetScaler Gateway (23 octobre 2023)"
    )
    assert citrix.published == ts(2023, 10, 23)  # the update came on 22 November: the date did not move
    assert citrix.description.startswith(
        "[Mise à jour du 22 novembre 2023] L'éditeur a publié un document [3] le 20 novembre 2023"
    )


def test_markdown_leftovers_are_cleaned_from_the_real_feed() -> None:
    items = {i.guid.rsplit("/", 2)[-2]: i for i in parse_feed(FEED)}
    assert items["CERTFR-2025-ALE-003"].description.startswith(
        "[Mise à jour du 11 avril 2025] Le CERT-FR a connaissance"  # was **\[Mise à jour ...\]**
    )
    assert "à distance. [Mise à jour du 04 avril 2025] Le CERT-FR" in items["CERTFR-2025-ALE-003"].description
    assert "avec les privilèges root. L'éditeur" in items["CERTFR-2024-ALE-009"].description  # was *root*
    # A list bullet is text, not emphasis.
    assert (
        "activement exploitées : * le 10 septembre 2024, Ivanti" in items["CERTFR-2024-ALE-013"].description
    )
    assert (
        items["CERTFR-2024-ALE-008"].title
        == "[MàJ] Vulnérabilité dans les produits Check Point (30 mai 2024)"
    )
    for item in items.values():
        assert "**" not in item.description and "\\" not in item.description
        assert "  " not in item.description and "  " not in item.title


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("un avis \\[1\\] publié", "un avis [1] publié"),
        ("**\\[Mise à jour\\]** texte", "[Mise à jour] texte"),
        ("(*Mail Transfer Agent* ou *MTA*)", "(Mail Transfer Agent ou MTA)"),
        ("liste : * un * deux", "liste : * un * deux"),
        ("2 * 3 = 6", "2 * 3 = 6"),
        ("a\\*b\\* reste", "a*b* reste"),
        ("  deux\n lignes\t ", "deux lignes"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_parse_date() -> None:
    assert parse_date("Mon, 23 Oct 2023 00:00:00 +0000") == ts(2023, 10, 23)
    assert parse_date("Mon, 23 Oct 2023 02:00:00 +0200") == ts(2023, 10, 23)
    assert parse_date("Mon, 23 Oct 2023 00:00:00 -0000") == ts(2023, 10, 23)  # no zone given: UTC
    assert parse_date("le 23 octobre") is None
    assert parse_date("") is None


def test_item_without_guid_falls_back_to_link_and_without_either_is_skipped() -> None:
    feed = (
        b"<rss><channel>"
        b"<item><title>A</title><link>https://example.org/a</link></item>"
        b"<item><title>no way to recognise me</title></item>"
        b"</channel></rss>"
    )
    assert parse_feed(feed) == [FeedItem("https://example.org/a", "A", "https://example.org/a", None, "")]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<rss><channel><item><title>&lol3;</title><guid>x</guid></item></channel></rss>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss><channel><item><title>&xxe;</title><guid>x</guid></item></channel></rss>"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (FEED[: len(FEED) // 2], "malformed XML"),
        (b"", "malformed XML"),
        (
            b"<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>",
            "<!DOCTYPE html> declaration (an HTML page?)",
        ),
        (
            b"<html><body><p>Service indisponible</p></body></html>",
            "the document is <html>, expected <rss><channel>",
        ),
        (BILLION_LAUGHS, "<!DOCTYPE lolz> declaration"),
        (XXE, "<!DOCTYPE rss> declaration"),
        (b'<?xml version="1.0" encoding="no-such-charset"?><rss/>', "unknown encoding"),
        (b'<feed xmlns="http://www.w3.org/2005/Atom"></feed>', "expected <rss><channel>"),
    ],
    ids=["truncated", "empty", "html-doctype", "html", "billion-laughs", "xxe", "encoding", "atom"],
)
def test_bad_documents_are_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(FeedError, match="not an RSS feed") as e:
        parse_feed(data)
    assert message in str(e.value)


def test_oversized_document_is_refused_before_parsing() -> None:
    with pytest.raises(FeedError, match=r"feed is 26139 bytes, larger than the 10000 bytes allowed"):
        parse_feed(FEED, max_bytes=10_000)


# -- storage ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = open_store(tmp_path / "osmon.db")
    try:
        yield s
    finally:
        s.close()


def test_store_backlog_then_new_then_mailed(store: SQLiteStore, tmp_path: Path) -> None:
    items = parse_feed(FEED)
    assert store.certfr_latest() is None
    first = store.certfr_add(items, mail=True, now=1000.0)
    assert len(first.new) == 40 and {i.mail_state for i in first.new} == {"backlog"}
    assert store.certfr_pending_mail() == []

    again = store.certfr_add([*items, *parse_feed(with_new_item())[-1:]], mail=True, now=2000.0)
    assert again.updated == [] and [i.guid for i in again.new] == [f"{ALERTE}CERTFR-2026-ALE-009/"]
    new = again.new[0]
    assert new.title == "Vulnérabilité critique dans OpenSSL (20 août 2026)"
    assert (new.first_seen, new.mail_state) == (2000.0, "pending")
    assert store.certfr_pending_mail() == [new]
    assert store.certfr_latest() == new
    assert [i.guid for i in store.certfr_items(limit=2)] == [new.guid, items[-1].guid]

    store.certfr_mark_mailed([new.guid])
    assert store.certfr_pending_mail() == []
    reopened = open_store(tmp_path / "osmon.db")  # committed, not just cached
    try:
        assert reopened.certfr_latest() == new._replace(mail_state="sent")
        assert len(reopened.certfr_items(limit=100)) == 41
    finally:
        reopened.close()


def test_store_without_mail_and_same_day_alerts(store: SQLiteStore) -> None:
    day = ts(2026, 8, 20)
    store.certfr_add([FeedItem("g0", "old", "https://x/0", day - 86400, "")], mail=False, now=1.0)
    added = store.certfr_add(
        [
            FeedItem("g1", "morning", "https://x/1", day, ""),
            FeedItem("g2", "evening", "https://x/2", day, ""),
        ],
        mail=False,
        now=2.0,
    )
    assert [(i.guid, i.mail_state) for i in added.new] == [("g1", "none"), ("g2", "none")]
    # Same pubDate, same poll: the feed's order (oldest first) decides.
    assert store.certfr_latest().guid == "g2"
    assert [i.guid for i in store.certfr_items()] == ["g2", "g1", "g0"]


def test_store_update_changes_text_not_identity(store: SQLiteStore) -> None:
    original = FeedItem("g", "Vulnérabilité dans X", "https://x/g", 100.0, "Le 1er ...")
    store.certfr_add([original], mail=True, now=1.0)
    update = original._replace(title="[MàJ] Vulnérabilité dans X", description="[Mise à jour] ...")
    added = store.certfr_add([update, update], mail=True, now=2.0)  # a repeated guid counts once
    stored = CertfrItem(*update, first_seen=1.0, mail_state="backlog")
    assert added.new == [] and added.updated == [stored]
    assert store.certfr_items() == [stored]
    assert store.certfr_add([update], mail=True, now=3.0) == ([], [])


# -- polling a real HTTP server ----------------------------------------------------


class FeedServer:
    """A real HTTP server on 127.0.0.1 whose answer the test changes between polls."""

    def __init__(self, port: int = 0) -> None:
        self.body, self.status, self.content_type = FEED, 200, "application/rss+xml; charset=utf-8"
        self.send_length, self.hang, self.trickle, self.location = True, False, False, None
        self.user_agents: list[str] = []
        self.release = threading.Event()  # ends hanging requests at teardown
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/alerte/feed/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.user_agents.append(self.headers.get("User-Agent", ""))
                if server.hang:
                    server.release.wait(30)
                    return
                self.send_response(server.status)
                if server.location:
                    self.send_header("Location", server.location)
                self.send_header("Content-Type", server.content_type)
                if server.send_length:
                    self.send_header("Content-Length", str(len(server.body)))
                else:
                    self.close_connection = True  # the body ends when the connection does
                self.end_headers()
                if server.trickle:
                    self._trickle()
                else:
                    self.wfile.write(server.body)

            def _trickle(self) -> None:
                """One byte at a time, each well within the socket timeout."""
                try:
                    for i in range(len(server.body)):
                        if server.release.wait(0.2):
                            return
                        self.wfile.write(server.body[i : i + 1])
                        self.wfile.flush()
                except OSError:  # the client gave up
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output to what the code under test logs

        return Handler

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    s = FeedServer()
    try:
        yield s
    finally:
        s.close()


def make_config(
    tmp_path: Path, url: str, recipients: list[str] | None = None, timeout: int = 5
) -> collector_config.CollectorConfig:
    """A real collector.toml, loaded and checked like production's."""
    path = tmp_path / "collector.toml"
    quoted = ", ".join(f'"{r}"' for r in recipients or [])
    path.write_text(
        f'listen = "tcp://127.0.0.1:{free_port()}"\ndatabase = "{tmp_path / "osmon.db"}"\n'
        f'[certfr]\nurl = "{url}"\ninterval = "1m"\ntimeout = "{timeout}s"\nrecipients = [{quoted}]\n'
    )
    return collector_config.load(path)


class Mailbox:
    """The notify callback a mailer would provide: records what it was handed."""

    def __init__(self) -> None:
        self.batches: list[list[CertfrItem]] = []

    def __call__(self, items: list[CertfrItem]) -> None:
        self.batches.append(items)


def test_first_poll_stores_the_backlog_without_mailing(
    tmp_path: Path, server: FeedServer, store: SQLiteStore
) -> None:
    mailbox = Mailbox()
    poller = CertfrPoller(make_config(tmp_path, server.url, ["secu@example.org"]), store, notify=mailbox)
    added = poller.poll_once()
    assert len(added.new) == 40 and {i.mail_state for i in added.new} == {"backlog"}
    assert store.certfr_latest().guid == f"{ALERTE}CERTFR-2026-ALE-008/"
    assert (
        store.certfr_latest().title == "Multiples vulnérabilités dans Microsoft Sharepoint (22 juillet 2026)"
    )
    assert mailbox.batches == []
    assert server.user_agents == [f"osMonitoring/{__version__}"]


def test_one_new_alert_is_mailed_once(tmp_path: Path, server: FeedServer, store: SQLiteStore) -> None:
    mailbox = Mailbox()
    poller = CertfrPoller(make_config(tmp_path, server.url, ["secu@example.org"]), store, notify=mailbox)
    poller.poll_once()
    server.body = with_new_item()
    added = poller.poll_once()
    assert [i.guid for i in added.new] == [f"{ALERTE}CERTFR-2026-ALE-009/"] and added.updated == []
    assert added.new[0].mail_state == "pending"
    assert [[i.title for i in batch] for batch in mailbox.batches] == [
        ["Vulnérabilité critique dans OpenSSL (20 août 2026)"]
    ]
    latest = store.certfr_latest()
    assert latest.guid == f"{ALERTE}CERTFR-2026-ALE-009/" and latest.mail_state == "sent"
    assert latest.description == (
        "Le 19 août 2026, OpenSSL a publié un avis [1] concernant la vulnérabilité CVE-2026-0001..."
    )
    assert poller.poll_once() == ([], [])  # the same feed again: nothing new, nothing mailed
    assert len(mailbox.batches) == 1
    assert len(store.certfr_items(limit=100)) == 41


def test_new_alert_without_recipients_is_stored_not_mailed(
    tmp_path: Path, server: FeedServer, store: SQLiteStore
) -> None:
    mailbox = Mailbox()
    poller = CertfrPoller(make_config(tmp_path, server.url), store, notify=mailbox)
    poller.poll_once()
    server.body = with_new_item()
    assert [i.mail_state for i in poller.poll_once().new] == ["none"]
    assert mailbox.batches == [] and store.certfr_pending_mail() == []


def test_pending_alerts_wait_when_no_mailer_is_attached(
    tmp_path: Path, server: FeedServer, store: SQLiteStore
) -> None:
    config = make_config(tmp_path, server.url, ["secu@example.org"])
    CertfrPoller(config, store).poll_once()
    server.body = with_new_item()
    CertfrPoller(config, store).poll_once()
    assert [i.guid for i in store.certfr_pending_mail()] == [f"{ALERTE}CERTFR-2026-ALE-009/"]
    mailbox = Mailbox()
    CertfrPoller(config, store, notify=mailbox).poll_once()  # e.g. after a restart with mail set up
    assert [[i.guid for i in b] for b in mailbox.batches] == [[f"{ALERTE}CERTFR-2026-ALE-009/"]]


def test_an_update_is_not_a_new_alert(tmp_path: Path, server: FeedServer, store: SQLiteStore) -> None:
    mailbox = Mailbox()
    poller = CertfrPoller(make_config(tmp_path, server.url, ["secu@example.org"]), store, notify=mailbox)
    poller.poll_once()
    before = store.certfr_latest()
    server.body = FEED.replace(
        b"<title>Multiples vuln\xc3\xa9rabilit\xc3\xa9s dans Microsoft Sharepoint",
        b"<title>[M\xc3\xa0J] Multiples vuln\xc3\xa9rabilit\xc3\xa9s dans Microsoft Sharepoint",
    ).replace(
        b"<description>Le 14 juillet 2026, \xc3\xa0 l'occasion",
        b"<description>\\[Mise \xc3\xa0 jour du 1er ao\xc3\xbbt 2026\\] Le 14 juillet 2026, \xc3\xa0 l'occasion",
    )
    assert server.body != FEED
    added = poller.poll_once()
    assert added.new == [] and [i.guid for i in added.updated] == [before.guid]
    after = store.certfr_latest()
    assert after.title == "[MàJ] Multiples vulnérabilités dans Microsoft Sharepoint (22 juillet 2026)"
    assert after.description.startswith("[Mise à jour du 1er août 2026] Le 14 juillet 2026, à l'occasion")
    assert (after.published, after.first_seen, after.mail_state) == (
        before.published,
        before.first_seen,
        "backlog",
    )
    assert mailbox.batches == []
    assert len(store.certfr_items(limit=100)) == 40


def _break_server(kind: str, server: FeedServer) -> FeedServer | None:
    """Make the feed unusable the way `kind` says; returns the server that will answer later, if new."""
    if kind == "down":
        server.close()  # the port is closed: connection refused
        return None
    if kind == "500":
        server.status, server.body = 500, b"<h1>Internal Server Error</h1>"
    elif kind == "hang":
        server.hang = True
    elif kind == "html":
        server.body, server.content_type = (
            b"<!DOCTYPE html><html><body>Maintenance</body></html>",
            "text/html",
        )
    return server


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("down", "Connection refused"),
        ("500", "answered HTTP 500"),
        ("hang", "did not answer in time (timeout 1s)"),
        ("html", "(an HTML page?)"),
    ],
)
def test_failures_are_logged_once_and_recovery_is_logged(
    kind: str,
    reason: str,
    tmp_path: Path,
    server: FeedServer,
    store: SQLiteStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="osmon.certfr")
    url = server.url
    poller = CertfrPoller(make_config(tmp_path, url, timeout=1), store)
    _break_server(kind, server)
    assert poller.poll_once() is None
    assert poller.poll_once() is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert reason in warnings[0].getMessage() and "will retry every 60s" in warnings[0].getMessage()
    assert store.certfr_latest() is None

    revived = FeedServer(server.port) if kind == "down" else server
    try:
        revived.hang, revived.status, revived.body = False, 200, FEED
        revived.content_type = "application/rss+xml"
        caplog.clear()
        added = poller.poll_once()
        assert len(added.new) == 40 and {i.mail_state for i in added.new} == {"backlog"}
        assert [r.getMessage() for r in caplog.records if "works again" in r.getMessage()] == [
            f"CERT-FR: polling {url} works again"
        ]
        caplog.clear()
        _break_server("500", revived)
        assert poller.poll_once() is None  # a new outage is reported again
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    finally:
        if revived is not server:
            revived.close()


def test_a_store_failure_does_not_escape_the_poller(
    tmp_path: Path, server: FeedServer, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    poller = CertfrPoller(make_config(tmp_path, server.url), store)
    with sqlite3.connect(tmp_path / "osmon.db") as db:  # damage the schema under the collector
        db.execute("DROP TABLE certfr_items")
    assert poller.poll_once() is None
    assert poller.poll_once() is None
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "cannot write CERT-FR items" in warning.getMessage() and "no such table" in warning.getMessage()


def test_fetch_caps_the_body_with_or_without_content_length(server: FeedServer) -> None:
    assert fetch(server.url, timeout=5) == FEED
    with pytest.raises(FeedError, match=r"sends 26139 bytes, larger than the 10000 bytes allowed"):
        fetch(server.url, timeout=5, max_bytes=10_000)
    server.send_length = False
    assert fetch(server.url, timeout=5) == FEED
    with pytest.raises(FeedError, match=r"sends more than the 10000 bytes allowed"):
        fetch(server.url, timeout=5, max_bytes=10_000)


def test_fetch_gives_up_on_a_server_that_trickles(server: FeedServer) -> None:
    server.trickle, server.send_length = True, False
    with pytest.raises(FeedError, match=r"did not answer in time \(timeout 1s\)"):
        fetch(server.url, timeout=1)


def test_fetch_refuses_other_schemes(server: FeedServer) -> None:
    with pytest.raises(FeedError, match=r"refusing 'file:///etc/passwd': only http:// and https://"):
        fetch("file:///etc/passwd", timeout=5)
    server.status, server.location, server.body = 302, "ftp://127.0.0.1/feed.xml", b""
    with pytest.raises(FeedError, match=r"refusing a redirect to 'ftp://127.0.0.1/feed.xml'"):
        fetch(server.url, timeout=5)


def test_poller_thread_polls_at_once_survives_failures_and_stops_promptly(
    tmp_path: Path, server: FeedServer, store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = 500
    poller = CertfrPoller(make_config(tmp_path, server.url), store)  # interval: 60 s
    poller.start()
    try:
        wait_for(lambda: any(r.levelno == logging.WARNING for r in caplog.records), what="the failure log")
        assert poller.is_alive()
    finally:
        poller.stop()
    # Stopping woke it from its 60 s wait: the thread is gone, not still sleeping.
    assert not poller.is_alive()

    server.status = 200
    poller = CertfrPoller(make_config(tmp_path, server.url), store)
    poller.start()
    try:
        wait_for(store.certfr_latest, what="the first poll to store the feed")
    finally:
        poller.stop()
    assert not poller.is_alive()
    assert store.certfr_latest().guid == f"{ALERTE}CERTFR-2026-ALE-008/"

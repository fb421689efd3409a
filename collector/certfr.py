"""The CERT-FR alert feed: fetch the RSS, parse it safely, store new items, hand new ones to the mailer.

The feed (https://www.cert.ssi.gouv.fr/alerte/feed/) lists items oldest first; an
update only prefixes "[MàJ]" to the title and keeps the original pubDate;
descriptions are cut at ~300 characters and carry Markdown leftovers (`\\[1\\]`, `**`).
The collector often runs on a network without internet: a failed fetch is logged
once, retried at the next interval, and never stops the collector.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import re
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC
from urllib.parse import urlsplit

from collector.config import CollectorConfig
from collector.store import CertfrAdded, CertfrItem, FeedItem, Store, StoreError
from osmon import __version__

log = logging.getLogger("osmon.certfr")

MAX_FEED_BYTES = 2 * 1024 * 1024  # the real feed is ~30 KB; anything near this is not it
USER_AGENT = f"osMonitoring/{__version__}"

_BOLD = re.compile(r"(?<!\\)\*\*")
# *emphasis*: a star glued to a word on each side; a list bullet ("* item") is left alone.
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[^\s*])([^*]*?[^\s*\\])\*(?![\w*])")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")


class FeedError(Exception):
    """The feed could not be fetched or is not a usable RSS document."""


# -- parsing ------------------------------------------------------------------


class _NoDoctype(ET.TreeBuilder):
    """A tree builder that refuses any DOCTYPE: RSS needs none, and entities are the XML bomb vector."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        hint = " (an HTML page?)" if name.lower() == "html" else ""
        raise FeedError(f"not an RSS feed: it has a <!DOCTYPE {name}> declaration{hint}, refused")


def parse_feed(data: bytes, max_bytes: int = MAX_FEED_BYTES) -> list[FeedItem]:
    """The items of an RSS 2.0 document, in feed order (CERT-FR: oldest first)."""
    if len(data) > max_bytes:
        raise FeedError(f"feed is {len(data)} bytes, larger than the {max_bytes} bytes allowed")
    parser = ET.XMLParser(target=_NoDoctype())
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as e:
        raise FeedError(f"not an RSS feed: malformed XML ({e})") from None
    except LookupError as e:  # an encoding="..." Python does not know
        raise FeedError(f"not an RSS feed: {e}") from None
    if root.tag != "rss" or root.find("channel") is None:
        raise FeedError(f"not an RSS feed: the document is <{root.tag}>, expected <rss><channel>")
    return [item for element in root.iterfind("channel/item") if (item := _item(element)) is not None]


def _item(element: ET.Element) -> FeedItem | None:
    link = _text(element, "link")
    guid = _text(element, "guid") or link  # RSS makes guid optional; the link identifies the alert too
    if not guid:
        return None  # nothing to recognise it by on the next poll
    return FeedItem(
        guid=guid,
        title=clean_text(_text(element, "title")),
        link=link,
        published=parse_date(_text(element, "pubDate")),
        description=clean_text(_text(element, "description")),
    )


def _text(element: ET.Element, tag: str) -> str:
    return (element.findtext(tag) or "").strip()


def clean_text(text: str) -> str:
    """Text without the feed's Markdown leftovers (`\\[1\\]` -> `[1]`, `**`, `*x*`) and runs of spaces."""
    text = _BOLD.sub("", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _ESCAPE.sub(r"\1", text)
    return " ".join(text.split())


def parse_date(value: str) -> float | None:
    """An RFC 822 date (pubDate) as Unix seconds; None if absent or unreadable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # "-0000" means UTC with no claim about local time (RFC 5322)
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def http_link(url: str) -> str | None:
    """`url` if it is http(s), else None: a feed item's javascript: link must never become an href."""
    try:
        return url if urlsplit(url).scheme in ("http", "https") else None
    except ValueError:
        return None


# -- fetching -----------------------------------------------------------------


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s): urllib would also follow one to ftp://."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            fp.close()  # urllib closes it only after a redirect it follows
            raise FeedError(f"refusing a redirect to {newurl!r}: only http and https are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def fetch(url: str, timeout: float, max_bytes: int = MAX_FEED_BYTES) -> bytes:
    """The body of `url`, read within about `timeout` seconds and at most `max_bytes` long."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise FeedError(f"refusing {url!r}: only http:// and https:// URLs are fetched")
    request = urllib.request.Request(
        url, headers={"User-Agent": USER_AGENT, "Accept": "application/rss+xml, */*"}
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return _read_capped(response, url, time.monotonic() + timeout, max_bytes)
    except (OSError, http.client.HTTPException) as e:
        # Keep only the message: the exception's frames hold the half-read connection
        # open for as long as anything (a log record, a __context__) keeps the exception.
        problem = _describe(e, url, timeout)
    raise FeedError(problem)


def _describe(error: OSError | http.client.HTTPException, url: str, timeout: float) -> str:
    if isinstance(error, urllib.error.HTTPError):
        error.close()  # it holds the error page's connection
        return f"{url} answered HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot reach {url}: {error.reason}"
    if isinstance(error, TimeoutError):
        return f"{url} did not answer in time (timeout {timeout:g}s)"
    return f"cannot read {url}: {error or type(error).__name__}"  # reset, TLS failure, broken HTTP


def _read_capped(response: http.client.HTTPResponse, url: str, deadline: float, max_bytes: int) -> bytes:
    """Read the body in chunks: the socket timeout alone would let a trickling server hold us forever."""
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FeedError(f"{url} sends {length} bytes, larger than the {max_bytes} bytes allowed")
    chunks, size = [], 0
    while chunk := response.read1(65536):
        size += len(chunk)
        if size > max_bytes:
            raise FeedError(f"{url} sends more than the {max_bytes} bytes allowed")
        if time.monotonic() > deadline:
            raise TimeoutError
        chunks.append(chunk)
    return b"".join(chunks)


# -- polling ------------------------------------------------------------------


STANDBY_CHECK = 15.0  # seconds between two looks of a collector whose turn it is not to poll


class CertfrPoller:
    """A daemon thread that polls the feed every `certfr_interval` and stores what it finds.

    `notify(items)`, if given, is called with alerts waiting to be mailed (only when
    `certfr_recipients` is set); they are marked sent once it returns. Without it
    they stay 'pending' for another component to mail.
    """

    def __init__(
        self,
        config: CollectorConfig,
        store: Store,
        notify: Callable[[list[CertfrItem]], object] | None = None,
        active: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.notify = notify
        # Whether polling is this collector's duty now (collector.leases.Duties); None: always.
        self.active = active
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False  # a failure was logged; say so again only after a success

    def start(self) -> None:
        """Poll now, then every interval, in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="certfr", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Wake the thread and wait for it to end (a fetch under way ends within `certfr_timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.active is not None and not self.active():
                    # Another collector polls: look again soon, to take over if it goes.
                    self._stop.wait(min(self.config.certfr_interval, STANDBY_CHECK))
                    continue
                self.poll_once()
                self._stop.wait(self.config.certfr_interval)
        finally:
            self.store.close()  # this thread's own SQLite connection

    def poll_once(self) -> CertfrAdded | None:
        """Fetch, store and hand new alerts to `notify`; None if that failed (logged once per outage)."""
        try:
            added = self._poll()
        # The one boundary of this thread: whatever goes wrong, the collector carries on.
        except (FeedError, StoreError, OSError) as e:
            self._failed(e)
            return None
        if self._failing:
            self._failing = False
            log.info("CERT-FR: polling %s works again", self.config.certfr_url)
        return added

    def _poll(self) -> CertfrAdded:
        items = parse_feed(fetch(self.config.certfr_url, self.config.certfr_timeout))
        mail = bool(self.config.certfr_recipients)
        added = self.store.certfr_add(items, mail=mail)
        _log_added(added, len(items))
        if mail and self.notify is not None:
            self._mail_pending()
        return added

    def _mail_pending(self) -> None:
        pending = self.store.certfr_pending_mail()
        if pending and self.notify is not None:
            # Marked after notify returns: a crash in between mails twice rather than never.
            self.notify(pending)
            self.store.certfr_mark_mailed([item.guid for item in pending])

    def _failed(self, error: Exception) -> None:
        if self._failing:
            log.debug("CERT-FR: poll failed again: %s", str(error))
            return
        self._failing = True
        log.warning(
            "CERT-FR: poll failed, will retry every %gs (logged once until it works again): %s",
            self.config.certfr_interval,
            str(error),  # not the exception: its traceback would keep every frame alive with the record
        )


def _log_added(added: CertfrAdded, found: int) -> None:
    if any(item.mail_state == "backlog" for item in added.new):
        log.info("CERT-FR: stored the %d alerts of the feed (backlog, not mailed)", len(added.new))
        return
    for item in added.new:
        log.info("CERT-FR: new alert %s", item.title)
    for item in added.updated:
        log.info("CERT-FR: updated alert %s", item.title)
    if not added.new and not added.updated:
        log.debug("CERT-FR: nothing new among %d items", found)

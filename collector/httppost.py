"""One HTTP POST with bounded time, and what its outcome means for trying again.

Used by webhooks and Alertmanager. TLS certificates are verified (the system's CAs, or a
`ca_file`); user and password in the URL become basic authentication. A connection
that does not answer within `timeout`, or a conversation longer than `deadline`, is cut.
2xx is delivered; 408, 429 and 5xx, a refused or timed-out connection are worth trying
again; any other answer (3xx, 4xx) will not change by retrying the same request.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

from collector.delivery import DeliveryError
from collector.mail import one_line
from osmon import __version__

TIMEOUT = 10.0  # seconds to connect, and to wait for each answer
DEADLINE = 30.0  # seconds for the whole conversation
ANSWER_LIMIT = 65536  # bytes of an answer read (and 200 characters of it quoted in errors)
RETRY_STATUSES = {408, 429}


def shown(url: str) -> str:
    """`url` as logs and the dashboard may show it: scheme, host and port only.

    A webhook URL's path often is its secret (Slack's /services/T0/B0/XXXX), and its user
    information a password.
    """
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.hostname}{port}{rest}"


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Certificates verified against the system's CAs, or only those of `ca_file`."""
    return ssl.create_default_context(cafile=ca_file)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
    context: ssl.SSLContext | None = None,
) -> int:
    """POST `body` (JSON) to `url`; returns the 2xx status, or raises DeliveryError."""
    parts = urlsplit(url)
    where = shown(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError(f"{where}: not an http(s) URL", permanent=True)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = {
        "Content-Type": "application/json",
        "User-Agent": f"osMonitoring/{__version__}",
        **(headers or {}),
    }
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        sent["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    wait = min(timeout, deadline)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=wait, context=context or tls_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=wait)
    # The whole conversation ends at the deadline, however slowly a server trickles its answer.
    cut = threading.Timer(deadline, _cut, (conn,))
    cut.daemon = True
    started = time.monotonic()
    cut.start()
    try:
        conn.request("POST", path, body=body, headers=sent)
        response = conn.getresponse()
        answer = response.read(ANSWER_LIMIT)
        status = response.status
    except TimeoutError:
        raise DeliveryError(f"{where}: no answer within {wait:g} s") from None
    except ssl.SSLError as e:  # a certificate that does not verify: fixed on the server, or with ca_file
        raise DeliveryError(f"{where}: TLS: {e}") from None
    except (OSError, http.client.HTTPException) as e:
        if time.monotonic() - started >= deadline:
            raise DeliveryError(f"{where}: cut after {deadline:g} s") from None
        raise DeliveryError(f"{where}: {e or type(e).__name__}") from None
    finally:
        cut.cancel()
        conn.close()
    if 200 <= status < 300:
        return status
    said = one_line(answer.decode("utf-8", "replace"))[:200]
    reason = f"{where} answered {status} {said}".rstrip()
    permanent = status < 500 and status not in RETRY_STATUSES
    raise DeliveryError(reason, permanent=permanent)


def _cut(conn: http.client.HTTPConnection) -> None:
    """Past the deadline: end the connection, which ends any read blocked on it."""
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)

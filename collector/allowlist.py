"""CurveZMQ access: the allow-list of agent keys, each bound to the one host it may speak for.

The `agents` directory holds `<host>.key` files (pyzmq certificate format).
The ZAP handler lets in only those keys and names the connection
`<host>/<key>`; ingest then refuses any snapshot whose host differs, or whose
key has since been removed or replaced (ZAP runs once per connection, so an
open connection must be re-checked against the current list).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from agent import keys, wire

log = logging.getLogger("osmon.allowlist")

REFUSAL_LOG_PERIOD = 60.0  # an unknown key is logged at most once a minute


class AllowList:
    """{host: public key} read from a directory, reloaded when its files change."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.by_host: dict[str, bytes] = {}
        self.by_key: dict[bytes, str] = {}
        self._stamp: tuple = ()
        self._refused_logged: dict[bytes, float] = {}
        self.reload()

    def _files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.key"))
        except OSError as e:
            log.error("cannot list agent keys in %s: %s", self.directory, e)
            return []

    def _current_stamp(self) -> tuple:
        stamp = []
        for path in self._files():
            try:
                st = path.stat()
            except OSError:
                continue
            stamp.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    def reload_if_changed(self) -> bool:
        """Re-read the directory if a key file was added, removed or changed."""
        if self._current_stamp() == self._stamp:
            return False
        self.reload()
        return True

    def reload(self) -> None:
        by_host: dict[str, bytes] = {}
        by_key: dict[bytes, str] = {}
        self._stamp = self._current_stamp()
        for path in self._files():
            host = path.name[: -len(".key")]
            if not wire.valid_host(host):
                log.error("ignored agent key %s: %r is not a valid host name", path, host)
                continue
            try:
                key = keys.load_public(path)
            except keys.KeyFileError as e:
                log.error("ignored agent key: %s", e)
                continue
            if key in by_key:
                log.error(
                    "ignored agent key %s: the same key is already %s's; each host needs its own",
                    path,
                    by_key[key],
                )
                continue
            by_host[host], by_key[key] = key, host
        # Swap whole dicts: the ZAP thread reads them without a lock.
        self.by_host, self.by_key = by_host, by_key
        log.info("allow-list %s: %d agent keys", self.directory, len(by_host))

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: is this Z85 key allowed?"""
        allowed = key in self.by_key
        if not allowed:
            now = time.monotonic()
            if now - self._refused_logged.get(key, -REFUSAL_LOG_PERIOD) >= REFUSAL_LOG_PERIOD:
                if len(self._refused_logged) > 10_000:
                    self._refused_logged.clear()
                self._refused_logged[key] = now
                log.warning(
                    "refused a CurveZMQ client with an unknown key %s", key.decode("ascii", "replace")
                )
        return allowed

    def refusal(self, user_id: str | None, host: str) -> str | None:
        """Why a snapshot for `host` from a connection named `user_id` must be refused, or None."""
        if not user_id or "/" not in user_id:
            return "connection not authenticated by CurveZMQ"
        key_host, _, key = user_id.partition("/")
        if self.by_host.get(key_host) != key.encode():
            return f"the key of {key_host} was removed from the allow-list"
        if host != key_host:
            return f"the key of {key_host} cannot send snapshots for host {host}"
        return None


class HostAuthenticator(ThreadAuthenticator):
    """ZAP handler: allow-listed keys only; the connection's User-Id is `<host>/<key>`."""

    def __init__(self, context: zmq.Context, allowlist: AllowList) -> None:
        super().__init__(context, log=logging.getLogger("osmon.zap"))
        self.allowlist = allowlist

    def curve_user_id(self, client_public_key: bytes) -> str:
        key = z85.encode(client_public_key)
        return f"{self.allowlist.by_key.get(key, '?')}/{key.decode('ascii')}"


def start(context: zmq.Context, agents_dir: str) -> tuple[HostAuthenticator, AllowList]:
    """Start the ZAP handler for the context's CURVE sockets."""
    allowlist = AllowList(agents_dir)
    authenticator = HostAuthenticator(context, allowlist)
    authenticator.start()
    authenticator.configure_curve_callback("*", credentials_provider=allowlist)
    return authenticator, allowlist

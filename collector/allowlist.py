"""CurveZMQ access: the allow-list of agent keys, each bound to the one host it may speak for.

The `agents` directory holds `<host>.key` files (pyzmq certificate format).
The ZAP handler lets in only those keys and names the connection
`<host>/<key>`; ingest then refuses any snapshot whose host differs, or whose
key has since been removed or replaced (ZAP runs once per connection, so an
open connection must be re-checked against the current list).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from osmon import keys, wire

log = logging.getLogger("osmon.allowlist")

REFUSAL_LOG_PERIOD = 60.0  # unknown keys are logged at most once a minute, all together


class AllowList:
    """{host: public key} read from a directory, reloaded when its files change."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.by_host: dict[str, bytes] = {}
        self.by_key: dict[bytes, str] = {}
        self._stamp: tuple = ()
        self._refused_logged_at = -REFUSAL_LOG_PERIOD  # when an unknown key was last logged
        self._refused_held = 0  # unknown keys refused since, not logged
        self.reload()

    def _files(self) -> list[Path]:
        """The key files; OSError if the directory cannot be listed now.

        os.scandir, not Path.glob: glob takes an unreadable directory for an empty one.
        """
        with os.scandir(self.directory) as entries:
            return sorted(Path(e.path) for e in entries if e.name.endswith(".key"))

    def _current_stamp(self) -> tuple:
        stamp = []
        for path in self._files():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            stamp.append((path.name, st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    def reload_if_changed(self) -> bool:
        """Re-read the directory if a key file was added, removed or changed."""
        try:
            changed = self._current_stamp() != self._stamp
        except OSError as e:
            self._keep(e)
            return False
        if changed:
            self.reload()
        return changed

    def reload(self) -> None:
        """Read the directory anew; if it cannot be read whole, keep the list in force.

        An error reading the directory is no reason to cut agents off: with descriptors
        exhausted by a connection flood, an empty list would silence the whole fleet.
        """
        try:
            stamp = self._current_stamp()
            by_host, by_key = self._read(self._files())
        except (OSError, keys.KeyFileUnreadable) as e:
            self._keep(e)
            return
        # Swap whole dicts: the ZAP thread reads them without a lock.
        self.by_host, self.by_key, self._stamp = by_host, by_key, stamp
        log.info("allow-list %s: %d agent keys", self.directory, len(by_host))

    def _keep(self, error: Exception) -> None:
        log.error(
            "cannot read the agent keys in %s (%s): the allow-list in force (%d keys) is kept, "
            "and read again at the next reload",
            self.directory,
            error,
            len(self.by_host),
        )

    @staticmethod
    def _read(files: list[Path]) -> tuple[dict[str, bytes], dict[bytes, str]]:
        """{host: key} and {key: host} of the readable, valid key files (KeyFileUnreadable if one is not)."""
        by_host: dict[str, bytes] = {}
        by_key: dict[bytes, str] = {}
        for path in files:
            host = path.name[: -len(".key")]
            if not wire.valid_host(host):
                log.error("ignored agent key %s: %r is not a valid host name", path, host)
                continue
            try:
                key = keys.load_public(path)
            except keys.KeyFileUnreadable:
                raise
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
        return by_host, by_key

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: is this Z85 key allowed?"""
        allowed = key in self.by_key
        if not allowed:
            self._log_refusal(key)
        return allowed

    def _log_refusal(self, key: bytes) -> None:
        """One line per REFUSAL_LOG_PERIOD for all unknown keys together, with the count held back:
        a line per new key let a peer making up keys write the log without bound."""
        now = time.monotonic()
        if now - self._refused_logged_at < REFUSAL_LOG_PERIOD:
            self._refused_held += 1
            return
        more = f" ({self._refused_held} more refused since the last report)" if self._refused_held else ""
        self._refused_logged_at, self._refused_held = now, 0
        log.warning(
            "refused a CurveZMQ client with an unknown key %s%s", key.decode("ascii", "replace"), more
        )

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

"""The dashboard's handle on the database: opened on first use, read-only per request."""

from __future__ import annotations

import threading

from collector.store import Store, StoreError, open_store
from collector.web.errors import Unavailable


class Storage:
    """Opens the store lazily: the dashboard may start before the collector has created the database."""

    def __init__(self, database: str, store: Store | None = None, password_file: str | None = None) -> None:
        self.database, self.password_file = database, password_file
        self._store = store
        self._lock = threading.Lock()

    def get(self) -> Store:
        """The store, its connection for this thread set to refuse writes; Unavailable if it cannot be opened."""
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    try:
                        # readonly: never migrate; the `run` process owns the schema.
                        self._store = open_store(
                            self.database,
                            readonly=True,
                            password_file=self.password_file,
                            application_name="osmon-collector web",
                        )
                    except StoreError as e:
                        raise Unavailable(str(e)) from None
                store = self._store
        store.web_read_only()
        return store

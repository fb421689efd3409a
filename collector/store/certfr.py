"""The SQL of CERT-FR alerts: each feed item stored once by guid, with its mail state."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from collector.store.connected import Connected
from collector.store.records import CertfrAdded, CertfrItem, FeedItem

_COLUMNS = "guid, title, link, published, description, first_seen, mail_state"
# Same-day alerts share a pubDate and one poll shares first_seen: rowid (insertion
# order, which follows the feed's oldest-first order) breaks the tie.
_NEWEST_FIRST = "ORDER BY published IS NULL, published DESC, first_seen DESC, rowid DESC"


class CertfrQueries(Connected):
    """Mixin of SQLiteStore: every statement about CERT-FR items."""

    def certfr_add(self, items: Sequence[FeedItem], mail: bool, now: float | None = None) -> CertfrAdded:
        """Store unknown guids and refresh changed ones, in one transaction.

        New items are 'backlog' when the table was empty (the first successful poll:
        those alerts are old news), else 'pending' if `mail`, else 'none'.
        """
        now = time.time() if now is None else now
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Decided inside the transaction, so two pollers cannot both see "empty".
            state = "backlog" if not self._certfr_any() else "pending" if mail else "none"
            stored = {row[0]: row for row in self._certfr_rows([i.guid for i in items])}
            new, updated = [], []
            for item in {i.guid: i for i in items}.values():  # a repeated guid: the last wins
                old = stored.get(item.guid)
                if old is None:
                    new.append(CertfrItem(*item, first_seen=now, mail_state=state))
                elif (old.title, old.link, old.description) != (item.title, item.link, item.description):
                    published = old.published if item.published is None else item.published
                    updated.append(
                        old._replace(
                            title=item.title,
                            link=item.link,
                            description=item.description,
                            published=published,
                        )
                    )
            db.executemany(f"INSERT INTO certfr_items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", new)
            db.executemany(
                "UPDATE certfr_items SET title = ?, link = ?, description = ?, published = ? WHERE guid = ?",
                [(i.title, i.link, i.description, i.published, i.guid) for i in updated],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return CertfrAdded(new, updated)

    def certfr_latest(self) -> CertfrItem | None:
        """The most recent alert (by pubDate, then by when it was first seen), or None."""
        items = self.certfr_items(limit=1)
        return items[0] if items else None

    def certfr_items(self, limit: int = 20) -> list[CertfrItem]:
        """The most recent alerts, newest first."""
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM certfr_items {_NEWEST_FIRST} LIMIT ?", (limit,))
        return [CertfrItem(*row) for row in rows]

    def certfr_pending_mail(self) -> list[CertfrItem]:
        """Alerts waiting to be mailed, oldest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM certfr_items WHERE mail_state = 'pending' "
            "ORDER BY published IS NULL, published, first_seen, rowid"
        )
        return [CertfrItem(*row) for row in rows]

    def certfr_mark_mailed(self, guids: Sequence[str]) -> None:
        """Record that these pending alerts were handed to the mailer."""
        # One statement: atomic in autocommit mode without an explicit transaction.
        self.db.execute(
            "UPDATE certfr_items SET mail_state = 'sent' WHERE mail_state = 'pending' "
            "AND guid IN (SELECT value FROM json_each(?))",
            (_json_list(guids),),
        )

    def _certfr_any(self) -> bool:
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM certfr_items)").fetchone()[0])

    def _certfr_rows(self, guids: list[str]) -> list[CertfrItem]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM certfr_items WHERE guid IN (SELECT value FROM json_each(?))",
            (_json_list(guids),),
        )
        return [CertfrItem(*row) for row in rows]


def _json_list(values: Sequence[str]) -> str:
    # json_each() binds a whole list as one parameter: no limit on the number of
    # "?" and no SQL built from data.
    return json.dumps(list(values))

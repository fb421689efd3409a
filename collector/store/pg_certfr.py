"""The SQL of CERT-FR alerts on PostgreSQL: each feed item stored once by guid, with its mail state."""

from __future__ import annotations

import time
from collections.abc import Sequence

from collector.store.pg_base import PgBase
from collector.store.records import CertfrAdded, CertfrItem, FeedItem

_COLUMNS = "guid, title, link, published, description, first_seen, mail_state"
# `added` (an identity column) is the insertion order, as SQLite's rowid: the feed's oldest-first order.
_NEWEST_FIRST = "ORDER BY published IS NULL, published DESC, first_seen DESC, added DESC"
CERTFR_LOCK = 0x6F736D6F6E10  # two pollers deciding "first poll" at once take it in turn


class PgCertfrQueries(PgBase):
    """Mixin of PostgresStore: every statement about CERT-FR items."""

    def certfr_add(self, items: Sequence[FeedItem], mail: bool, now: float | None = None) -> CertfrAdded:
        """Store unknown guids and refresh changed ones, in one transaction (see the SQLite backend)."""
        now = time.time() if now is None else now
        db = self.db
        db.execute("SELECT pg_advisory_xact_lock(%s)", (CERTFR_LOCK,))
        row = db.execute("SELECT EXISTS (SELECT 1 FROM certfr_items)").fetchone()
        state = "backlog" if not (row and row[0]) else "pending" if mail else "none"
        stored = {
            r[0]: CertfrItem(*r)
            for r in db.execute(
                f"SELECT {_COLUMNS} FROM certfr_items WHERE guid = ANY(%s)", ([i.guid for i in items],)
            )
        }
        new, updated = [], []
        for item in {i.guid: i for i in items}.values():
            old = stored.get(item.guid)
            if old is None:
                new.append(CertfrItem(*item, first_seen=now, mail_state=state))
            elif (old.title, old.link, old.description) != (item.title, item.link, item.description):
                published = old.published if item.published is None else item.published
                updated.append(
                    old._replace(
                        title=item.title, link=item.link, description=item.description, published=published
                    )
                )
        with db.cursor() as cur:
            if new:
                cur.executemany(
                    f"INSERT INTO certfr_items ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", new
                )
            if updated:
                cur.executemany(
                    "UPDATE certfr_items SET title = %s, link = %s, description = %s, published = %s WHERE guid = %s",
                    [(i.title, i.link, i.description, i.published, i.guid) for i in updated],
                )
        return CertfrAdded(new, updated)

    def certfr_latest(self) -> CertfrItem | None:
        items = self.certfr_items(limit=1)
        return items[0] if items else None

    def certfr_items(self, limit: int = 20) -> list[CertfrItem]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM certfr_items {_NEWEST_FIRST} LIMIT %s", (limit,))
        return [CertfrItem(*row) for row in rows]

    def certfr_pending_mail(self) -> list[CertfrItem]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM certfr_items WHERE mail_state = 'pending' "
            "ORDER BY published IS NULL, published, first_seen, added"
        )
        return [CertfrItem(*row) for row in rows]

    def certfr_mark_mailed(self, guids: Sequence[str]) -> None:
        self.db.execute(
            "UPDATE certfr_items SET mail_state = 'sent' WHERE mail_state = 'pending' AND guid = ANY(%s)",
            (list(guids),),
        )

"""The SQL of scraper tokens: names and SHA-256 digests of read-only bearer tokens."""

from __future__ import annotations

import sqlite3

from collector.store.connected import Connected
from collector.store.records import StoreError, Token


class TokenQueries(Connected):
    """Mixin of SQLiteStore: every statement about scraper tokens."""

    def token_add(self, name: str, digest: str, now: float) -> None:
        """Store a new token's digest under `name`; StoreError if the name is taken."""
        try:
            self.db.execute(
                "INSERT INTO tokens (name, digest, created) VALUES (?, ?, ?)", (name, digest, now)
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"a token named {name!r} exists already (revoke it first)") from None

    def token_revoke(self, name: str) -> bool:
        """Forget the token `name`; False if there was none."""
        return self.db.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount > 0

    def tokens(self) -> list[Token]:
        """Every token, by name."""
        return [Token(*row) for row in self.db.execute("SELECT name, created FROM tokens ORDER BY name")]

    def token_name(self, digest: str) -> str | None:
        """The name of the token with this digest, or None."""
        row = self.db.execute("SELECT name FROM tokens WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else row[0]

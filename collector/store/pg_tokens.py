"""The SQL of scraper tokens on PostgreSQL: names and SHA-256 digests of read-only bearer tokens."""

from __future__ import annotations

import psycopg

from collector.store.pg_base import PgBase
from collector.store.records import StoreError, Token


class PgTokenQueries(PgBase):
    """Mixin of PostgresStore: every statement about scraper tokens."""

    def token_add(self, name: str, digest: str, now: float) -> None:
        """Store a new token's digest under `name`; StoreError if the name is taken."""
        try:
            self.db.execute(
                "INSERT INTO tokens (name, digest, created) VALUES (%s, %s, %s)", (name, digest, now)
            )
        except psycopg.errors.UniqueViolation:
            raise StoreError(f"a token named {name!r} exists already (revoke it first)") from None

    def token_revoke(self, name: str) -> bool:
        """Forget the token `name`; False if there was none."""
        return self.db.execute("DELETE FROM tokens WHERE name = %s", (name,)).rowcount > 0

    def tokens(self) -> list[Token]:
        """Every token, by name."""
        return [Token(*row) for row in self.db.execute("SELECT name, created FROM tokens ORDER BY name")]

    def token_name(self, digest: str) -> str | None:
        """The name of the token with this digest, or None."""
        row = self.db.execute("SELECT name FROM tokens WHERE digest = %s", (digest,)).fetchone()
        return None if row is None else row[0]

"""The dashboard's logouts: a signed session cookie cannot be taken back, so logging out records the
time, and every session of that user issued before it is refused from then on."""

from __future__ import annotations

import sqlite3


class SessionQueries:
    """Mixin of SQLiteStore (beside WebQueries, whose writable window it uses)."""

    db: sqlite3.Connection

    def web_logout(self, user: str, now: float) -> None:
        """Revoke every session of `user` issued before `now`."""
        with self._web_writable():  # type: ignore[attr-defined]
            self.db.execute(
                "INSERT INTO web_logouts (user, at) VALUES (?, ?) "
                "ON CONFLICT (user) DO UPDATE SET at = MAX(at, excluded.at)",
                (user, now),
            )

    def web_logged_out(self, user: str) -> float | None:
        """When `user` last logged out (sessions issued before are revoked), or None."""
        row = self.db.execute("SELECT at FROM web_logouts WHERE user = ?", (user,)).fetchone()
        return row[0] if row else None

"""The modes of the files the daemons and CLIs create."""

from __future__ import annotations

import os


def narrow_umask(mask: int) -> None:
    """Add `mask` to the process umask, never widening it.

    The systemd units set a umask; a CLI run by hand did not, and left the database, its WAL and
    the agent's spool (command lines, user names, mail) readable by every local user.
    """
    os.umask(os.umask(mask) | mask)

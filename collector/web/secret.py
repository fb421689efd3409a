"""The key that signs session cookies: read from a file, created (0600) on first start."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger("osmon.web")

MIN_LENGTH = 32  # characters: a shorter key could be guessed offline from one signed cookie


class SecretKeyError(Exception):
    """The key file cannot be read or created."""


def load_or_create(path: str | Path) -> str:
    """The key in `path`; a new random one is written there if the file does not exist."""
    path = Path(path)
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        return _create(path)
    except (OSError, UnicodeDecodeError) as e:
        raise SecretKeyError(f"cannot read {path}: {e}") from None
    if len(key) < MIN_LENGTH:
        raise SecretKeyError(f"{path}: the key must be at least {MIN_LENGTH} characters")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users: anyone who reads it can forge logins (chmod 600)", path)
    return key


def _create(path: Path) -> str:
    key = secrets.token_hex(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: if two processes start at once, one writes and the other reads its key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create(path)
    except OSError as e:
        raise SecretKeyError(f"cannot create {path}: {e}") from None
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    log.info("created the session key %s", path)
    return key

"""CurveZMQ key pairs in the format of pyzmq's zmq.auth certificates."""

from __future__ import annotations

import os
import re
from pathlib import Path

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class KeyFileError(ValueError):
    """A key file that is missing or not a CurveZMQ certificate."""


class KeyFileUnreadable(KeyFileError):
    """A key file that exists but could not be read now (permissions, out of descriptors ...)."""


def generate(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret (mode 0600) in `directory`; refuse to overwrite."""
    if not KEY_NAME.fullmatch(name) or ".." in name:
        raise KeyFileError(f"invalid key name {name!r}: use letters, digits, '.', '-', '_'")
    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise KeyFileError(f"{path} already exists; remove it first to replace the key pair")
    try:
        _write_pair(directory, name)
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
    except FileExistsError:  # mkdir of a path that is a file
        raise KeyFileError(f"cannot write keys in {directory}: not a directory") from None
    except OSError as e:  # /proc, /sys, a read-only file system, no permission ...
        raise KeyFileError(f"cannot write keys in {directory}: {e.strerror or e}") from None
    return public, secret


def _write_pair(directory: Path, name: str) -> None:
    import zmq.auth

    directory.mkdir(parents=True, exist_ok=True)
    # zmq.auth writes the secret file with the process umask: narrow it first.
    old_umask = os.umask(0o077)
    try:
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old_umask)


def load_public(path: str | Path) -> bytes:
    """The Z85 public key in a .key or .key_secret file."""
    import zmq.auth  # here: an agent without CurveZMQ keys need not load it

    try:
        public, _ = zmq.auth.load_certificate(path)
    except FileNotFoundError as e:
        raise KeyFileError(f"cannot read CurveZMQ key {path}: {e}") from None
    except OSError as e:
        raise KeyFileUnreadable(f"cannot read CurveZMQ key {path}: {e}") from None
    except ValueError as e:
        raise KeyFileError(f"cannot read CurveZMQ key {path}: {e}") from None
    if public is None or len(public) != 40:
        raise KeyFileError(f"{path} holds no CurveZMQ public key")
    return public


def load_pair(path: str | Path) -> tuple[bytes, bytes]:
    """The (public, secret) Z85 keys in a .key_secret file."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read CurveZMQ key {path}: {e}") from None
    if not public or not secret:
        raise KeyFileError(f"{path} is not a secret key file (NAME.key_secret)")
    return public, secret

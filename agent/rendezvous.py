"""Which collector an agent calls home: rendezvous (highest-random-weight) hashing.

Every agent ranks the same list of endpoints by a weight hashed from its own host
name and each endpoint; the first is its home, the rest its failover order. Hosts
spread evenly over the collectors, and removing one endpoint moves only the hosts
whose home it was (everyone else's ranking of the others is unchanged). Only the
endpoint strings matter, not their order in the list: every agent must spell them
the same way.
"""

from __future__ import annotations

try:
    # The same function as hashlib.blake2b, without hashlib's import of OpenSSL's
    # libcrypto (3.5 MB of the agent's resident memory for one hash at start-up).
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b


def weight(host: str, endpoint: str) -> int:
    """A stable 64-bit weight of (host, endpoint): the same on every machine and Python version."""
    digest = blake2b(f"{host}\0{endpoint}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preference(host: str, endpoints: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`endpoints` in `host`'s order of preference: home first, then where to fail over."""
    return tuple(sorted(endpoints, key=lambda endpoint: (-weight(host, endpoint), endpoint)))

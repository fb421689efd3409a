"""Every bound a peer, an agent or a user can run into, in one place (documented in README "Limits").

A host, hostile or careless, must not be able to stop the collector, starve the other hosts or
grow its memory or its database without bound. Each number here is far above what a real host
sends, and each is enforced where the input arrives, with a clear log line and a counter.
Value ranges per unit are in `osmon.wire` (BOUNDS), next to the metrics they bound.
"""

from __future__ import annotations

# -- one snapshot ------------------------------------------------------------------------------
MAX_CORES = 4096  # values in series cpu.core (the largest machines have a few hundred)
MAX_ENTITIES = 512  # mounts, disks and network interfaces, each, in one snapshot
MAX_ENTITY_NAME = 1024  # characters of a mount, disk or interface name
# The agent keeps the fullest MAX_ENTITIES mounts, the busiest disks and interfaces; the collector
# refuses a snapshot with more (it cannot know which ones matter) and logs why.

# -- one message, one peer ---------------------------------------------------------------------
MAX_FRAMES = 1000  # snapshots in one message (agents send up to 64)
MAX_MESSAGE_BYTES = 64 * 2**20  # all frames of one message; the rest of a bigger one is discarded unread
RCVHWM = 1000  # messages queued per connection before ZeroMQ stops reading it (agents have <= 200 in flight)
# Bytes per second one peer (a CurveZMQ key, or one connection without CurveZMQ) may have decoded
# and stored; beyond it, its messages are dropped unacked (its agent resends them later), so a
# flood from one host never delays another's snapshots. A catching-up agent needs far less.
PEER_BYTES_PER_SECOND = 2 * 2**20  # default of the collector's `peer_rate`
PEER_BURST_SECONDS = 8.0  # a peer may send this many seconds' worth of its rate at once
PEERS_TRACKED = 10_000  # peers in the budget table; full buckets are forgotten first
HANDSHAKE_IVL = 10_000  # ms a connection may take to finish its ZMTP/CURVE handshake before it is closed

# -- per host, stored --------------------------------------------------------------------------
MAX_GAPS = 1000  # ranges of missing sequence numbers tracked per host; the oldest are forgotten beyond
MAX_CLOCK_AHEAD = 300.0  # seconds a snapshot may be stamped ahead of the collector's clock
# A snapshot stamped further ahead is logged and stored with the time it was received, so a
# skewed clock cannot hold the host's alerts (their `for` durations) or its "latest" for ever.

# -- housekeeping, mail, logs --------------------------------------------------------------------
HOOK_BACKOFF_MAX = 60.0  # seconds between retries of a failing housekeeping or detection pass, at most

# -- dashboard login -----------------------------------------------------------------------------
LOGIN_FAILURES = 10  # failed logins for one user name within LOGIN_LOCKOUT before it is locked
ADDRESS_FAILURES = 30  # failed logins from one address (any name) within LOGIN_LOCKOUT before it is
LOGIN_LOCKOUT = 300.0  # seconds: the window of those counts, so also how long a lockout lasts
LOGIN_TABLE = 10_000  # addresses remembered, least recently failed first out; names: configured users only
# A browser that logged in as a user before is held by neither lockout (a signed device cookie).

"""The agent's settings (`agent.toml`)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import NamedTuple

from agent.mounts import EXCLUDE_MOUNTS, MOUNT_TIMEOUT
from agent.rendezvous import preference
from osmon import wire
from osmon.configfile import (
    REQUIRED,
    Key,
    Problems,
    all_or_none,
    apply_schema,
    at_least,
    boolean,
    integer,
    load_toml,
    loopback,
    number,
    parse_duration,
    parse_size,
    string,
    string_list,
    zmq_endpoint,
)

DEFAULT_PATH = "/etc/osmonitoring/agent.toml"

# Snapshots a second replayed from the spool after moving to another collector. A day's
# backlog at a 10 s interval (8,640) takes 7 minutes; 1,000 agents arriving at once
# offer 20,000 a second, which a collector takes (benchmarks/ingest.py), and one agent's
# ~60 KB/s stays far below the collector's per-peer budget (peer_rate).
REPLAY_RATE = 20.0


def endpoints(value: object) -> list[str]:
    """One collector endpoint, or a non-empty list of distinct ones."""
    if isinstance(value, str):
        return [zmq_endpoint(value)]
    if not isinstance(value, list):
        raise ValueError(f"expected an endpoint or a list of endpoints, got {type(value).__name__} {value!r}")
    if not value:
        raise ValueError("the list is empty: give at least one endpoint, e.g. tcp://198.51.100.5:5555")
    if not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of endpoint strings, got {value!r}")
    checked = [zmq_endpoint(v) for v in value]
    twice = sorted({e for e in checked if checked.count(e) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} listed more than once: each collector once")
    return checked


KEYS = [
    Key("host", string, None, "host name sent with every snapshot; default: this machine's name"),
    Key(
        "collector",
        endpoints,
        REQUIRED,
        "collector endpoint, e.g. tcp://198.51.100.5:5555, or a list of them: the home "
        "collector is chosen by hashing the host name, the others are where to fail over",
    ),
    Key("interval", at_least(0.05, parse_duration), 10.0, "time between snapshots"),
    Key("spool", string, "/var/lib/osmonitoring/agent-spool.db", "on-disk queue of unacked snapshots"),
    Key(
        "spool_max",
        at_least(1024 * 1024, parse_size),
        256 * 1024**2,
        "spool size bound; the oldest snapshots are dropped beyond it",
    ),
    Key("top_processes", at_least(1, integer), 5, "processes listed by CPU and by memory"),
    Key("ack_timeout", at_least(0.1, parse_duration), 5.0, "resend a snapshot not acked after this"),
    Key("in_flight", at_least(1, integer), 200, "snapshots sent and not yet acked, at most"),
    Key(
        "replay_rate",
        at_least(1, number),
        REPLAY_RATE,
        "snapshots per second, beyond the agent's own rate, replayed from the spool's backlog "
        "after moving to another collector (new snapshots go out at once when nothing waits)",
    ),
    Key("allow_insecure", boolean, False, "send plain TCP to a collector that is not on this machine"),
    Key("exclude_mounts", string_list, list(EXCLUDE_MOUNTS), "mount points not reported (globs)"),
    Key("exclude_fstypes", string_list, [], "filesystem types not reported (globs), e.g. fuse.*"),
    Key("mount_timeout", at_least(0.05, parse_duration), MOUNT_TIMEOUT, "wait for a network filesystem"),
    Key("ignore_units", string_list, [], "systemd units whose failure is not reported (globs)"),
    Key("curve.secret_key", string, None, "this agent's secret key file (NAME.key_secret)"),
    Key("curve.server_key", string, None, "the collector's public key file (NAME.key)"),
]


# A NamedTuple, not a dataclass: dataclasses imports inspect (and ast, dis, tokenize), a megabyte
# of the agent's resident memory for one record read at start-up.
class AgentConfig(NamedTuple):
    """Checked agent settings."""

    path: str
    host: str
    collector: str  # the home collector: collectors[0]
    collectors: tuple[str, ...]  # every endpoint in this host's order: home first (agent.rendezvous)
    interval: float
    spool: str
    spool_max: int
    top_processes: int
    ack_timeout: float
    in_flight: int
    curve_secret_key: str | None
    curve_server_key: str | None
    allow_insecure: bool = False
    exclude_mounts: tuple[str, ...] = EXCLUDE_MOUNTS
    exclude_fstypes: tuple[str, ...] = ()
    mount_timeout: float = MOUNT_TIMEOUT
    ignore_units: tuple[str, ...] = ()
    replay_rate: float = REPLAY_RATE


def load(path: str | Path) -> AgentConfig:
    """Read and check an agent config, or raise ConfigError (ConfigErrors: all problems of the file)."""
    problems = Problems(path)
    settings = apply_schema(load_toml(path), KEYS, path, problems=problems)
    with problems.collect():
        all_or_none(settings, ["curve.secret_key", "curve.server_key"], path)
    host = settings["host"] or socket.gethostname().split(".")[0]
    if not wire.valid_host(host):
        problems.add("host", f"{host!r} is not a valid host name (letters, digits, '.', '-', '_')")
    for name in ("curve.secret_key", "curve.server_key"):
        if settings[name] is not None and not Path(settings[name]).is_file():
            problems.add(name, f"file {settings[name]!r} does not exist")
    listed = settings["collector"] or []
    plain = settings["curve.secret_key"] is None and not settings["allow_insecure"]
    for collector in listed:
        if plain and not loopback(collector):
            problems.add(
                "collector",
                f"{collector} is not on this machine and [curve] is not configured: snapshots would "
                "cross the network unencrypted and unauthenticated; set up CurveZMQ keys, or "
                "allow_insecure = true",
            )
    problems.raise_any()
    order = preference(host, listed)
    return AgentConfig(
        path=str(path),
        host=host,
        collector=order[0],
        collectors=order,
        interval=settings["interval"],
        spool=settings["spool"],
        spool_max=settings["spool_max"],
        top_processes=settings["top_processes"],
        ack_timeout=settings["ack_timeout"],
        in_flight=settings["in_flight"],
        curve_secret_key=settings["curve.secret_key"],
        curve_server_key=settings["curve.server_key"],
        allow_insecure=settings["allow_insecure"],
        exclude_mounts=tuple(settings["exclude_mounts"]),
        exclude_fstypes=tuple(settings["exclude_fstypes"]),
        mount_timeout=settings["mount_timeout"],
        ignore_units=tuple(settings["ignore_units"]),
        replay_rate=settings["replay_rate"],
    )

"""Numbered migrations of the SQLite schema; `PRAGMA user_version` records the last applied.

Append a migration to change the schema; never edit one that has shipped:
an upgrade applies only the ones a database has not seen, so data is kept.
"""

MIGRATIONS: list[str] = [
    # 1: hosts with their sequence bookkeeping, one row per snapshot, the latest full snapshot.
    """
    CREATE TABLE hosts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,          -- collector clock: when a snapshot last arrived
        interval REAL,                    -- the agent's announced interval, seconds
        first_seq INTEGER,                -- stored sequence numbers: first..last minus gaps
        last_seq INTEGER,
        stored INTEGER NOT NULL DEFAULT 0,
        latest_seq INTEGER,
        latest_ts REAL                    -- agent clock of the latest snapshot
    );
    -- Apart from hosts: SQLite rewrites a whole row on UPDATE, and hosts rows
    -- change with every batch while this blob changes once per host per batch.
    CREATE TABLE latest (
        host_id INTEGER PRIMARY KEY REFERENCES hosts(id),
        snapshot BLOB NOT NULL            -- the latest snapshot, msgpack, as received
    );
    CREATE TABLE gaps (
        host_id INTEGER NOT NULL REFERENCES hosts(id),
        first INTEGER NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (host_id, first)
    ) WITHOUT ROWID;
    -- A rowid table with a single index: rows append in arrival order, which
    -- keeps batched inserts cheap. Duplicates are recognised from hosts/gaps.
    CREATE TABLE samples (
        host_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts REAL NOT NULL,
        cpu REAL, cpu_iowait REAL, mem REAL, swap REAL,
        load1 REAL, load5 REAL, load15 REAL, disk_max REAL,
        read_bps REAL, write_bps REAL, rx_bps REAL, tx_bps REAL,
        procs REAL, users REAL,
        detail BLOB                       -- msgpack: per core, per mount, per disk, per interface
    );
    CREATE INDEX samples_host_ts ON samples (host_id, ts);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # 2: CERT-FR security alerts, each stored once by guid.
    """
    CREATE TABLE certfr_items (
        guid TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        link TEXT NOT NULL,
        published REAL,                   -- pubDate, Unix seconds (an update keeps the original)
        description TEXT NOT NULL,
        first_seen REAL NOT NULL,         -- when this collector first saw it
        mail_state TEXT NOT NULL DEFAULT 'none'  -- none | pending | sent | backlog
    );
    CREATE INDEX certfr_items_seen ON certfr_items (first_seen);
    """,
]

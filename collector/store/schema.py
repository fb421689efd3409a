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
    # 3: alerts and their history, silences, and the mail outbox.
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        rule TEXT NOT NULL,               -- metric and subject: mem.percent, disk.percent:/var, host.down
        severity TEXT NOT NULL,           -- warning | critical: the current one
        started REAL NOT NULL,
        ended REAL,                       -- NULL while the alert is active
        value REAL,                       -- last value seen
        peak REAL,                        -- worst value while active
        threshold REAL,                   -- the level crossed for the current severity
        updated REAL NOT NULL
    );
    CREATE UNIQUE INDEX alerts_one_active ON alerts (host, rule) WHERE ended IS NULL;
    CREATE INDEX alerts_host ON alerts (host, started);
    CREATE TABLE alert_events (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        ts REAL NOT NULL,
        kind TEXT NOT NULL,               -- fired | escalated | deescalated | resolved | reminder
        severity TEXT NOT NULL,
        value REAL
    );
    CREATE INDEX alert_events_alert ON alert_events (alert_id, ts);
    CREATE TABLE silences (
        host TEXT PRIMARY KEY,
        until REAL NOT NULL,
        reason TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        created REAL NOT NULL,
        message_id TEXT NOT NULL UNIQUE,  -- set once, so a retried mail is recognisably the same
        recipients TEXT NOT NULL,         -- JSON list of addresses
        subject TEXT NOT NULL,
        text TEXT NOT NULL,
        html TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT,
        sent REAL                         -- NULL until the SMTP server accepted it
    );
    CREATE INDEX outbox_due ON outbox (sent, next_attempt);
    """,
    # 4: when an alert was last mailed, for reminders and for "resolved only if mailed".
    """
    ALTER TABLE alerts ADD COLUMN notified REAL;
    """,
]

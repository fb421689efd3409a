"""Numbered migrations of the SQLite schema; `PRAGMA user_version` records the last applied.

Append a migration to change the schema; never edit one that has shipped:
an upgrade applies only the ones a database has not seen, so data is kept.

The columns of metrics are the exception: a metric added to the catalog
(osmon.catalog) gets its column in the raw samples and in both rollup tiers
when the writer opens the database (`catalog_columns`), after the numbered
migrations. A column is only ever added, never changed or dropped, so this
needs no number of its own.
"""

from osmon.catalog import COLUMNS

STATS = ("min", "sum", "max", "n")  # what a rollup tier keeps of each column
METRIC_TABLES = ("samples", "rollup_minute", "rollup_hour")


def catalog_columns(existing: dict[str, set[str]]) -> list[str]:
    """ALTER statements adding the catalog's columns missing from `existing` ({table: columns})."""
    wanted = {
        "samples": list(COLUMNS),
        "rollup_minute": [f"{c}_{s}" for c in COLUMNS for s in STATS],
        "rollup_hour": [f"{c}_{s}" for c in COLUMNS for s in STATS],
    }
    return [
        f"ALTER TABLE {table} ADD COLUMN {column} INTEGER"
        for table, columns in wanted.items()
        for column in columns
        if column not in existing.get(table, set())
    ]


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
    # 5: compact samples (scaled integers: collector.store.compact) and the rollup tiers
    # (collector.store.rollups), filled from the samples already stored. Details written
    # before keep their old layout, which the store still reads; their per-entity maxima
    # are not rolled up.
    """
    CREATE TABLE samples_compact (
        host_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts REAL NOT NULL,
        cpu INTEGER,
        cpu_iowait INTEGER,
        mem INTEGER,
        swap INTEGER,
        load1 INTEGER,
        load5 INTEGER,
        load15 INTEGER,
        disk_max INTEGER,
        read_bps INTEGER,
        write_bps INTEGER,
        rx_bps INTEGER,
        tx_bps INTEGER,
        procs INTEGER,
        users INTEGER,
        detail BLOB
    );
    INSERT INTO samples_compact (host_id, seq, ts, cpu, cpu_iowait, mem, swap, load1, load5, load15, disk_max, read_bps, write_bps, rx_bps, tx_bps, procs, users, detail)
    SELECT host_id, seq, ts,
        CAST(round(cpu * 100) AS INTEGER),
        CAST(round(cpu_iowait * 100) AS INTEGER),
        CAST(round(mem * 100) AS INTEGER),
        CAST(round(swap * 100) AS INTEGER),
        CAST(round(load1 * 100) AS INTEGER),
        CAST(round(load5 * 100) AS INTEGER),
        CAST(round(load15 * 100) AS INTEGER),
        CAST(round(disk_max * 100) AS INTEGER),
        CAST(round(read_bps * 1) AS INTEGER),
        CAST(round(write_bps * 1) AS INTEGER),
        CAST(round(rx_bps * 1) AS INTEGER),
        CAST(round(tx_bps * 1) AS INTEGER),
        CAST(round(procs * 1) AS INTEGER),
        CAST(round(users * 1) AS INTEGER),
        detail
    FROM samples ORDER BY rowid;
    DROP TABLE samples;
    ALTER TABLE samples_compact RENAME TO samples;
    CREATE INDEX samples_host_ts ON samples (host_id, ts);
    CREATE TABLE names (                  -- lists of entity names that raw details refer to by id
        id INTEGER PRIMARY KEY,
        names BLOB NOT NULL UNIQUE        -- msgpack list, e.g. ["/", "/var"]
    );
    CREATE TABLE rollup_minute (
        host_id INTEGER NOT NULL,
        t INTEGER NOT NULL,               -- start of the period, seconds since the epoch
        n INTEGER NOT NULL,               -- samples folded in; a column's _n is NULL when it equals n
        cpu_min INTEGER, cpu_sum INTEGER, cpu_max INTEGER, cpu_n INTEGER,
        cpu_iowait_min INTEGER, cpu_iowait_sum INTEGER, cpu_iowait_max INTEGER, cpu_iowait_n INTEGER,
        mem_min INTEGER, mem_sum INTEGER, mem_max INTEGER, mem_n INTEGER,
        swap_min INTEGER, swap_sum INTEGER, swap_max INTEGER, swap_n INTEGER,
        load1_min INTEGER, load1_sum INTEGER, load1_max INTEGER, load1_n INTEGER,
        load5_min INTEGER, load5_sum INTEGER, load5_max INTEGER, load5_n INTEGER,
        load15_min INTEGER, load15_sum INTEGER, load15_max INTEGER, load15_n INTEGER,
        disk_max_min INTEGER, disk_max_sum INTEGER, disk_max_max INTEGER, disk_max_n INTEGER,
        read_bps_min INTEGER, read_bps_sum INTEGER, read_bps_max INTEGER, read_bps_n INTEGER,
        write_bps_min INTEGER, write_bps_sum INTEGER, write_bps_max INTEGER, write_bps_n INTEGER,
        rx_bps_min INTEGER, rx_bps_sum INTEGER, rx_bps_max INTEGER, rx_bps_n INTEGER,
        tx_bps_min INTEGER, tx_bps_sum INTEGER, tx_bps_max INTEGER, tx_bps_n INTEGER,
        procs_min INTEGER, procs_sum INTEGER, procs_max INTEGER, procs_n INTEGER,
        users_min INTEGER, users_sum INTEGER, users_max INTEGER, users_n INTEGER,
        detail BLOB,                      -- msgpack: each entity's maximum (cores, mounts, disks, interfaces)
        PRIMARY KEY (host_id, t)
    ) WITHOUT ROWID;
    INSERT INTO rollup_minute
    SELECT host_id, CAST(ts / 60 AS INTEGER) * 60, count(*),
        MIN(cpu), COALESCE(SUM(cpu), 0), MAX(cpu), NULLIF(COUNT(cpu), count(*)),
        MIN(cpu_iowait), COALESCE(SUM(cpu_iowait), 0), MAX(cpu_iowait), NULLIF(COUNT(cpu_iowait), count(*)),
        MIN(mem), COALESCE(SUM(mem), 0), MAX(mem), NULLIF(COUNT(mem), count(*)),
        MIN(swap), COALESCE(SUM(swap), 0), MAX(swap), NULLIF(COUNT(swap), count(*)),
        MIN(load1), COALESCE(SUM(load1), 0), MAX(load1), NULLIF(COUNT(load1), count(*)),
        MIN(load5), COALESCE(SUM(load5), 0), MAX(load5), NULLIF(COUNT(load5), count(*)),
        MIN(load15), COALESCE(SUM(load15), 0), MAX(load15), NULLIF(COUNT(load15), count(*)),
        MIN(disk_max), COALESCE(SUM(disk_max), 0), MAX(disk_max), NULLIF(COUNT(disk_max), count(*)),
        MIN(read_bps), COALESCE(SUM(read_bps), 0), MAX(read_bps), NULLIF(COUNT(read_bps), count(*)),
        MIN(write_bps), COALESCE(SUM(write_bps), 0), MAX(write_bps), NULLIF(COUNT(write_bps), count(*)),
        MIN(rx_bps), COALESCE(SUM(rx_bps), 0), MAX(rx_bps), NULLIF(COUNT(rx_bps), count(*)),
        MIN(tx_bps), COALESCE(SUM(tx_bps), 0), MAX(tx_bps), NULLIF(COUNT(tx_bps), count(*)),
        MIN(procs), COALESCE(SUM(procs), 0), MAX(procs), NULLIF(COUNT(procs), count(*)),
        MIN(users), COALESCE(SUM(users), 0), MAX(users), NULLIF(COUNT(users), count(*)),
        NULL
    FROM samples GROUP BY host_id, CAST(ts / 60 AS INTEGER);
    CREATE TABLE rollup_hour (
        host_id INTEGER NOT NULL,
        t INTEGER NOT NULL,               -- start of the period, seconds since the epoch
        n INTEGER NOT NULL,               -- samples folded in; a column's _n is NULL when it equals n
        cpu_min INTEGER, cpu_sum INTEGER, cpu_max INTEGER, cpu_n INTEGER,
        cpu_iowait_min INTEGER, cpu_iowait_sum INTEGER, cpu_iowait_max INTEGER, cpu_iowait_n INTEGER,
        mem_min INTEGER, mem_sum INTEGER, mem_max INTEGER, mem_n INTEGER,
        swap_min INTEGER, swap_sum INTEGER, swap_max INTEGER, swap_n INTEGER,
        load1_min INTEGER, load1_sum INTEGER, load1_max INTEGER, load1_n INTEGER,
        load5_min INTEGER, load5_sum INTEGER, load5_max INTEGER, load5_n INTEGER,
        load15_min INTEGER, load15_sum INTEGER, load15_max INTEGER, load15_n INTEGER,
        disk_max_min INTEGER, disk_max_sum INTEGER, disk_max_max INTEGER, disk_max_n INTEGER,
        read_bps_min INTEGER, read_bps_sum INTEGER, read_bps_max INTEGER, read_bps_n INTEGER,
        write_bps_min INTEGER, write_bps_sum INTEGER, write_bps_max INTEGER, write_bps_n INTEGER,
        rx_bps_min INTEGER, rx_bps_sum INTEGER, rx_bps_max INTEGER, rx_bps_n INTEGER,
        tx_bps_min INTEGER, tx_bps_sum INTEGER, tx_bps_max INTEGER, tx_bps_n INTEGER,
        procs_min INTEGER, procs_sum INTEGER, procs_max INTEGER, procs_n INTEGER,
        users_min INTEGER, users_sum INTEGER, users_max INTEGER, users_n INTEGER,
        detail BLOB,                      -- msgpack: each entity's maximum (cores, mounts, disks, interfaces)
        PRIMARY KEY (host_id, t)
    ) WITHOUT ROWID;
    INSERT INTO rollup_hour
    SELECT host_id, CAST(ts / 3600 AS INTEGER) * 3600, count(*),
        MIN(cpu), COALESCE(SUM(cpu), 0), MAX(cpu), NULLIF(COUNT(cpu), count(*)),
        MIN(cpu_iowait), COALESCE(SUM(cpu_iowait), 0), MAX(cpu_iowait), NULLIF(COUNT(cpu_iowait), count(*)),
        MIN(mem), COALESCE(SUM(mem), 0), MAX(mem), NULLIF(COUNT(mem), count(*)),
        MIN(swap), COALESCE(SUM(swap), 0), MAX(swap), NULLIF(COUNT(swap), count(*)),
        MIN(load1), COALESCE(SUM(load1), 0), MAX(load1), NULLIF(COUNT(load1), count(*)),
        MIN(load5), COALESCE(SUM(load5), 0), MAX(load5), NULLIF(COUNT(load5), count(*)),
        MIN(load15), COALESCE(SUM(load15), 0), MAX(load15), NULLIF(COUNT(load15), count(*)),
        MIN(disk_max), COALESCE(SUM(disk_max), 0), MAX(disk_max), NULLIF(COUNT(disk_max), count(*)),
        MIN(read_bps), COALESCE(SUM(read_bps), 0), MAX(read_bps), NULLIF(COUNT(read_bps), count(*)),
        MIN(write_bps), COALESCE(SUM(write_bps), 0), MAX(write_bps), NULLIF(COUNT(write_bps), count(*)),
        MIN(rx_bps), COALESCE(SUM(rx_bps), 0), MAX(rx_bps), NULLIF(COUNT(rx_bps), count(*)),
        MIN(tx_bps), COALESCE(SUM(tx_bps), 0), MAX(tx_bps), NULLIF(COUNT(tx_bps), count(*)),
        MIN(procs), COALESCE(SUM(procs), 0), MAX(procs), NULLIF(COUNT(procs), count(*)),
        MIN(users), COALESCE(SUM(users), 0), MAX(users), NULLIF(COUNT(users), count(*)),
        NULL
    FROM samples GROUP BY host_id, CAST(ts / 3600 AS INTEGER);
    """,
    # 6: sequence resets. An agent whose spool was deleted restarts at seq 1 with a new epoch
    # (its spool's random id); each epoch a host has used is recorded, the current one in hosts.
    # And the dashboard's logouts: a user's sessions issued before their last logout are refused.
    """
    ALTER TABLE hosts ADD COLUMN epoch INTEGER;
    CREATE TABLE epochs (
        host_id INTEGER NOT NULL REFERENCES hosts(id),
        epoch INTEGER NOT NULL,
        since REAL NOT NULL,              -- collector clock: its first snapshot arrived
        first_seq INTEGER NOT NULL,       -- the first seq seen in it
        previous_last_seq INTEGER,        -- where the host's sequence stood before it
        PRIMARY KEY (host_id, epoch)
    ) WITHOUT ROWID;
    CREATE TABLE web_logouts (
        user TEXT PRIMARY KEY,
        at REAL NOT NULL
    );
    """,
    # 7: scraper tokens for /metrics and the read-only API: only a SHA-256 of each token is kept
    # (tokens are 256 random bits, so a fast hash is as good as a slow one, and costs microseconds).
    """
    CREATE TABLE IF NOT EXISTS tokens (
        name TEXT PRIMARY KEY,
        digest TEXT NOT NULL UNIQUE,      -- sha256 hex of the token
        created REAL NOT NULL
    );
    """,
    # 8: several collectors on one database (collector.leases). Leases give one collector at a
    # time a host's detection ("host:NAME") or a duty ("duty:NAME"); `epoch` grows when the owner
    # changes and fences its writes. Pending breaches live here so a new owner resumes their
    # timers; each mail names the event(s) it reports (`event_key`), once, and a sender claims
    # it before sending. Collectors leave a heartbeat. Times are the database's clock.
    """
    CREATE TABLE leases (
        subject TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        expires REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX leases_owner ON leases (owner);
    CREATE TABLE pending (
        host TEXT NOT NULL,
        rule TEXT NOT NULL,
        since REAL NOT NULL,
        level TEXT NOT NULL,
        PRIMARY KEY (host, rule)
    ) WITHOUT ROWID;
    CREATE TABLE collectors (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        started REAL NOT NULL,
        heartbeat REAL NOT NULL,
        stopped INTEGER NOT NULL DEFAULT 0,
        received INTEGER NOT NULL DEFAULT 0,
        rate REAL NOT NULL DEFAULT 0
    );
    ALTER TABLE outbox ADD COLUMN event_key TEXT;
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claim_until REAL;
    CREATE UNIQUE INDEX outbox_event ON outbox (event_key);
    """,
    # 9: channels of the outbox: a message is a mail, or a delivery to a webhook ("webhook:NAME")
    # whose body is kept as posted (`payload`), retried and claimed like mail.
    """
    ALTER TABLE outbox ADD COLUMN channel TEXT NOT NULL DEFAULT 'mail';
    ALTER TABLE outbox ADD COLUMN payload TEXT;
    """,
    # 10: each host's summary (collector.store.summaries): the numbers of its latest snapshot the
    # overview sorts 10,000 hosts on, without decoding their snapshots. Filled by each host's
    # next snapshot; until then the overview reads that host's snapshot.
    """
    CREATE TABLE host_summary (
        host_id INTEGER PRIMARY KEY REFERENCES hosts(id),
        ts REAL NOT NULL,                 -- agent clock of the snapshot summarised
        cpu REAL,
        mem REAL,
        disk REAL,                        -- the fullest filesystem's usage
        load1 REAL,
        boot REAL                         -- boot.time, for uptime
    );
    """,
    # 11: the top processes (by CPU and by memory) of the snapshot that fired an alert, as JSON:
    # what the host page shows when opened at that alert's moment.
    """
    ALTER TABLE alerts ADD COLUMN processes TEXT;
    """,
]

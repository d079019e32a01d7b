-- The daemons using this database, one row each, kept by their heartbeats
-- (storage.Backend's RegisterDaemon, Heartbeat, UnregisterDaemon); a row
-- whose heartbeats stopped is shown as gone, then removed. On SQLite one
-- daemon runs per database, so this is its row; the table is the same as
-- PostgreSQL's, where several share one.
CREATE TABLE snappea_daemons (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    host       TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    -- Unix time in nanoseconds of its registration.
    started    INTEGER NOT NULL,
    workers    INTEGER NOT NULL DEFAULT 0,
    busy       INTEGER NOT NULL DEFAULT 0,
    paused     INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    -- Unix time in nanoseconds of its latest heartbeat.
    last_seen  INTEGER NOT NULL
) STRICT;

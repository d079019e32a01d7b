-- The queue: one row per task waiting to run. A row is deleted in the same
-- statement that claims it (at-most-once), so this table only ever holds
-- work that has not started.
CREATE TABLE snappea_tasks (
    -- AUTOINCREMENT: ids never repeat, even after the newest rows are
    -- claimed; they appear in logs and error reports.
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task       TEXT    NOT NULL,
    args       BLOB    NOT NULL,
    -- Unix time in nanoseconds, set by the producer when it enqueued.
    created_at INTEGER NOT NULL
);

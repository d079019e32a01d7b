-- Task options: priority, delayed runs, retries, timeouts and unique keys,
-- and the record of tasks that failed for good. Rows written by the
-- previous schema get the defaults: priority 0, ready now, first attempt,
-- no retries, no timeout, no key.

-- Higher is claimed first; FIFO (by id) within a priority.
ALTER TABLE snappea_tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- 0: ready to claim. > 0: Unix time in nanoseconds when the task becomes
-- due; the daemon's promote step sets it to 0 then. Keeping every ready row
-- at one value makes the claim a single range of the claim index, already
-- in priority order.
ALTER TABLE snappea_tasks ADD COLUMN run_at INTEGER NOT NULL DEFAULT 0;
-- 1 for the first run; a retry is a new row with attempt + 1.
ALTER TABLE snappea_tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
-- Total attempts allowed, the first included; 0 or 1: no retries.
ALTER TABLE snappea_tasks ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 0;
-- The handler's deadline in nanoseconds; 0: none.
ALTER TABLE snappea_tasks ADD COLUMN timeout_ns INTEGER NOT NULL DEFAULT 0;
-- Unique among pending tasks; NULL: none. Freed when the task is claimed,
-- since claiming deletes the row.
ALTER TABLE snappea_tasks ADD COLUMN key TEXT;

-- Serves the claim (run_at = 0 ORDER BY priority DESC, id), the next-due
-- lookup (min(run_at) WHERE run_at > 0) and the promote (run_at > 0 AND
-- run_at <= now), each as one range search without a sort.
CREATE INDEX snappea_tasks_claim ON snappea_tasks (run_at, priority DESC, id);
CREATE UNIQUE INDEX snappea_tasks_key ON snappea_tasks (key) WHERE key IS NOT NULL;

-- Tasks that failed their last attempt, kept for an operator to inspect,
-- retry or purge. Arguments can hold secrets: this table is as private as
-- the queue.
CREATE TABLE snappea_failed (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      INTEGER NOT NULL, -- the id of the task's last attempt
    task         TEXT    NOT NULL,
    args         BLOB    NOT NULL,
    error        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    failed_at    INTEGER NOT NULL, -- Unix time in nanoseconds
    priority     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 0,
    timeout_ns   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX snappea_failed_failed_at ON snappea_failed (failed_at);

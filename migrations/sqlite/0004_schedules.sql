-- Periodic tasks (package schedule): one row per schedule name, holding
-- when it is next due. A scheduler takes a tick with a compare-and-set
-- update of next_run (WHERE next_run = the value it read) in the same
-- transaction that enqueues the tick's task, so each tick is enqueued
-- exactly once, across restarts and reloads and whichever scheduler gets
-- there first. Rows of schedules no longer configured are left alone: a
-- schedule that comes back resumes where it was.
CREATE TABLE snappea_schedules (
    name     TEXT PRIMARY KEY,
    -- The spec as configured ("*/5 * * * *", "@hourly", "@every 30s"). A
    -- scheduler started with a different one recomputes next_run from then.
    spec     TEXT NOT NULL,
    -- The task name it enqueues, for listing without the configuration.
    task     TEXT NOT NULL DEFAULT '',
    -- Unix time in nanoseconds of the next tick to take.
    next_run INTEGER NOT NULL,
    -- Unix time in nanoseconds of the latest tick taken; NULL: none yet.
    last_run INTEGER
) WITHOUT ROWID;

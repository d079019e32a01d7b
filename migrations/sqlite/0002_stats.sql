-- Per-minute task statistics, written by package stats about once a minute
-- and pruned after its retention (7 days by default).
--
-- One row per minute and task name that had a task finish in that minute.
-- A minute may be written more than once (a flush at stop, then a restart
-- within the same minute, or two daemons on one database): writers add to
-- the row with an UPSERT instead of replacing it.
CREATE TABLE snappea_stats (
    -- Unix time in seconds of the start of the minute (a multiple of 60).
    minute   INTEGER NOT NULL,
    task     TEXT    NOT NULL,
    -- Tasks that finished, whatever their outcome.
    finished INTEGER NOT NULL,
    -- Of those, the ones that failed, panicked or were discarded.
    -- Interrupted and cancelled tasks are not failures.
    failures INTEGER NOT NULL,
    -- Sum and maximum of their run times, in nanoseconds.
    total_ns INTEGER NOT NULL,
    max_ns   INTEGER NOT NULL,
    PRIMARY KEY (minute, task)
) WITHOUT ROWID;

-- The number of pending tasks, sampled when a minute's statistics are
-- written (just after the minute ends, or at a stop). A later sample for
-- the same minute replaces an earlier one.
CREATE TABLE snappea_stats_backlog (
    minute  INTEGER PRIMARY KEY,
    pending INTEGER NOT NULL
);

-- The ledger of tasks in flight: a claimed task's row moves here in the
-- claim's own statement (an INSERT ... SELECT, whose trigger deletes the
-- row from the queue), and is deleted once the task has ended (in
-- batches). A row left here when its daemon
-- ended is a lost task: the next daemon turns it into a failed record
-- (cause "lost: ..."), or enqueues it again if its definition asks for it
-- (registry.Options.RetryLost).
--
-- Not STRICT, and the task's columns without types: a claim copies them
-- from snappea_tasks as they are, so that a row of the wrong types (from a
-- table that was not STRICT) still reaches the daemon, which fails it.
CREATE TABLE snappea_inflight (
    id           INTEGER PRIMARY KEY, -- the task's id
    owner        INTEGER NOT NULL,    -- the daemon that claimed it
    started      INTEGER NOT NULL,    -- Unix time in nanoseconds of the claim
    task, args, created_at, priority, attempt, max_attempts, timeout_ns, key,
    serial_key
);
-- No other index: the table holds the running tasks and a batch of
-- finished ones, each claim inserts into it, and an index would cost every
-- claim more than a scan of so few rows costs the rare readers.

-- The claim is one statement: a row trigger makes SQLite read the whole
-- SELECT into a temporary table before it inserts the first row, so the
-- delete never changes what the claim reads. A later migration that
-- rebuilds snappea_tasks (create, copy, drop, rename, as 0005 does) must
-- drop this trigger first and create it again after: SQLite checks the
-- triggers that name a table when another is renamed to it.
CREATE TRIGGER snappea_inflight_claim AFTER INSERT ON snappea_inflight
BEGIN
    DELETE FROM snappea_tasks WHERE id = NEW.id;
END;

-- Tasks sharing a serial key run one at a time, in id order
-- (registry.Options.SerialKey); NULL: none.
ALTER TABLE snappea_tasks ADD COLUMN serial_key TEXT;
CREATE INDEX snappea_tasks_serial ON snappea_tasks (serial_key, id) WHERE serial_key IS NOT NULL;

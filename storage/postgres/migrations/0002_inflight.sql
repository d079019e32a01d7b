-- The ledger of tasks in flight: a claimed task's row moves here in the
-- claim's own statement, and is deleted once the task has ended (in
-- batches, by the daemon's next claim). A row whose daemon is gone (its
-- heartbeats stopped, see daemons) is a lost task: another daemon turns it
-- into a failed record (cause "lost: ..."), or enqueues it again if its
-- definition asks for it (registry.Options.RetryLost).
CREATE TABLE inflight (
    id           bigint  PRIMARY KEY, -- the task's id
    owner        bigint  NOT NULL,    -- the daemon that claimed it (daemons.id)
    started      bigint  NOT NULL,    -- Unix ns of the claim
    task         text    NOT NULL,
    args         text    NOT NULL,
    created_at   bigint  NOT NULL,
    priority     integer NOT NULL,
    attempt      integer NOT NULL,
    max_attempts integer NOT NULL,
    timeout_ns   bigint  NOT NULL,
    key          text,
    serial_key   text
) WITH (
    -- Every task is one insert and one delete here too.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
-- No other index: the table holds the running tasks and a batch of
-- finished ones, every claim inserts into it, and an index would cost
-- every claim more than a scan of so few rows costs the rare readers.

-- Tasks sharing a serial key run one at a time, in id order
-- (registry.Options.SerialKey); NULL: none.
ALTER TABLE tasks ADD COLUMN serial_key text;
CREATE INDEX tasks_serial ON tasks (serial_key, id) WHERE serial_key IS NOT NULL;

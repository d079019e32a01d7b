-- The queue table becomes STRICT, with CHECK constraints, so that a row of
-- the wrong types is refused when it is written (by snappea, or by a
-- producer in another language, a shell script or a repair by hand)
-- instead of stopping or confusing the daemon later. SQLite cannot make a
-- table STRICT in place: the rows are copied into a new table, which then
-- takes the old one's name and indexes.
--
-- Existing rows are copied when STRICT would accept them (the old columns'
-- affinity already converted what converts, such as '5' or 5.0 to 5). An
-- integer option out of its range is copied as the value the daemon
-- treated it as: attempt below 1 as 1, a negative max_attempts or
-- timeout_ns as 0, a negative run_at (a due time in the past) as 0, ready.
-- A row with a column of the wrong type, or arguments that are not JSON,
-- is not copied: it becomes a record in snappea_failed whose error names
-- the column and the type wanted (never the value), as the daemon does for
-- such a row it claims.
CREATE TABLE snappea_tasks_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task         TEXT    NOT NULL,
    -- JSON, as text or as a blob of its UTF-8 bytes; empty means JSON
    -- null. ANY, because a STRICT BLOB column refuses text, and producers
    -- write both.
    args         ANY     NOT NULL
        CONSTRAINT args_is_json CHECK (typeof(args) IN ('text', 'blob')
            AND (length(args) = 0 OR json_valid(CAST(args AS TEXT)))),
    created_at   INTEGER NOT NULL, -- Unix time in nanoseconds
    priority     INTEGER NOT NULL DEFAULT 0,
    run_at       INTEGER NOT NULL DEFAULT 0
        CONSTRAINT run_at_unix_ns CHECK (run_at >= 0), -- 0, or Unix ns when due
    attempt      INTEGER NOT NULL DEFAULT 1
        CONSTRAINT attempt_from_1 CHECK (attempt >= 1),
    max_attempts INTEGER NOT NULL DEFAULT 0
        CONSTRAINT max_attempts_not_negative CHECK (max_attempts >= 0),
    timeout_ns   INTEGER NOT NULL DEFAULT 0
        CONSTRAINT timeout_ns_not_negative CHECK (timeout_ns >= 0),
    key          TEXT
) STRICT;

-- The reason is the first column found wrong. queue's badRowSQL says the
-- same in the same words, for a row the daemon meets in a table that is
-- not STRICT.
INSERT INTO snappea_failed
    (task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns)
SELECT id,
       CASE WHEN typeof(task) = 'text' THEN task ELSE '' END,
       CASE WHEN typeof(args) IN ('text', 'blob') THEN args ELSE X'' END,
       'bad task row: ' || CASE
           WHEN typeof(task) <> 'text' THEN 'column task is ' || upper(typeof(task)) || ', want TEXT (the task name)'
           WHEN typeof(args) NOT IN ('text', 'blob') THEN 'column args is ' || upper(typeof(args)) || ', want TEXT or BLOB (JSON)'
           WHEN length(args) > 0 AND NOT json_valid(CAST(args AS TEXT)) THEN 'column args is not valid JSON'
           WHEN typeof(created_at) <> 'integer' THEN 'column created_at is ' || upper(typeof(created_at)) || ', want INTEGER (Unix nanoseconds)'
           WHEN typeof(priority) <> 'integer' THEN 'column priority is ' || upper(typeof(priority)) || ', want INTEGER'
           WHEN typeof(run_at) <> 'integer' THEN 'column run_at is ' || upper(typeof(run_at)) || ', want INTEGER (0, or Unix nanoseconds)'
           WHEN typeof(attempt) <> 'integer' THEN 'column attempt is ' || upper(typeof(attempt)) || ', want INTEGER'
           WHEN typeof(max_attempts) <> 'integer' THEN 'column max_attempts is ' || upper(typeof(max_attempts)) || ', want INTEGER'
           WHEN typeof(timeout_ns) <> 'integer' THEN 'column timeout_ns is ' || upper(typeof(timeout_ns)) || ', want INTEGER (nanoseconds)'
           ELSE 'column key is ' || upper(typeof(key)) || ', want TEXT or NULL'
       END,
       CASE WHEN typeof(attempt) = 'integer' THEN max(attempt, 1) ELSE 1 END,
       CAST(unixepoch('subsec') * 1000000000 AS INTEGER),
       CASE WHEN typeof(priority) = 'integer' THEN priority ELSE 0 END,
       CASE WHEN typeof(max_attempts) = 'integer' THEN max(max_attempts, 0) ELSE 0 END,
       CASE WHEN typeof(timeout_ns) = 'integer' THEN max(timeout_ns, 0) ELSE 0 END
FROM snappea_tasks
WHERE NOT (typeof(task) = 'text'
    AND typeof(args) IN ('text', 'blob') AND (length(args) = 0 OR json_valid(CAST(args AS TEXT)))
    AND typeof(created_at) = 'integer' AND typeof(priority) = 'integer' AND typeof(run_at) = 'integer'
    AND typeof(attempt) = 'integer' AND typeof(max_attempts) = 'integer' AND typeof(timeout_ns) = 'integer'
    AND typeof(key) IN ('text', 'null'));

INSERT INTO snappea_tasks_new
    (id, task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key)
SELECT id, task, args, created_at, priority, max(run_at, 0), max(attempt, 1), max(max_attempts, 0),
       max(timeout_ns, 0), key
FROM snappea_tasks
WHERE typeof(task) = 'text'
    AND typeof(args) IN ('text', 'blob') AND (length(args) = 0 OR json_valid(CAST(args AS TEXT)))
    AND typeof(created_at) = 'integer' AND typeof(priority) = 'integer' AND typeof(run_at) = 'integer'
    AND typeof(attempt) = 'integer' AND typeof(max_attempts) = 'integer' AND typeof(timeout_ns) = 'integer'
    AND typeof(key) IN ('text', 'null');

-- Ids are never reused: the new table's AUTOINCREMENT counter carries on
-- from the old one's, which may be past every id left (the newest tasks
-- claimed). DROP TABLE removes the old counter; RENAME renames the new.
DELETE FROM sqlite_sequence WHERE name = 'snappea_tasks_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'snappea_tasks_new', seq FROM sqlite_sequence WHERE name = 'snappea_tasks';

DROP TABLE snappea_tasks;
ALTER TABLE snappea_tasks_new RENAME TO snappea_tasks;

-- As 0003 made them; see there.
CREATE INDEX snappea_tasks_claim ON snappea_tasks (run_at, priority DESC, id);
CREATE UNIQUE INDEX snappea_tasks_key ON snappea_tasks (key) WHERE key IS NOT NULL;

package postgres

import "strings"

// queries are the backend's statements, each naming the schema's tables
// in full (see DB for why).
type queries struct {
	version, insert, insertPlain, drawIDs, insertOne, insertReplace, keyHolders, claim, promote, nextDue, cancel, stats, idSpan, countDue string

	fail, failures, failure, retryOne, retryAll, purge, pruneAge, pruneCount string
	retryTask, failureCount                                                  string

	schedules, saveSchedule, takeTick string

	addStats, addBacklog, pruneStats, pruneBacklog, readStats string

	register, heartbeat, daemons, unregister, removeGone string

	pendingCols, countPending string
	tasks                     string
}

func newQueries(schema string) queries {
	s := func(q string) string { return strings.ReplaceAll(q, "@.", schema+".") }
	return queries{
		version: s(`SELECT coalesce(max(version), 0) FROM @.schema_migrations`),
		// One statement for a chunk with keys. Ids are drawn first, in the
		// rows' order, so that each result row maps to its input even where a
		// key makes the insert skip it; a skipped row's holder is looked up
		// in the same statement, and NOTIFY is sent only if something was
		// written (delivered at commit, folded within a transaction). The ids
		// written come first (ord 0), then every row in order: insertKeyed
		// matches them up. (A join of the two in SQL is planned, once the
		// statement's plan is generic, for the 10 rows unnest of a parameter
		// is estimated at: a nested loop, quadratic in the rows.)
		insert: s(`WITH r AS (
			SELECT nextval((SELECT pg_get_serial_sequence('@.tasks', 'id'))::regclass) AS id, t.*
			FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bigint[], $6::integer[],
			            $7::integer[], $8::bigint[], $9::text[]) WITH ORDINALITY
			     AS t(task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key, ord)
		), ins AS (
			INSERT INTO @.tasks (id, task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key)
			SELECT id, task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key
			FROM r ORDER BY ord
			ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
			RETURNING id
		), wake AS (
			SELECT pg_notify($10, '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row
		)
		SELECT 0::bigint, id, NULL::bigint, (SELECT count(*) FROM wake) FROM ins
		UNION ALL
		SELECT r.ord, r.id, CASE WHEN r.key IS NOT NULL THEN (SELECT h.id FROM @.tasks h WHERE h.key = r.key) END, 0
		FROM r
		ORDER BY 1, 2`),
		// Rows without keys, the common case of a large batch: every row is
		// written, so no join maps results to rows (see insertPlain).
		insertPlain: s(`WITH ins AS (
			INSERT INTO @.tasks (task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bigint[], $6::integer[],
			                     $7::integer[], $8::bigint[])
			RETURNING id
		), wake AS (
			SELECT pg_notify($9, '')
		)
		SELECT id, (SELECT count(*) FROM wake) FROM ins`),
		// The ids of a chunk written with COPY, and its notification (see
		// copyRequest.run).
		drawIDs: s(`SELECT (SELECT array_agg(nextval((SELECT pg_get_serial_sequence('@.tasks', 'id'))::regclass))
			FROM generate_series(1, $1)), pg_notify($2, '') IS NULL`),
		// One row, the most common case: plain parameters instead of arrays,
		// and no row back for a duplicate (Insert looks up its holder). The
		// notification is sent only if the row is written.
		insertOne: s(`INSERT INTO @.tasks (task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key, serial_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11)
			ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
			RETURNING id, pg_notify($10, '') IS NULL`),
		// A row that replaces its key's holder: ON CONFLICT DO UPDATE is an
		// insert or an update, atomically, whatever other producers or
		// claims do meanwhile (it waits for a holder being written or
		// deleted, then decides). The holder keeps its id, and its run_at
		// unless $11 (Reschedule). xmax is 0 in a row just inserted, the
		// updating transaction's in a row updated. Notifies either way: the
		// next due time may have moved.
		insertReplace: s(`INSERT INTO @.tasks AS t
			(task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key, serial_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $12)
			ON CONFLICT (key) WHERE key IS NOT NULL DO UPDATE SET task = excluded.task, args = excluded.args,
				created_at = excluded.created_at, priority = excluded.priority, attempt = excluded.attempt,
				max_attempts = excluded.max_attempts, timeout_ns = excluded.timeout_ns, serial_key = excluded.serial_key,
				run_at = CASE WHEN $11 THEN excluded.run_at ELSE t.run_at END
			RETURNING t.id, t.xmax <> 0, pg_notify($10, '') IS NULL`),
		keyHolders: s(`SELECT key, id FROM @.tasks WHERE key = ANY($1::text[])`),
		// ANY(ARRAY(...)): the subquery runs first, as one range of the
		// claim index in order, locking the rows it takes and skipping those
		// other claims hold; the delete then goes straight to each row by its
		// ctid (a TID scan, not a search of the primary key: about half the
		// statement's time for 100 rows). The ctid stays the row's: the lock
		// keeps any other statement from updating or deleting it, and
		// VACUUM removes only dead rows.
		claim: s(`DELETE FROM @.tasks WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM @.tasks WHERE run_at = 0 ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED))
			RETURNING id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key`),
		promote: s(`WITH p AS (UPDATE @.tasks SET run_at = 0 WHERE run_at > 0 AND run_at <= $1 RETURNING 1)
			SELECT (SELECT count(*) FROM p), (SELECT min(run_at) FROM @.tasks WHERE run_at > $1)`),
		nextDue: s(`SELECT min(run_at) FROM @.tasks WHERE run_at > 0`),
		cancel:  s(`DELETE FROM @.tasks WHERE id = $1`),
		stats: s(`WITH oldest AS (SELECT id, created_at FROM @.tasks WHERE run_at = 0 ORDER BY id LIMIT 1)
			SELECT (SELECT count(*) FROM @.tasks WHERE run_at = 0),
			       (SELECT count(*) FROM @.tasks WHERE run_at > 0),
			       (SELECT min(run_at) FROM @.tasks WHERE run_at > 0),
			       (SELECT id FROM oldest), (SELECT created_at FROM oldest),
			       (SELECT coalesce(max(version), 0) FROM @.schema_migrations)`),
		idSpan: s(`SELECT coalesce((SELECT max(id) FROM @.tasks) - (SELECT min(id) FROM @.tasks) + 1, 0)`),
		// ORDER BY: a range of the claim index, not the heap, which after
		// churn holds dead rows at its start until vacuum reaches them.
		countPending: s(`WITH oldest AS (SELECT id, created_at FROM @.tasks WHERE run_at = 0 ORDER BY id LIMIT 1)
			SELECT (SELECT count(*) FROM (SELECT 1 FROM @.tasks WHERE run_at = 0 LIMIT $1) AS r),
			       (SELECT count(*) FROM (SELECT 1 FROM @.tasks WHERE run_at > 0 LIMIT $1) AS d),
			       (SELECT id FROM oldest), (SELECT created_at FROM oldest)`),
		countDue: s(`SELECT count(*) FROM (SELECT 1 FROM @.tasks WHERE run_at <= $1 ORDER BY run_at LIMIT $2) AS due`),

		fail: s(`INSERT INTO @.failed
			(task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`),
		failures: s(`SELECT ` + failureColumns + ` FROM @.failed ORDER BY failed_at DESC, id DESC LIMIT $1`),
		failure:  s(`SELECT ` + failureColumns + ` FROM @.failed WHERE id = $1`),
		// Retries: new first attempts, ready, from the records deleted, in
		// one statement; arguments that are not JSON (written by hand) stay
		// in the record instead of failing the lot.
		retryOne: s(`WITH f AS (DELETE FROM @.failed WHERE id = $1 RETURNING *),
			ins AS (INSERT INTO @.tasks (task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns)
				SELECT task, args, $2, priority, 0, 1, max_attempts, timeout_ns FROM f RETURNING id),
			wake AS (SELECT pg_notify($3, '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row)
			SELECT id, (SELECT count(*) FROM wake) FROM ins`),
		retryAll: s(`WITH f AS (DELETE FROM @.failed WHERE @.is_json(args) RETURNING *),
			ins AS (INSERT INTO @.tasks (task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns)
				SELECT task, args, $1, priority, 0, 1, max_attempts, timeout_ns FROM f ORDER BY id RETURNING id),
			wake AS (SELECT pg_notify($2, '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row)
			SELECT id, (SELECT count(*) FROM wake) FROM ins ORDER BY id`),
		retryTask: s(`WITH f AS (DELETE FROM @.failed WHERE @.is_json(args) AND task = $3 RETURNING *),
			ins AS (INSERT INTO @.tasks (task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns)
				SELECT task, args, $1, priority, 0, 1, max_attempts, timeout_ns FROM f ORDER BY id RETURNING id),
			wake AS (SELECT pg_notify($2, '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row)
			SELECT id, (SELECT count(*) FROM wake) FROM ins ORDER BY id`),
		failureCount: s(`SELECT count(*) FROM @.failed`),
		purge:        s(`DELETE FROM @.failed`),
		pruneAge:     s(`DELETE FROM @.failed WHERE failed_at < $1`),
		pruneCount: s(`DELETE FROM @.failed WHERE id IN
			(SELECT id FROM @.failed ORDER BY failed_at DESC, id DESC OFFSET $1)`),

		schedules: s(`SELECT name, spec, task, next_run, last_run FROM @.schedules ORDER BY name`),
		saveSchedule: s(`INSERT INTO @.schedules (name, spec, task, next_run, last_run) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, task = excluded.task,
				next_run = excluded.next_run, last_run = excluded.last_run`),
		takeTick: s(`UPDATE @.schedules SET next_run = $1, last_run = $2 WHERE name = $3 AND next_run = $4`),

		addStats: s(`INSERT INTO @.stats (minute, task, finished, failures, total_ns, max_ns)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (minute, task) DO UPDATE SET
				finished = stats.finished + excluded.finished,
				failures = stats.failures + excluded.failures,
				total_ns = stats.total_ns + excluded.total_ns,
				max_ns   = greatest(stats.max_ns, excluded.max_ns)`),
		addBacklog: s(`INSERT INTO @.stats_backlog (minute, pending) VALUES ($1, $2)
			ON CONFLICT (minute) DO UPDATE SET pending = excluded.pending`),
		pruneStats:   s(`DELETE FROM @.stats WHERE minute < $1`),
		pruneBacklog: s(`DELETE FROM @.stats_backlog WHERE minute < $1`),
		readStats: s(`SELECT minute, task, finished, failures, total_ns, max_ns, coalesce(pending, -1) FROM (
				SELECT s.minute, s.task, s.finished, s.failures, s.total_ns, s.max_ns, b.pending
				FROM @.stats s LEFT JOIN @.stats_backlog b ON b.minute = s.minute
				WHERE s.minute >= $1
				UNION ALL
				SELECT b.minute, '', 0, 0, 0, 0, b.pending
				FROM @.stats_backlog b
				WHERE b.minute >= $1 AND NOT EXISTS (SELECT 1 FROM @.stats s WHERE s.minute = b.minute)
			) AS m
			ORDER BY minute, task`),

		register: s(`INSERT INTO @.daemons (host, pid, workers, busy, paused, generation)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`),
		heartbeat: s(`INSERT INTO @.daemons (id, host, pid, workers, busy, paused, generation)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (id) DO UPDATE SET workers = excluded.workers, busy = excluded.busy,
				paused = excluded.paused, generation = excluded.generation, last_seen = now()`),
		daemons: s(`SELECT id, host, pid, started, workers, busy, paused, generation, last_seen,
				last_seen < now() - make_interval(secs => $1)
			FROM @.daemons ORDER BY id`),
		unregister: s(`DELETE FROM @.daemons WHERE id = $1`),
		removeGone: s(`DELETE FROM @.daemons WHERE last_seen < now() - make_interval(secs => $1)`),

		pendingCols: `id, task, priority, key, run_at, attempt, max_attempts, created_at, serial_key`,
		tasks:       schema + ".tasks",
	}
}

const failureColumns = `id, task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns`

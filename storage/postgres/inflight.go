package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// ledgerQueries are the statements of the ledger of tasks in flight (see
// migration 0002).
type ledgerQueries struct {
	claim, claimLimited, lock, finish, list, countLost string
	recover                                            [3]string // by storage.Whose
}

func newLedgerQueries(schema string) ledgerQueries {
	s := func(q string) string { return strings.ReplaceAll(q, "@.", schema+".") }
	// The records taken, deleted and locked, so that a daemon recovering
	// at the same time skips them; then each becomes a failed record or,
	// for a task named in $3 with attempts left by $4, a new task.
	recover := func(where string) string {
		return s(`WITH l AS (
			DELETE FROM @.inflight WHERE id IN (SELECT id FROM @.inflight WHERE ` + where + ` FOR UPDATE SKIP LOCKED)
			RETURNING *
		), lim AS (
			SELECT * FROM unnest($3::text[], $4::integer[]) AS t(task, attempts)
		), a AS (
			SELECT l.*, (lim.attempts IS NOT NULL AND l.attempt < lim.attempts AND @.is_json(l.args)) AS again
			FROM l LEFT JOIN lim ON lim.task = l.task
		), r AS (
			SELECT a.*, CASE WHEN again
				THEN nextval((SELECT pg_get_serial_sequence('@.tasks', 'id'))::regclass) END AS new_id
			FROM a ORDER BY id
		), ins AS (
			INSERT INTO @.tasks (id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, serial_key)
			SELECT new_id, task, args, $5, priority, attempt + 1, max_attempts, timeout_ns, serial_key FROM r WHERE again
			RETURNING id
		), failed AS (
			INSERT INTO @.failed (task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns)
			SELECT id, task, args, $2, attempt, $5, priority, max_attempts, timeout_ns FROM r WHERE NOT again
			RETURNING id, task_id
		), wake AS (
			SELECT pg_notify($6, '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_row
		)
		SELECT r.id, r.owner, r.started, r.task, r.args, r.created_at, r.priority, r.attempt, r.max_attempts,
			r.timeout_ns, coalesce(r.new_id, 0), coalesce(f.id, 0), (SELECT count(*) FROM wake)
		FROM r LEFT JOIN failed f ON f.task_id = r.id
		ORDER BY r.id`)
	}
	return ledgerQueries{
		claim:        s(claimSQL(false)),
		claimLimited: s(claimSQL(true)),
		lock:         `SELECT pg_advisory_xact_lock(hashtext($1))`,
		// A record of a task with a serial key or a limited name wakes the
		// daemons: one may be waiting for it to end.
		finish: s(`WITH f AS (DELETE FROM @.inflight WHERE id = ANY($1::bigint[]) RETURNING task, serial_key),
			wake AS (SELECT pg_notify($2, '') FROM (SELECT 1 FROM f WHERE serial_key IS NOT NULL OR task = ANY($3::text[]) LIMIT 1) AS any_row)
			SELECT count(*) FROM wake`),
		list: s(`SELECT id, owner, started, task, created_at, priority, attempt, max_attempts, timeout_ns
			FROM @.inflight ORDER BY id LIMIT $1`),
		countLost: s(`SELECT count(*) FROM @.failed WHERE starts_with(error, $1)`),
		recover: [3]string{
			storage.OwnedBy:    recover(`owner = $1`),
			storage.NotOwnedBy: recover(`owner <> $1`),
			storage.GoneOwners: recover(`owner <> $1 AND owner NOT IN
				(SELECT id FROM @.daemons WHERE last_seen >= now() - make_interval(secs => $7))`),
		},
	}
}

// serialFreeSQL holds for a queued row t whose serial key, if it has one,
// lets it run: no task with the key in flight, and none older queued.
const serialFreeSQL = `(t.serial_key IS NULL OR (
		NOT EXISTS (SELECT 1 FROM @.inflight f WHERE f.serial_key = t.serial_key) AND
		NOT EXISTS (SELECT 1 FROM @.tasks o WHERE o.serial_key = t.serial_key AND o.id < t.id)))`

// claimSQL is the claim for a daemon, in one statement: the finished
// tasks' records deleted ($3), up to $1 tasks claimed and recorded in
// flight for owner $2 at $4, and the daemons woken ($6) if a finished
// task had a serial key or a limited name ($5, the limits $7, only in
// the claim with limits). Its rows
// are the tasks (kind 0), then one row (kind 1) that says whether tasks
// with serial keys are queued and how many tasks were ready, up to $1+1.
// The ORDER BYs of those look-ups keep them ranges of an index (a bitmap
// scan of the whole backlog otherwise, before the statistics are in).
//
// Without limits (the fast claim) it takes no task with a serial key, and
// needs no lock: the claim index in order, as Claim's. With them, it
// takes the unlimited names' tasks as one range and each limited name's
// as another, no more than the name may still start, each task with a
// serial key only if it is its key's next; the caller holds the claims'
// advisory lock, taken in an earlier statement of the transaction, so
// that this statement's snapshot sees every claim committed before.
func claimSQL(limited bool) string {
	// The fast claim picks as Claim does, then leaves the rows with serial
	// keys it met (locked until the statement ends): a filter on
	// serial_key in the pick would cost the planner its use of the claim
	// index's order, with no statistics yet.
	pick := `SELECT ctid FROM pick WHERE serial_key IS NULL`
	pickCTE := `pick AS MATERIALIZED (
			SELECT ctid, serial_key FROM @.tasks WHERE run_at = 0
			ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED
		), `
	if limited {
		pick = `SELECT ctid FROM (
			SELECT * FROM (SELECT ctid, id, priority FROM @.tasks t
				WHERE run_at = 0 AND NOT (task = ANY($5::text[])) AND ` + serialFreeSQL + `
				ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED) AS free
			UNION ALL
			SELECT x.* FROM unnest($5::text[], $7::integer[]) AS l(name, lim) CROSS JOIN LATERAL (
				SELECT ctid, id, priority FROM @.tasks t
				WHERE run_at = 0 AND t.task = l.name AND ` + serialFreeSQL + `
				ORDER BY priority DESC, id
				LIMIT greatest(l.lim - (SELECT count(*) FROM @.inflight f WHERE f.task = l.name), 0)
				FOR UPDATE SKIP LOCKED) AS x
		) AS p ORDER BY priority DESC, id LIMIT $1`
		pickCTE = ""
	}
	return `WITH ` + pickCTE + `f AS (
			DELETE FROM @.inflight WHERE id = ANY($3::bigint[]) RETURNING task, serial_key
		), wake AS (
			SELECT pg_notify($6, '') FROM
				(SELECT 1 FROM f WHERE serial_key IS NOT NULL OR task = ANY($5::text[]) LIMIT 1) AS any_row
		), c AS (
			DELETE FROM @.tasks WHERE ctid = ANY(ARRAY(` + pick + `))
			RETURNING id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key
		), i AS (
			INSERT INTO @.inflight
				(id, owner, started, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key)
			SELECT id, $2, $4, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key FROM c
		)
		SELECT 0, id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key, false, 0 FROM c
		UNION ALL
		SELECT 1, 0, '', '', 0, 0, 0, 0, 0, NULL, NULL,
			(SELECT serial_key FROM @.tasks WHERE serial_key IS NOT NULL ORDER BY serial_key LIMIT 1) IS NOT NULL,
			-- The ready tasks matter only to a claim that came back short
			-- (Held): a full one does not read the claim index again.
			CASE WHEN (SELECT count(*) FROM c) < $1 THEN
				(SELECT count(*) FROM (SELECT 1 FROM @.tasks WHERE run_at = 0 ORDER BY priority DESC, id LIMIT $1 + 1) AS ready)
			ELSE 0 END
			+ (SELECT count(*) FROM wake)`
}

// ClaimFor is Claim for daemon r.Owner: one statement deletes the ledger's
// records of r.Finished, claims up to r.N tasks as Claim does, within the
// limits, and records them in the ledger. Without MaxRunning, and while
// no task with a serial key is queued, it is one statement that takes no
// lock; otherwise that statement runs in a transaction that first takes
// the claims' advisory lock, so that two daemons never both start the
// last task a limit allows.
func (b *Backend) ClaimFor(ctx context.Context, r storage.ClaimRequest) (storage.Claimed, error) {
	if r.N <= 0 {
		if err := b.Finish(ctx, r.Finished); err != nil {
			return storage.Claimed{}, err
		}
		return storage.Claimed{}, nil
	}
	finished := r.Finished
	if finished == nil {
		finished = []int64{}
	}
	names, limits := []string{}, []int32{}
	for n, l := range r.MaxRunning {
		names, limits = append(names, n), append(limits, int32(l))
	}
	b.limited.Store(&names)
	args := []any{r.N, r.Owner, finished, time.Now().UnixNano(), names, b.wakeChan, limits}
	limited := func(args []any) (c storage.Claimed, serial bool, err error) {
		err = b.WriteTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, b.lq.lock, b.cfg.Schema+".claim"); err != nil {
				return fmt.Errorf("take the claims' lock: %w", b.err(err))
			}
			// The finished tasks' records go in a statement of their own:
			// the claim's snapshot must not count them.
			if fin := args[2].([]int64); len(fin) > 0 {
				if _, err := tx.ExecContext(ctx, b.lq.finish, fin, b.wakeChan, names); err != nil {
					return fmt.Errorf("remove finished tasks from the ledger: %w", b.err(err))
				}
				args = slices.Clone(args)
				args[2] = []int64{}
			}
			var err error
			c, serial, err = b.claimWith(ctx, tx, b.lq.claimLimited, args[0].(int), args)
			return err
		})
		return c, serial, err
	}
	var c storage.Claimed
	var serial bool
	var err error
	if len(names) == 0 && !b.serialQueued.Load() {
		c, serial, err = b.claimWith(ctx, b.db, b.lq.claim, r.N, args[:6])
		if err == nil && serial && len(c.Tasks) < r.N {
			// Tasks with serial keys came: the rest of the claim takes
			// them, with the lock.
			more := append([]any{r.N - len(c.Tasks), r.Owner, []int64{}}, args[3:]...)
			var mc storage.Claimed
			if mc, serial, err = limited(more); err == nil {
				c.Tasks, c.Held = append(c.Tasks, mc.Tasks...), mc.Held
				sortClaimed(c.Tasks)
			} else if len(c.Tasks) > 0 {
				// The first part committed: its tasks are the caller's.
				b.log.Warn("claiming the tasks with serial keys failed; will retry at the next claim", "err", err)
				err, c.Held = nil, true
			}
		}
	} else {
		c, serial, err = limited(args)
	}
	if err != nil {
		return storage.Claimed{}, fmt.Errorf("claim tasks: %w", err)
	}
	b.serialQueued.Store(serial)
	return c, nil
}

// claimWith runs a claim statement (see claimSQL) on q and reads its
// rows.
func (b *Backend) claimWith(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, n int, args []any) (storage.Claimed, bool, error) {
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return storage.Claimed{}, false, b.err(err)
	}
	defer rs.Close()
	tasks := make([]snappea.Task, 0, min(n, 256))
	var serial bool
	var ready int64
	for rs.Next() {
		var (
			kind             int
			t                snappea.Task
			created, timeout int64
			key, serialKey   sql.NullString
			s                bool
			count            int64
		)
		if err := rs.Scan(&kind, &t.ID, &t.Name, &t.Args, &created, &t.Priority, &t.Attempt, &t.MaxAttempts,
			&timeout, &key, &serialKey, &s, &count); err != nil {
			// As Claim's: handed out as a bad row rather than lost.
			tasks = append(tasks, snappea.Task{ID: t.ID, Err: fmt.Errorf("%w: the row could not be read", snappea.ErrBadRow)})
			continue
		}
		if kind == 1 {
			serial, ready = s, count
			continue
		}
		t.EnqueuedAt, t.Timeout, t.Key, t.SerialKey = time.Unix(0, created), time.Duration(timeout), key.String,
			serialKey.String
		if len(t.Args) > b.cfg.MaxArgsSize {
			t.Err = fmt.Errorf("%w: arguments are %d bytes, over the limit of %d (MaxArgsSize)",
				snappea.ErrBadRow, len(t.Args), b.cfg.MaxArgsSize)
		}
		tasks = append(tasks, t)
	}
	if err := rs.Err(); err != nil {
		return storage.Claimed{}, false, b.err(err)
	}
	b.claimed.Add(int64(len(tasks)))
	sortClaimed(tasks)
	// ready counts the ready tasks the statement saw, those it took
	// among them (and one for a wakeup sent, which only makes the
	// caller look again).
	return storage.Claimed{Tasks: tasks, Held: len(tasks) < n && ready > int64(len(tasks))}, serial, nil
}

// Finish deletes the ledger's records of tasks that ended.
func (b *Backend) Finish(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	var names []string
	if p := b.limited.Load(); p != nil {
		names = *p
	}
	if names == nil {
		names = []string{}
	}
	if _, err := b.db.ExecContext(ctx, b.lq.finish, ids, b.wakeChan, names); err != nil {
		return fmt.Errorf("remove finished tasks from the ledger: %w", b.err(err))
	}
	return nil
}

// InFlight lists the ledger's records by id, without their arguments.
func (b *Backend) InFlight(ctx context.Context, limit int) ([]storage.InFlight, error) {
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	rs, err := b.db.QueryContext(ctx, b.lq.list, lim)
	if err != nil {
		return nil, fmt.Errorf("list tasks in flight: %w", b.err(err))
	}
	defer rs.Close()
	var out []storage.InFlight
	for rs.Next() {
		var f storage.InFlight
		var started, created, timeout int64
		if err := rs.Scan(&f.ID, &f.Owner, &started, &f.Task, &created, &f.Priority, &f.Attempt, &f.MaxAttempts,
			&timeout); err != nil {
			return nil, fmt.Errorf("list tasks in flight: %w", b.err(err))
		}
		f.Started, f.EnqueuedAt, f.Timeout = time.Unix(0, started), time.Unix(0, created), time.Duration(timeout)
		out = append(out, f)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list tasks in flight: %w", b.err(err))
	}
	return out, nil
}

// RecoverLost turns the ledger's records r chooses into failed records,
// or new tasks for the names in r.Retry, in one statement. Records that
// another daemon's recovery holds are skipped: it takes them.
func (b *Backend) RecoverLost(ctx context.Context, r storage.Recovery) ([]storage.Lost, error) {
	if r.Whose < 0 || int(r.Whose) >= len(b.lq.recover) {
		return nil, fmt.Errorf("recover lost tasks: unknown Whose %d", r.Whose)
	}
	names, limits := []string{}, []int32{}
	for n, l := range r.Retry {
		names, limits = append(names, n), append(limits, int32(l))
	}
	args := []any{r.Owner, r.Cause, names, limits, unixNano(r.At), b.wakeChan}
	if r.Whose == storage.GoneOwners {
		args = append(args, b.cfg.DaemonGone.Seconds())
	}
	rs, err := b.db.QueryContext(ctx, b.lq.recover[r.Whose], args...)
	if err != nil {
		return nil, fmt.Errorf("recover lost tasks: %w", b.err(err))
	}
	defer rs.Close()
	var out []storage.Lost
	for rs.Next() {
		var l storage.Lost
		var started, created, timeout, woke int64
		var args string
		if err := rs.Scan(&l.ID, &l.Owner, &started, &l.Task, &args, &created, &l.Priority, &l.Attempt,
			&l.MaxAttempts, &timeout, &l.RetryID, &l.FailureID, &woke); err != nil {
			return nil, fmt.Errorf("recover lost tasks: %w", b.err(err))
		}
		l.Args, l.Started, l.EnqueuedAt, l.Timeout = []byte(args), time.Unix(0, started), time.Unix(0, created),
			time.Duration(timeout)
		out = append(out, l)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("recover lost tasks: %w", b.err(err))
	}
	return out, nil
}

// CountLost counts the failed records of lost tasks.
func (b *Backend) CountLost(ctx context.Context) (int64, error) {
	var n int64
	if err := b.db.QueryRowContext(ctx, b.lq.countLost, snappea.LostPrefix).Scan(&n); err != nil {
		return 0, fmt.Errorf("count lost tasks: %w", b.err(err))
	}
	return n, nil
}

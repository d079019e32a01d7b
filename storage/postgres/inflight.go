package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// ledgerQueries are the statements of the ledger of tasks in flight (see
// migration 0002).
type ledgerQueries struct {
	claim, finish, list, countLost string
	recover                        [3]string // by storage.Whose
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
		// The claim as Claim's, the finished records deleted and the
		// claimed rows recorded in the same statement. Data-modifying
		// CTEs all run to completion, read or not.
		claim: s(`WITH f AS (
			DELETE FROM @.inflight WHERE id = ANY($3::bigint[])
		), c AS (
			DELETE FROM @.tasks WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM @.tasks WHERE run_at = 0 ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED))
			RETURNING id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key
		), i AS (
			INSERT INTO @.inflight
				(id, owner, started, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key)
			SELECT id, $2, $4, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key FROM c
		)
		SELECT id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key FROM c`),
		finish: s(`DELETE FROM @.inflight WHERE id = ANY($1::bigint[])`),
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

// ClaimFor is Claim for daemon r.Owner: one statement deletes the ledger's
// records of r.Finished, claims up to r.N tasks as Claim does and records
// them in the ledger.
func (b *Backend) ClaimFor(ctx context.Context, r storage.ClaimRequest) ([]snappea.Task, error) {
	if r.N <= 0 {
		if err := b.Finish(ctx, r.Finished); err != nil {
			return nil, err
		}
		return nil, nil
	}
	finished := r.Finished
	if finished == nil {
		finished = []int64{}
	}
	rs, err := b.db.QueryContext(ctx, b.lq.claim, r.N, r.Owner, finished, time.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", b.err(err))
	}
	tasks, err := b.scanClaimed(rs, r.N)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	return tasks, nil
}

// Finish deletes the ledger's records of tasks that ended.
func (b *Backend) Finish(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := b.db.ExecContext(ctx, b.lq.finish, ids); err != nil {
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

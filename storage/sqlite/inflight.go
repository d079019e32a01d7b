package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// The ledger's statements (see migration 0007).
const (
	// Whether a claim that took fewer than it asked for left ready tasks
	// (held back by a limit).
	anyReadySQL = `SELECT EXISTS (SELECT 1 FROM snappea_tasks WHERE run_at = 0)`
	// ids: a JSON array.
	finishSQL = `DELETE FROM snappea_inflight WHERE id IN (SELECT value FROM json_each(?))`
	// The columns as their types, whatever a row that was not STRICT
	// left in them.
	inflightColumns = `id, owner, started,
		CASE WHEN typeof(task) = 'text' THEN task ELSE '' END,
		CASE WHEN typeof(args) IN ('text', 'blob') THEN CAST(args AS BLOB) ELSE X'' END,
		CAST(created_at AS INTEGER), CAST(priority AS INTEGER), max(CAST(attempt AS INTEGER), 1),
		max(CAST(max_attempts AS INTEGER), 0), max(CAST(timeout_ns AS INTEGER), 0),
		CASE WHEN typeof(serial_key) = 'text' THEN serial_key END`
)

// ledgerStmts are the ledger's prepared statements.
type ledgerStmts struct {
	finish, ready *sql.Stmt
	claims        claimStmts
}

func (l *ledgerStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{{&l.finish, finishSQL}, {&l.ready, anyReadySQL}} {
		stmt, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare the ledger's statements: %w", dbError(err))
		}
		*p.stmt = stmt
	}
	return nil
}

// idList is ids as a JSON array, for json_each.
func idList(ids []int64) string {
	b := make([]byte, 0, 2+len(ids)*8)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

// ClaimFor is Claim for daemon r.Owner: it deletes the ledger's records
// of r.Finished, then claims up to r.N tasks as Claim does, within the
// limits, each recorded in the ledger in the claim's own statement. Both
// are autocommit statements, in one turn of the write lock: a claim
// without Finished costs no transaction more than Claim's, and one with
// them one commit more, which is why the records of finished tasks are
// passed in batches.
func (b *Backend) ClaimFor(ctx context.Context, r storage.ClaimRequest) (storage.Claimed, error) {
	if r.N <= 0 && len(r.Finished) == 0 {
		return storage.Claimed{}, nil
	}
	stmt, names, err := b.ledger.claims.get(ctx, b.db, r.MaxRunning)
	if err != nil {
		return storage.Claimed{}, fmt.Errorf("claim tasks: %w", err)
	}
	if err := b.writeMu.Lock(ctx); err != nil {
		return storage.Claimed{}, fmt.Errorf("claim tasks: %w", err)
	}
	defer b.writeMu.Unlock()
	if len(r.Finished) > 0 {
		if _, err := b.ledger.finish.ExecContext(ctx, idList(r.Finished)); err != nil {
			return storage.Claimed{}, fmt.Errorf("remove finished tasks from the ledger: %w", dbError(err))
		}
	}
	if r.N <= 0 {
		return storage.Claimed{}, nil
	}
	args := make([]any, 0, 3+2*len(names))
	args = append(args, r.Owner, time.Now().UnixNano(), r.N)
	for _, n := range names {
		args = append(args, n, r.MaxRunning[n])
	}
	// As Claim's: a failed commit surfaces in rows.Err, and the tasks read
	// are dropped (the statement rolled back, and they stay queued).
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return storage.Claimed{}, fmt.Errorf("claim tasks: %w", dbError(err))
	}
	tasks, err := b.scanClaimed(rows, r.N)
	if err != nil {
		return storage.Claimed{}, fmt.Errorf("claim tasks: %w", err)
	}
	c := storage.Claimed{Tasks: tasks}
	if len(tasks) < r.N {
		if err := b.ledger.ready.QueryRowContext(ctx).Scan(&c.Held); err != nil {
			// The claim committed: its tasks are the caller's all the same.
			b.log.Warn("could not tell whether a limit holds tasks back; the daemon looks again at its next poll", "err", dbError(err))
		}
	}
	return c, nil
}

// Finish deletes the ledger's records of tasks that ended.
func (b *Backend) Finish(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.StmtContext(ctx, b.ledger.finish).ExecContext(ctx, idList(ids))
		return dbError(err)
	}, false)
	if err != nil {
		return fmt.Errorf("remove finished tasks from the ledger: %w", err)
	}
	return nil
}

// InFlight lists the ledger's records by id, without their arguments.
func (b *Backend) InFlight(ctx context.Context, limit int) ([]storage.InFlight, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := b.db.QueryContext(ctx, `SELECT `+inflightColumns+` FROM snappea_inflight ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list tasks in flight: %w", dbError(err))
	}
	out, err := scanInFlight(rows)
	if err != nil {
		return nil, fmt.Errorf("list tasks in flight: %w", err)
	}
	for i := range out {
		out[i].Args = nil
	}
	return out, nil
}

// inflightRow is an in-flight record as read, with its serial key.
type inflightRow struct {
	storage.InFlight
	serialKey sql.NullString
}

func scanInFlight(rows *sql.Rows) ([]storage.InFlight, error) {
	rs, err := scanInFlightRows(rows)
	out := make([]storage.InFlight, len(rs))
	for i := range rs {
		out[i] = rs[i].InFlight
	}
	return out, err
}

func scanInFlightRows(rows *sql.Rows) ([]inflightRow, error) {
	defer rows.Close()
	var out []inflightRow
	for rows.Next() {
		var r inflightRow
		var started, created, timeout int64
		if err := rows.Scan(&r.ID, &r.Owner, &started, &r.Task, &r.Args, &created, &r.Priority, &r.Attempt,
			&r.MaxAttempts, &timeout, &r.serialKey); err != nil {
			return nil, dbError(err)
		}
		r.Started, r.EnqueuedAt, r.Timeout = time.Unix(0, started), time.Unix(0, created), time.Duration(timeout)
		out = append(out, r)
	}
	return out, dbError(rows.Err())
}

// RecoverLost turns the ledger's records r chooses into failed records,
// or new tasks for the names in r.Retry, in one transaction, and wakes
// the daemon if it enqueued any.
func (b *Backend) RecoverLost(ctx context.Context, r storage.Recovery) ([]storage.Lost, error) {
	var where string
	args := []any{r.Owner}
	switch r.Whose {
	case storage.OwnedBy:
		where = `owner = ?`
	case storage.NotOwnedBy:
		where = `owner <> ?`
	case storage.GoneOwners:
		where = `owner <> ? AND owner NOT IN (SELECT id FROM snappea_daemons WHERE last_seen >= ?)`
		args = append(args, time.Now().Add(-DaemonGone).UnixNano())
	default:
		return nil, fmt.Errorf("recover lost tasks: unknown Whose %d", r.Whose)
	}
	var out []storage.Lost
	retried := false
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT `+inflightColumns+` FROM snappea_inflight WHERE `+where+` ORDER BY id`, args...)
		if err != nil {
			return dbError(err)
		}
		recs, err := scanInFlightRows(rows)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			l := storage.Lost{InFlight: rec.InFlight}
			if limit, ok := r.Retry[rec.Task]; ok && rec.Attempt < limit && (len(rec.Args) == 0 || json.Valid(rec.Args)) {
				var serial any
				if rec.serialKey.Valid {
					serial = rec.serialKey.String
				}
				err = tx.QueryRowContext(ctx, `INSERT INTO snappea_tasks
					(task, args, created_at, priority, attempt, max_attempts, timeout_ns, serial_key)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
					rec.Task, nonNil(rec.Args), r.At.UnixNano(), rec.Priority, rec.Attempt+1, rec.MaxAttempts,
					int64(rec.Timeout), serial).Scan(&l.RetryID)
				retried = true
			} else {
				err = tx.QueryRowContext(ctx, `INSERT INTO snappea_failed
					(task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
					rec.ID, rec.Task, nonNil(rec.Args), r.Cause, rec.Attempt, r.At.UnixNano(), rec.Priority,
					rec.MaxAttempts, int64(rec.Timeout)).Scan(&l.FailureID)
			}
			if err != nil {
				return fmt.Errorf("task %d: %w", rec.ID, dbError(err))
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM snappea_inflight WHERE id = ?`, rec.ID); err != nil {
				return fmt.Errorf("task %d: %w", rec.ID, dbError(err))
			}
			out = append(out, l)
		}
		return nil
	}, false)
	if err != nil {
		return nil, fmt.Errorf("recover lost tasks: %w", err)
	}
	if retried {
		b.wake()
	}
	return out, nil
}

// CountLost counts the failed records of lost tasks.
func (b *Backend) CountLost(ctx context.Context) (int64, error) {
	var n int64
	if err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM snappea_failed WHERE substr(error, 1, ?) = ?`,
		len(snappea.LostPrefix), snappea.LostPrefix).Scan(&n); err != nil {
		return 0, fmt.Errorf("count lost tasks: %w", dbError(err))
	}
	return n, nil
}

package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/snappea/snappea"
)

// Failure is a task that failed its last attempt, as Fail recorded it:
// the domain's.
type Failure = snappea.Failure

const failureColumns = `id, task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns`

func scanFailure(sc interface{ Scan(...any) error }) (Failure, error) {
	var f Failure
	var failedAt, timeout int64
	err := sc.Scan(&f.ID, &f.TaskID, &f.Task, &f.Args, &f.Error, &f.Attempts, &failedAt, &f.Priority,
		&f.MaxAttempts, &timeout)
	f.FailedAt = time.Unix(0, failedAt)
	f.Timeout = time.Duration(timeout)
	return f, err
}

// Fail records that t failed for good, with cause as the error, in the
// failed tasks an operator can list (Failures), retry (RetryFailure) or
// purge. The daemon calls it when a task's last attempt fails.
func (q *Queue) Fail(ctx context.Context, t *Task, cause error) error {
	msg := ""
	if cause != nil {
		msg = cause.Error()
	}
	sctx, cancel, err := q.turn(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("record failed task %d: %w", t.ID, err)
	}
	_, err = q.db.ExecContext(sctx, `INSERT INTO snappea_failed
		(task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, nonNil(t.Args), msg, t.Attempt, time.Now().UnixNano(), t.Priority, t.MaxAttempts,
		int64(t.Timeout))
	err = q.writeErr(ctx, sctx, err)
	q.endTurn(cancel)
	if err != nil {
		return fmt.Errorf("record failed task %d: %w", t.ID, err)
	}
	return nil
}

// Failures returns up to limit failed tasks, newest first; limit <= 0
// returns them all.
func (q *Queue) Failures(ctx context.Context, limit int) ([]Failure, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := q.db.QueryContext(ctx, `SELECT `+failureColumns+` FROM snappea_failed
		ORDER BY failed_at DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list failed tasks: %w", dbError(err))
	}
	defer rows.Close()
	var fs []Failure
	for rows.Next() {
		f, err := scanFailure(rows)
		if err != nil {
			return nil, fmt.Errorf("list failed tasks: %w", err)
		}
		fs = append(fs, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list failed tasks: %w", dbError(err))
	}
	return fs, nil
}

// FailureByID returns the failed task recorded as id, or an error matching
// ErrNotFound.
func (q *Queue) FailureByID(ctx context.Context, id int64) (Failure, error) {
	f, err := failureByID(ctx, q.db, id)
	if err != nil {
		return Failure{}, fmt.Errorf("read failed task %d: %w", id, err)
	}
	return f, nil
}

func failureByID(ctx context.Context, db interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, id int64) (Failure, error) {
	f, err := scanFailure(db.QueryRowContext(ctx, `SELECT `+failureColumns+` FROM snappea_failed WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Failure{}, ErrNotFound
	}
	if err != nil {
		return Failure{}, dbError(err)
	}
	return f, nil
}

// RetryFailure enqueues the failed task id anew, ready now, as its first
// attempt, with its priority, timeout and MaxAttempts, and deletes the
// failure record, in one transaction. It wakes the daemon and returns the
// new task's id; an unknown id matches ErrNotFound. It does not count
// against MaxBacklog.
func (q *Queue) RetryFailure(ctx context.Context, id int64) (int64, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	var taskID int64
	err := q.writeTx(ctx, func(tx *sql.Tx) error {
		f, err := failureByID(ctx, tx, id)
		if err != nil {
			return err
		}
		r := row{task: f.Task, args: nonNil(f.Args), created: time.Now().UnixNano(), priority: f.Priority,
			attempt: 1, maxAttempts: f.MaxAttempts, timeout: f.Timeout}
		res, err := write(ctx, &stmts{q: q, tx: tx}, &r)
		if err != nil {
			return err
		}
		taskID = res.ID
		if _, err := tx.ExecContext(ctx, `DELETE FROM snappea_failed WHERE id = ?`, id); err != nil {
			return dbError(err)
		}
		return nil
	}, false)
	if err != nil {
		return 0, fmt.Errorf("retry failed task %d: %w", id, err)
	}
	q.wake()
	return taskID, nil
}

// RetryAllFailures is RetryFailure for every failed task, oldest first, in
// one transaction. It returns how many it enqueued. A record whose
// arguments the task table refuses (not JSON: a bad row another program
// wrote) is left in place rather than make the whole retry fail.
func (q *Queue) RetryAllFailures(ctx context.Context) (int, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	var n int64
	err := q.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO snappea_tasks
			(task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns)
			SELECT task, args, ?, priority, 0, 1, max_attempts, timeout_ns FROM snappea_failed
			WHERE `+retryableSQL+` ORDER BY id`,
			time.Now().UnixNano())
		if err != nil {
			return dbError(err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		// The write lock is held since BEGIN: no failure was added meanwhile.
		_, err = tx.ExecContext(ctx, `DELETE FROM snappea_failed WHERE `+retryableSQL)
		return dbError(err)
	}, false)
	if err != nil {
		return 0, fmt.Errorf("retry failed tasks: %w", err)
	}
	if n > 0 {
		q.wake()
	}
	return int(n), nil
}

// retryableSQL selects the failure records whose arguments the task
// table's args_is_json constraint accepts.
const retryableSQL = `typeof(args) IN ('text', 'blob') AND (length(args) = 0 OR json_valid(CAST(args AS TEXT)))`

// PurgeFailures deletes every failed task record and returns how many.
func (q *Queue) PurgeFailures(ctx context.Context) (int, error) {
	sctx, cancel, err := q.turn(ctx, time.Now())
	if err != nil {
		return 0, fmt.Errorf("purge failed tasks: %w", err)
	}
	res, err := q.db.ExecContext(sctx, `DELETE FROM snappea_failed`)
	err = q.writeErr(ctx, sctx, err)
	q.endTurn(cancel)
	if err != nil {
		return 0, fmt.Errorf("purge failed tasks: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge failed tasks: %w", err)
	}
	return int(n), nil
}

// PruneFailures deletes the failed task records older than maxAge and
// those beyond the newest maxRows, and returns how many it deleted. 0
// disables either bound.
func (q *Queue) PruneFailures(ctx context.Context, maxAge time.Duration, maxRows int) (int, error) {
	if maxAge < 0 || maxRows < 0 {
		return 0, fmt.Errorf("prune failed tasks: maxAge %v and maxRows %d may not be negative (0 disables)", maxAge, maxRows)
	}
	if maxAge == 0 && maxRows == 0 {
		return 0, nil
	}
	if q.closed.Load() {
		return 0, ErrClosed
	}
	var n int64
	err := q.writeTx(ctx, func(tx *sql.Tx) error {
		del := func(query string, arg any) error {
			res, err := tx.ExecContext(ctx, query, arg)
			if err != nil {
				return dbError(err)
			}
			m, err := res.RowsAffected()
			n += m
			return err
		}
		if maxAge > 0 {
			if err := del(`DELETE FROM snappea_failed WHERE failed_at < ?`,
				time.Now().Add(-maxAge).UnixNano()); err != nil {
				return err
			}
		}
		if maxRows > 0 {
			return del(`DELETE FROM snappea_failed WHERE id IN
				(SELECT id FROM snappea_failed ORDER BY failed_at DESC, id DESC LIMIT -1 OFFSET ?)`, maxRows)
		}
		return nil
	}, false)
	if err != nil {
		return 0, fmt.Errorf("prune failed tasks: %w", err)
	}
	return int(n), nil
}

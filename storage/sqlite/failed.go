package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

const failureColumns = `id, task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns`

func scanFailure(sc interface{ Scan(...any) error }) (snappea.Failure, error) {
	var f snappea.Failure
	var failedAt, timeout int64
	err := sc.Scan(&f.ID, &f.TaskID, &f.Task, &f.Args, &f.Error, &f.Attempts, &failedAt, &f.Priority,
		&f.MaxAttempts, &timeout)
	f.FailedAt = time.Unix(0, failedAt)
	f.Timeout = time.Duration(timeout)
	return f, err
}

// Fail records t as failed for good, at at, with msg as its error.
func (b *Backend) Fail(ctx context.Context, t *snappea.Task, msg string, at time.Time) error {
	sctx, cancel, err := b.turn(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("record failed task %d: %w", t.ID, err)
	}
	_, err = b.db.ExecContext(sctx, `INSERT INTO snappea_failed
		(task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.Name, nonNil(t.Args), msg, t.Attempt, at.UnixNano(), t.Priority, t.MaxAttempts,
		int64(t.Timeout))
	err = b.writeErr(ctx, sctx, err)
	b.endTurn(cancel)
	if err != nil {
		return fmt.Errorf("record failed task %d: %w", t.ID, err)
	}
	return nil
}

// Failures lists up to limit records, newest first; limit <= 0: all.
func (b *Backend) Failures(ctx context.Context, limit int) ([]snappea.Failure, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := b.db.QueryContext(ctx, `SELECT `+failureColumns+` FROM snappea_failed
		ORDER BY failed_at DESC, id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list failed tasks: %w", dbError(err))
	}
	defer rows.Close()
	var fs []snappea.Failure
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

// Failure is the record id, or an error matching snappea.ErrNotFound.
func (b *Backend) Failure(ctx context.Context, id int64) (snappea.Failure, error) {
	f, err := failureByID(ctx, b.db, id)
	if err != nil {
		return snappea.Failure{}, fmt.Errorf("read failed task %d: %w", id, err)
	}
	return f, nil
}

func failureByID(ctx context.Context, db interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, id int64) (snappea.Failure, error) {
	f, err := scanFailure(db.QueryRowContext(ctx, `SELECT `+failureColumns+` FROM snappea_failed WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return snappea.Failure{}, snappea.ErrNotFound
	}
	if err != nil {
		return snappea.Failure{}, dbError(err)
	}
	return f, nil
}

// RetryFailures enqueues failed records anew as first attempts, ready at
// now, with their priority, timeout and MaxAttempts, and deletes them, in
// one transaction, and wakes the daemon: the one with id (an unknown id
// matches snappea.ErrNotFound), or all, oldest first (id 0). A record
// whose arguments the task table refuses (not JSON: a bad row another
// program wrote) is left in place by a retry of all rather than make it
// fail.
func (b *Backend) RetryFailures(ctx context.Context, id int64, now time.Time) ([]int64, error) {
	if id != 0 {
		return b.retryFailure(ctx, id, now)
	}
	return b.retryWhere(ctx, "", nil, now)
}

// RetryFailuresOf is RetryFailures of every record of task name task,
// oldest first.
func (b *Backend) RetryFailuresOf(ctx context.Context, task string, now time.Time) ([]int64, error) {
	ids, err := b.retryWhere(ctx, ` AND task = ?`, []any{task}, now)
	if err != nil {
		return nil, fmt.Errorf("of task %q: %w", task, err)
	}
	return ids, nil
}

// FailureCount counts the failure records.
func (b *Backend) FailureCount(ctx context.Context) (int64, error) {
	var n int64
	if err := b.db.QueryRowContext(ctx, `SELECT count(*) FROM snappea_failed`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count failed tasks: %w", dbError(err))
	}
	return n, nil
}

// retryWhere retries the retryable records that also match cond, with
// its arguments.
func (b *Backend) retryWhere(ctx context.Context, cond string, condArgs []any, now time.Time) ([]int64, error) {
	var ids []int64
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `INSERT INTO snappea_tasks
			(task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns)
			SELECT task, args, ?, priority, 0, 1, max_attempts, timeout_ns FROM snappea_failed
			WHERE `+retryableSQL+cond+` ORDER BY id RETURNING id`,
			append([]any{now.UnixNano()}, condArgs...)...)
		if err != nil {
			return dbError(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return dbError(err)
		}
		if err := rows.Close(); err != nil {
			return dbError(err)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM snappea_failed WHERE `+retryableSQL+cond, condArgs...)
		return dbError(err)
	}, false)
	if err != nil {
		return nil, fmt.Errorf("retry failed tasks: %w", err)
	}
	slices.Sort(ids)
	if len(ids) > 0 {
		b.wake()
	}
	return ids, nil
}

// retryFailure is RetryFailures of the one record id.
func (b *Backend) retryFailure(ctx context.Context, id int64, now time.Time) ([]int64, error) {
	var taskID int64
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		f, err := failureByID(ctx, tx, id)
		if err != nil {
			return err
		}
		r := storage.Row{Task: f.Task, Args: f.Args, CreatedAt: now, Priority: f.Priority,
			Attempt: 1, MaxAttempts: f.MaxAttempts, Timeout: f.Timeout}
		res, err := write(ctx, &stmts{b: b, tx: tx}, &r)
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
		return nil, fmt.Errorf("retry failed task %d: %w", id, err)
	}
	b.wake()
	return []int64{taskID}, nil
}

// retryableSQL selects the failure records whose arguments the task
// table's args_is_json constraint accepts.
const retryableSQL = `typeof(args) IN ('text', 'blob') AND (length(args) = 0 OR json_valid(CAST(args AS TEXT)))`

// PurgeFailures deletes every failed task record and returns how many.
func (b *Backend) PurgeFailures(ctx context.Context) (int, error) {
	sctx, cancel, err := b.turn(ctx, time.Now())
	if err != nil {
		return 0, fmt.Errorf("purge failed tasks: %w", err)
	}
	res, err := b.db.ExecContext(sctx, `DELETE FROM snappea_failed`)
	err = b.writeErr(ctx, sctx, err)
	b.endTurn(cancel)
	if err != nil {
		return 0, fmt.Errorf("purge failed tasks: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge failed tasks: %w", err)
	}
	return int(n), nil
}

// PruneFailures deletes the records failed before before (zero: no age
// bound) and those beyond the newest keep (0: no count bound), and returns
// how many it deleted.
func (b *Backend) PruneFailures(ctx context.Context, before time.Time, keep int) (int, error) {
	if keep < 0 {
		return 0, fmt.Errorf("prune failed tasks: keep %d may not be negative (0 disables)", keep)
	}
	if before.IsZero() && keep == 0 {
		return 0, nil
	}
	var n int64
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		del := func(query string, arg any) error {
			res, err := tx.ExecContext(ctx, query, arg)
			if err != nil {
				return dbError(err)
			}
			m, err := res.RowsAffected()
			n += m
			return err
		}
		if !before.IsZero() {
			if err := del(`DELETE FROM snappea_failed WHERE failed_at < ?`, unixNano(before)); err != nil {
				return err
			}
		}
		if keep > 0 {
			return del(`DELETE FROM snappea_failed WHERE id IN
				(SELECT id FROM snappea_failed ORDER BY failed_at DESC, id DESC LIMIT -1 OFFSET ?)`, keep)
		}
		return nil
	}, false)
	if err != nil {
		return 0, fmt.Errorf("prune failed tasks: %w", err)
	}
	return int(n), nil
}

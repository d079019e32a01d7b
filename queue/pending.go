package queue

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// PendingTask is a task waiting in the queue, ready or delayed, without
// its arguments (they can hold secrets).
type PendingTask struct {
	ID          int64
	Task        string
	Priority    int
	Key         string    // "": none
	RunAt       time.Time // zero: ready to claim; else when it becomes due
	Attempt     int       // 1 for the first run
	MaxAttempts int       // 0 or 1: no retries
	EnqueuedAt  time.Time // when this attempt was enqueued
}

// Ready reports whether the task may be claimed now.
func (p PendingTask) Ready() bool { return p.RunAt.IsZero() }

// DefaultPendingLimit is how many tasks Pending lists when the filter
// gives no limit.
const DefaultPendingLimit = 100

// PendingFilter chooses the tasks Pending lists.
type PendingFilter struct {
	// Task, if set, lists only tasks of that name. The claim index does
	// not hold names: the scan reads past tasks of other names until it
	// has Limit of them.
	Task string
	// Delayed lists only the delayed tasks, not the ready ones.
	Delayed bool
	// Limit is the most tasks listed. Default DefaultPendingLimit.
	Limit int
	// Newest reverses the order: the task that would be claimed last
	// first.
	Newest bool
}

// Pending lists waiting tasks in the order the daemon takes them: ready
// tasks first, highest priority first and oldest first within one (the
// claim order), then delayed ones by due time. It reads the claim index in
// order and stops at the limit, so a large backlog costs no more than a
// small one.
func (q *Queue) Pending(ctx context.Context, f PendingFilter) ([]PendingTask, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("list pending tasks: limit %d is negative", f.Limit)
	}
	if f.Limit == 0 {
		f.Limit = DefaultPendingLimit
	}
	query, args := pendingSQL(f)
	rows, err := q.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", dbError(err))
	}
	defer rows.Close()
	out := []PendingTask{}
	for rows.Next() {
		var (
			p                PendingTask
			key              sql.NullString
			runAt, createdAt int64
		)
		if err := rows.Scan(&p.ID, &p.Task, &p.Priority, &key, &runAt, &p.Attempt, &p.MaxAttempts, &createdAt); err != nil {
			return nil, fmt.Errorf("list pending tasks: %w", err)
		}
		p.Key = key.String
		p.RunAt = unixTime(runAt)
		p.EnqueuedAt = time.Unix(0, createdAt)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", dbError(err))
	}
	return out, nil
}

// pendingSQL is the statement listing f's tasks and its arguments.
func pendingSQL(f PendingFilter) (string, []any) {
	query := `SELECT id, task, CAST(priority AS INTEGER), key, CAST(run_at AS INTEGER), CAST(attempt AS INTEGER),
		CAST(max_attempts AS INTEGER), CAST(created_at AS INTEGER) FROM snappea_tasks WHERE true`
	var args []any
	if f.Delayed {
		query += ` AND run_at > 0`
	}
	if f.Task != "" {
		query += ` AND task = ?`
		args = append(args, f.Task)
	}
	// The claim index's order (run_at, priority DESC, id), or its reverse:
	// no sort.
	if f.Newest {
		query += ` ORDER BY run_at DESC, priority, id DESC`
	} else {
		query += ` ORDER BY run_at, priority DESC, id`
	}
	return query + ` LIMIT ?`, append(args, f.Limit)
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/snappea/snappea/storage"
)

// Pending lists waiting tasks in the order the daemon takes them: ready
// tasks first, highest priority first and oldest first within one (the
// claim order), then delayed ones by due time. It reads the claim index in
// order and stops at the limit, so a large backlog costs no more than a
// small one.
func (b *Backend) Pending(ctx context.Context, f storage.PendingFilter) ([]storage.PendingTask, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("list pending tasks: limit %d is negative", f.Limit)
	}
	if f.Limit == 0 {
		f.Limit = storage.DefaultPendingLimit
	}
	query, args := pendingSQL(f)
	rows, err := b.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", dbError(err))
	}
	defer rows.Close()
	out := []storage.PendingTask{}
	for rows.Next() {
		var (
			p                storage.PendingTask
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
func pendingSQL(f storage.PendingFilter) (string, []any) {
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

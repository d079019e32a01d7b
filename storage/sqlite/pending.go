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
// small one. A page after f.After is read as up to three ranges of the
// index, each from where the cursor points (the rest of its run_at and
// priority, the rest of its run_at, the later run_ats), so that a deep
// page costs no more than the first.
func (b *Backend) Pending(ctx context.Context, f storage.PendingFilter) ([]storage.PendingTask, error) {
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", err)
	}
	if f.Limit == 0 {
		f.Limit = storage.DefaultPendingLimit
	}
	out := []storage.PendingTask{}
	for _, seg := range pendingSegments(f) {
		query, args := pendingSQL(f, seg, f.Limit-len(out))
		ps, err := b.pending(ctx, query, args)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
		if len(out) >= f.Limit {
			break
		}
	}
	return out, nil
}

func (b *Backend) pending(ctx context.Context, query string, args []any) ([]storage.PendingTask, error) {
	rows, err := b.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", dbError(err))
	}
	defer rows.Close()
	var out []storage.PendingTask
	for rows.Next() {
		var (
			p                storage.PendingTask
			key, serial      sql.NullString
			runAt, createdAt int64
		)
		if err := rows.Scan(&p.ID, &p.Task, &p.Priority, &key, &runAt, &p.Attempt, &p.MaxAttempts, &createdAt, &serial); err != nil {
			return nil, fmt.Errorf("list pending tasks: %w", err)
		}
		p.Key, p.SerialKey = key.String, serial.String
		p.RunAt = unixTime(runAt)
		p.EnqueuedAt = time.Unix(0, createdAt)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", dbError(err))
	}
	return out, nil
}

// segment is one range of the claim index after a cursor: a condition
// and its arguments.
type segment struct {
	cond string
	args []any
}

// pendingSegments are the ranges of the index f lists, in order: the
// whole index without a cursor, else those after it.
func pendingSegments(f storage.PendingFilter) []segment {
	c := f.After
	if c == nil {
		if f.Priority == nil {
			return []segment{{}}
		}
		// One priority: the ready ones are one range of the index in id
		// order, which a single statement would sort.
		if f.Newest {
			return []segment{{cond: ` AND run_at > 0`}, {cond: ` AND run_at = 0`}}
		}
		return []segment{{cond: ` AND run_at = 0`}, {cond: ` AND run_at > 0`}}
	}
	runAt := int64(0)
	if !c.RunAt.IsZero() {
		runAt = unixNano(c.RunAt)
	}
	// In claim order run_at rises, priority falls, id rises; Newest
	// walks the other way.
	idCmp, prioCmp, runCmp := ">", "<", ">"
	if f.Newest {
		idCmp, prioCmp, runCmp = "<", ">", "<"
	}
	first := segment{` AND run_at = ? AND priority = ? AND id ` + idCmp + ` ?`, []any{runAt, c.Priority, c.ID}}
	if f.Priority != nil {
		// The cursor's priority is the filter's: no other in its run_at.
		return []segment{first, {` AND run_at ` + runCmp + ` ?`, []any{runAt}}}
	}
	return []segment{
		first,
		{` AND run_at = ? AND priority ` + prioCmp + ` ?`, []any{runAt, c.Priority}},
		{` AND run_at ` + runCmp + ` ?`, []any{runAt}},
	}
}

// pendingSQL is the statement listing up to limit of f's tasks in seg,
// and its arguments.
func pendingSQL(f storage.PendingFilter, seg segment, limit int) (string, []any) {
	query := `SELECT id, task, CAST(priority AS INTEGER), key, CAST(run_at AS INTEGER), CAST(attempt AS INTEGER),
		CAST(max_attempts AS INTEGER), CAST(created_at AS INTEGER), serial_key FROM snappea_tasks WHERE true`
	var args []any
	if f.Delayed {
		query += ` AND run_at > 0`
	}
	if f.Ready {
		query += ` AND run_at = 0`
	}
	if f.Task != "" {
		query += ` AND task = ?`
		args = append(args, f.Task)
	}
	if f.Priority != nil {
		query += ` AND priority = ?`
		args = append(args, *f.Priority)
	}
	if f.Key != "" {
		query += ` AND key = ?`
		args = append(args, f.Key)
	}
	query += seg.cond
	args = append(args, seg.args...)
	// The claim index's order (run_at, priority DESC, id), or its reverse:
	// no sort.
	if f.Newest {
		query += ` ORDER BY run_at DESC, priority, id DESC`
	} else {
		query += ` ORDER BY run_at, priority DESC, id`
	}
	return query + ` LIMIT ?`, append(args, limit)
}

// CountPending counts the ready and the delayed tasks, each up to
// limit+1, in one statement. The oldest ready task is found in rowid order
// (NOT INDEXED: the claim index would have to be read whole for its
// smallest id), which stops at the first ready row: the delayed tasks
// older than it are all it passes over.
func (b *Backend) CountPending(ctx context.Context, limit int64) (storage.PendingCounts, error) {
	c := storage.PendingCounts{Limit: limit}
	if limit < 0 {
		return c, fmt.Errorf("count pending tasks: limit %d is negative", limit)
	}
	var oldestID, oldestAt sql.NullInt64
	err := b.db.QueryRowContext(ctx, countPendingSQL, limit+1, limit+1).Scan(&c.Ready, &c.Delayed, &oldestID, &oldestAt)
	if err != nil {
		return c, fmt.Errorf("count pending tasks: %w", dbError(err))
	}
	if oldestID.Valid {
		c.OldestID = oldestID.Int64
		c.OldestAt = time.Unix(0, oldestAt.Int64)
	}
	return c, nil
}

const countPendingSQL = `WITH oldest AS (SELECT id, created_at FROM snappea_tasks NOT INDEXED WHERE run_at = 0 ORDER BY id LIMIT 1)
	SELECT (SELECT count(*) FROM (SELECT 1 FROM snappea_tasks WHERE run_at = 0 LIMIT ?)),
	       (SELECT count(*) FROM (SELECT 1 FROM snappea_tasks WHERE run_at > 0 LIMIT ?)),
	       (SELECT id FROM oldest), (SELECT CAST(created_at AS INTEGER) FROM oldest)`

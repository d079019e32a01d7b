package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// The failed record.

func scanFailure(sc interface{ Scan(...any) error }) (snappea.Failure, error) {
	var f snappea.Failure
	var failedAt, timeout int64
	var args string
	err := sc.Scan(&f.ID, &f.TaskID, &f.Task, &args, &f.Error, &f.Attempts, &failedAt, &f.Priority,
		&f.MaxAttempts, &timeout)
	f.Args, f.FailedAt, f.Timeout = []byte(args), time.Unix(0, failedAt), time.Duration(timeout)
	return f, err
}

// Fail records t as failed for good.
func (b *Backend) Fail(ctx context.Context, t *snappea.Task, msg string, at time.Time) error {
	_, err := b.db.ExecContext(ctx, b.q.fail, t.ID, t.Name, string(t.Args), msg, max(t.Attempt, 1), unixNano(at),
		t.Priority, t.MaxAttempts, int64(t.Timeout))
	if err != nil {
		return fmt.Errorf("record failed task %d: %w", t.ID, b.err(err))
	}
	return nil
}

// Failures lists up to limit records, newest first; limit <= 0: all.
func (b *Backend) Failures(ctx context.Context, limit int) ([]snappea.Failure, error) {
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	rs, err := b.db.QueryContext(ctx, b.q.failures, lim)
	if err != nil {
		return nil, fmt.Errorf("list failed tasks: %w", b.err(err))
	}
	defer rs.Close()
	var fs []snappea.Failure
	for rs.Next() {
		f, err := scanFailure(rs)
		if err != nil {
			return nil, fmt.Errorf("list failed tasks: %w", b.err(err))
		}
		fs = append(fs, f)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list failed tasks: %w", b.err(err))
	}
	return fs, nil
}

// Failure is the record id.
func (b *Backend) Failure(ctx context.Context, id int64) (snappea.Failure, error) {
	f, err := scanFailure(b.db.QueryRowContext(ctx, b.q.failure, id))
	if errors.Is(err, sql.ErrNoRows) {
		return snappea.Failure{}, fmt.Errorf("read failed task %d: %w", id, snappea.ErrNotFound)
	}
	if err != nil {
		return snappea.Failure{}, fmt.Errorf("read failed task %d: %w", id, b.err(err))
	}
	return f, nil
}

// RetryFailures moves the record id (or all, id 0) back into the queue in
// one statement, and so one transaction.
func (b *Backend) RetryFailures(ctx context.Context, id int64, now time.Time) ([]int64, error) {
	if id != 0 {
		ids, err := b.retry(ctx, fmt.Sprintf("retry failed task %d", id), b.q.retryOne, id, unixNano(now), b.wakeChan)
		if err == nil && len(ids) == 0 {
			err = fmt.Errorf("retry failed task %d: %w", id, snappea.ErrNotFound)
		}
		return ids, err
	}
	return b.retry(ctx, "retry failed tasks", b.q.retryAll, unixNano(now), b.wakeChan)
}

// RetryFailuresOf moves the records of task name task back into the queue
// in one statement.
func (b *Backend) RetryFailuresOf(ctx context.Context, task string, now time.Time) ([]int64, error) {
	return b.retry(ctx, fmt.Sprintf("retry failed tasks of task %q", task), b.q.retryTask, unixNano(now), b.wakeChan, task)
}

// FailureCount counts the failure records.
func (b *Backend) FailureCount(ctx context.Context) (int64, error) {
	var n int64
	if err := b.db.QueryRowContext(ctx, b.q.failureCount).Scan(&n); err != nil {
		return 0, fmt.Errorf("count failed tasks: %w", b.err(err))
	}
	return n, nil
}

// retry runs one of the retry statements and returns the new tasks' ids.
func (b *Backend) retry(ctx context.Context, what, query string, args ...any) ([]int64, error) {
	rs, err := b.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, b.err(err))
	}
	defer rs.Close()
	ids := []int64{}
	for rs.Next() {
		var tid, woke int64
		if err := rs.Scan(&tid, &woke); err != nil {
			return nil, fmt.Errorf("%s: %w", what, b.err(err))
		}
		ids = append(ids, tid)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, b.err(err))
	}
	return ids, nil
}

// PurgeFailures deletes every record.
func (b *Backend) PurgeFailures(ctx context.Context) (int, error) {
	res, err := b.db.ExecContext(ctx, b.q.purge)
	if err != nil {
		return 0, fmt.Errorf("purge failed tasks: %w", b.err(err))
	}
	n, err := res.RowsAffected()
	return int(n), b.err(err)
}

// PruneFailures deletes the records failed before before and those beyond
// the newest keep, in one transaction.
func (b *Backend) PruneFailures(ctx context.Context, before time.Time, keep int) (int, error) {
	if keep < 0 {
		return 0, fmt.Errorf("prune failed tasks: keep %d is negative (0 disables)", keep)
	}
	if before.IsZero() && keep == 0 {
		return 0, nil
	}
	var n int64
	err := b.WriteTx(ctx, func(tx *sql.Tx) error {
		del := func(query string, arg any) error {
			res, err := tx.ExecContext(ctx, query, arg)
			if err != nil {
				return b.err(err)
			}
			m, err := res.RowsAffected()
			n += m
			return b.err(err)
		}
		if !before.IsZero() {
			if err := del(b.q.pruneAge, unixNano(before)); err != nil {
				return err
			}
		}
		if keep > 0 {
			return del(b.q.pruneCount, keep)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune failed tasks: %w", err)
	}
	return int(n), nil
}

// Schedules.

// Schedules lists the stored schedules by name.
func (b *Backend) Schedules(ctx context.Context, tx *sql.Tx) ([]snappea.ScheduleState, error) {
	var rs *sql.Rows
	var err error
	if tx != nil {
		// Locked until tx ends: another daemon's tick waits, and is then
		// seen by this one's compare-and-set.
		rs, err = tx.QueryContext(ctx, b.q.schedules+` FOR UPDATE`)
	} else {
		rs, err = b.db.QueryContext(ctx, b.q.schedules)
	}
	if err != nil {
		return nil, fmt.Errorf("read schedules: %w", b.err(err))
	}
	defer rs.Close()
	var out []snappea.ScheduleState
	for rs.Next() {
		var s snappea.ScheduleState
		var next int64
		var last sql.NullInt64
		if err := rs.Scan(&s.Name, &s.Spec, &s.Task, &next, &last); err != nil {
			return nil, fmt.Errorf("read schedules: %w", b.err(err))
		}
		s.Next, s.Last = unixTime(next), unixTime(last.Int64)
		out = append(out, s)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read schedules: %w", b.err(err))
	}
	return out, nil
}

// SaveSchedule creates or replaces a schedule's stored state.
func (b *Backend) SaveSchedule(ctx context.Context, tx *sql.Tx, s snappea.ScheduleState) error {
	var last any // NULL: none yet
	if !s.Last.IsZero() {
		last = unixNano(s.Last)
	}
	if _, err := b.on(tx).ExecContext(ctx, b.q.saveSchedule, s.Name, s.Spec, s.Task, unixNano(s.Next), last); err != nil {
		return fmt.Errorf("save schedule %s: %w", s.Name, b.err(err))
	}
	return nil
}

// TakeTick is the compare-and-set on next_run. Two daemons taking the
// same tick at once: the second's update waits for the first's row lock,
// then re-reads the row, finds next_run moved on and changes nothing.
func (b *Backend) TakeTick(ctx context.Context, tx *sql.Tx, name string, from, next, last time.Time) (bool, error) {
	res, err := b.on(tx).ExecContext(ctx, b.q.takeTick, unixNano(next), unixNano(last), name, unixNano(from))
	if err != nil {
		return false, fmt.Errorf("take the tick of schedule %s: %w", name, b.err(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("take the tick of schedule %s: %w", name, b.err(err))
	}
	return n == 1, nil
}

// Statistics.

// AddStats writes rows in one transaction; see storage.Backend.
func (b *Backend) AddStats(ctx context.Context, rows []snappea.StatsRow, before time.Time) error {
	if len(rows) == 0 && before.IsZero() {
		return nil
	}
	err := b.WriteTx(ctx, func(tx *sql.Tx) error {
		for _, r := range rows {
			m := snappea.MinuteOf(r.Minute)
			var err error
			if r.Task != "" {
				_, err = tx.ExecContext(ctx, b.q.addStats, m, r.Task, r.Count, r.Failures, int64(r.Total), int64(r.Max))
			} else {
				_, err = tx.ExecContext(ctx, b.q.addBacklog, m, r.Backlog)
			}
			if err != nil {
				return b.err(err)
			}
		}
		if !before.IsZero() {
			cut := snappea.MinuteOf(before)
			if _, err := tx.ExecContext(ctx, b.q.pruneStats, cut); err != nil {
				return b.err(err)
			}
			if _, err := tx.ExecContext(ctx, b.q.pruneBacklog, cut); err != nil {
				return b.err(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write task statistics: %w", err)
	}
	return nil
}

// ReadStats returns the rows of the minutes from the one containing since.
func (b *Backend) ReadStats(ctx context.Context, since time.Time) ([]snappea.StatsRow, error) {
	rs, err := b.db.QueryContext(ctx, b.q.readStats, snappea.MinuteOf(since))
	if err != nil {
		return nil, fmt.Errorf("read task statistics: %w", b.err(err))
	}
	defer rs.Close()
	var out []snappea.StatsRow
	for rs.Next() {
		var r snappea.StatsRow
		var minute, total, maxd int64
		if err := rs.Scan(&minute, &r.Task, &r.Count, &r.Failures, &total, &maxd, &r.Backlog); err != nil {
			return nil, fmt.Errorf("read task statistics: %w", b.err(err))
		}
		r.Minute, r.Total, r.Max = time.Unix(minute, 0), time.Duration(total), time.Duration(maxd)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read task statistics: %w", b.err(err))
	}
	return out, nil
}

// Daemons.

// RegisterDaemon adds d to the live daemons.
func (b *Backend) RegisterDaemon(ctx context.Context, d storage.Daemon) (int64, error) {
	var id int64
	err := b.db.QueryRowContext(ctx, b.q.register, d.Host, d.PID, d.Workers, d.Busy, d.Paused, d.Generation).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("register daemon %s:%d: %w", d.Host, d.PID, b.err(err))
	}
	return id, nil
}

// Heartbeat updates d's row, adding it again if it was removed.
func (b *Backend) Heartbeat(ctx context.Context, d storage.Daemon) error {
	if _, err := b.db.ExecContext(ctx, b.q.heartbeat, d.ID, d.Host, d.PID, d.Workers, d.Busy, d.Paused,
		d.Generation); err != nil {
		return fmt.Errorf("heartbeat of daemon %d: %w", d.ID, b.err(err))
	}
	return nil
}

// Daemons lists the registered daemons, marking Gone those whose last
// heartbeat is older than Config.DaemonGone by the database's clock.
func (b *Backend) Daemons(ctx context.Context) ([]storage.Daemon, error) {
	rs, err := b.db.QueryContext(ctx, b.q.daemons, b.cfg.DaemonGone.Seconds())
	if err != nil {
		return nil, fmt.Errorf("list daemons: %w", b.err(err))
	}
	defer rs.Close()
	var out []storage.Daemon
	for rs.Next() {
		var d storage.Daemon
		if err := rs.Scan(&d.ID, &d.Host, &d.PID, &d.Started, &d.Workers, &d.Busy, &d.Paused, &d.Generation,
			&d.LastSeen, &d.Gone); err != nil {
			return nil, fmt.Errorf("list daemons: %w", b.err(err))
		}
		out = append(out, d)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list daemons: %w", b.err(err))
	}
	return out, nil
}

// UnregisterDaemon removes daemon id.
func (b *Backend) UnregisterDaemon(ctx context.Context, id int64) error {
	if _, err := b.db.ExecContext(ctx, b.q.unregister, id); err != nil {
		return fmt.Errorf("unregister daemon %d: %w", id, b.err(err))
	}
	return nil
}

// RemoveGoneDaemons deletes the daemons whose last heartbeat is older
// than Config.DaemonRemove and returns how many.
func (b *Backend) RemoveGoneDaemons(ctx context.Context) (int, error) {
	res, err := b.db.ExecContext(ctx, b.q.removeGone, b.cfg.DaemonRemove.Seconds())
	if err != nil {
		return 0, fmt.Errorf("remove gone daemons: %w", b.err(err))
	}
	n, err := res.RowsAffected()
	return int(n), b.err(err)
}

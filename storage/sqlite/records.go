package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// Schedules.

// The statements on the schedules table. TakeTick's compare-and-set
// changes the row only if next_run is still the tick the caller saw due.
const (
	schedulesSQL    = `SELECT name, spec, task, next_run, last_run FROM snappea_schedules ORDER BY name`
	saveScheduleSQL = `INSERT INTO snappea_schedules (name, spec, task, next_run, last_run) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, task = excluded.task,
			next_run = excluded.next_run, last_run = excluded.last_run`
	takeTickSQL = `UPDATE snappea_schedules SET next_run = ?, last_run = ? WHERE name = ? AND next_run = ?`
)

// querier is a transaction or the database.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Schedules lists the stored schedules by name.
func (b *Backend) Schedules(ctx context.Context, tx *sql.Tx) ([]snappea.ScheduleState, error) {
	// A write transaction holds the database's write lock from its start
	// (IMMEDIATE): nothing changes the rows while it lasts.
	if tx != nil {
		return b.schedules(ctx, tx)
	}
	return b.schedules(ctx, b.db)
}

func (b *Backend) schedules(ctx context.Context, db querier) ([]snappea.ScheduleState, error) {
	rs, err := db.QueryContext(ctx, schedulesSQL)
	if err != nil {
		return nil, fmt.Errorf("read schedules: %w", dbError(err))
	}
	defer rs.Close()
	var out []snappea.ScheduleState
	for rs.Next() {
		var s snappea.ScheduleState
		var next int64
		var last sql.NullInt64
		if err := rs.Scan(&s.Name, &s.Spec, &s.Task, &next, &last); err != nil {
			return nil, fmt.Errorf("read schedules: %w", dbError(err))
		}
		s.Next, s.Last = unixTime(next), unixTime(last.Int64)
		out = append(out, s)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read schedules: %w", dbError(err))
	}
	return out, nil
}

// SaveSchedule creates or replaces a schedule's stored state, in tx if
// not nil, else in a write of its own.
func (b *Backend) SaveSchedule(ctx context.Context, tx *sql.Tx, s snappea.ScheduleState) error {
	var last any // NULL: none yet
	if !s.Last.IsZero() {
		last = unixNano(s.Last)
	}
	save := func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, saveScheduleSQL, s.Name, s.Spec, s.Task, unixNano(s.Next), last)
		return dbError(err)
	}
	var err error
	if tx != nil {
		err = save(tx)
	} else {
		err = b.writeTx(ctx, save, false)
	}
	if err != nil {
		return fmt.Errorf("save schedule %s: %w", s.Name, err)
	}
	return nil
}

// TakeTick moves schedule name's next tick from from to next, and its
// latest tick taken to last, if next is still from: SQLite's write lock,
// which tx holds, makes the compare-and-set exclusive.
func (b *Backend) TakeTick(ctx context.Context, tx *sql.Tx, name string, from, next, last time.Time) (bool, error) {
	take := func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, takeTickSQL, unixNano(next), unixNano(last), name, unixNano(from))
		if err != nil {
			return false, dbError(err)
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	var took bool
	var err error
	if tx != nil {
		took, err = take(tx)
	} else {
		err = b.writeTx(ctx, func(tx *sql.Tx) error { took, err = take(tx); return err }, false)
	}
	if err != nil {
		return false, fmt.Errorf("take the tick of schedule %s: %w", name, err)
	}
	return took, nil
}

// Statistics.

// The statements on the statistics tables. A minute may be written more
// than once (a flush at stop, then a restart within the same minute):
// writers add to its row.
const (
	addStatsSQL = `INSERT INTO snappea_stats (minute, task, finished, failures, total_ns, max_ns)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (minute, task) DO UPDATE SET
			finished = finished + excluded.finished,
			failures = failures + excluded.failures,
			total_ns = total_ns + excluded.total_ns,
			max_ns   = max(max_ns, excluded.max_ns)`
	addBacklogSQL = `INSERT INTO snappea_stats_backlog (minute, pending) VALUES (?, ?)
		ON CONFLICT (minute) DO UPDATE SET pending = excluded.pending`
	pruneStatsSQL   = `DELETE FROM snappea_stats WHERE minute < ?`
	pruneBacklogSQL = `DELETE FROM snappea_stats_backlog WHERE minute < ?`
	readStatsSQL    = `SELECT minute, task, finished, failures, total_ns, max_ns, coalesce(pending, -1) FROM (
			SELECT s.minute, s.task, s.finished, s.failures, s.total_ns, s.max_ns, b.pending
			FROM snappea_stats s LEFT JOIN snappea_stats_backlog b ON b.minute = s.minute
			WHERE s.minute >= ?1
			UNION ALL
			SELECT b.minute, '', 0, 0, 0, 0, b.pending
			FROM snappea_stats_backlog b
			WHERE b.minute >= ?1 AND NOT EXISTS (SELECT 1 FROM snappea_stats s WHERE s.minute = b.minute)
		)
		ORDER BY minute, task`
)

// AddStats writes rows in one transaction, in the writers' turn: a row
// with a Task adds its counts to its minute and task (Max: the larger), a
// row without sets its minute's backlog sample to Backlog. Minutes before
// before are then deleted (zero: none).
func (b *Backend) AddStats(ctx context.Context, rows []snappea.StatsRow, before time.Time) error {
	if len(rows) == 0 && before.IsZero() {
		return nil
	}
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		var add *sql.Stmt
		for _, r := range rows {
			m := snappea.MinuteOf(r.Minute)
			var err error
			if r.Task != "" {
				if add == nil {
					if add, err = tx.PrepareContext(ctx, addStatsSQL); err != nil {
						return dbError(err)
					}
					defer add.Close()
				}
				_, err = add.ExecContext(ctx, m, r.Task, r.Count, r.Failures, int64(r.Total), int64(r.Max))
			} else {
				_, err = tx.ExecContext(ctx, addBacklogSQL, m, r.Backlog)
			}
			if err != nil {
				return dbError(err)
			}
		}
		if !before.IsZero() {
			cut := snappea.MinuteOf(before)
			if _, err := tx.ExecContext(ctx, pruneStatsSQL, cut); err != nil {
				return dbError(err)
			}
			if _, err := tx.ExecContext(ctx, pruneBacklogSQL, cut); err != nil {
				return dbError(err)
			}
		}
		return nil
	}, false)
	if err != nil {
		return fmt.Errorf("write task statistics: %w", err)
	}
	return nil
}

// ReadStats returns the rows of the minutes from the one containing
// since, by minute then task; a minute with a backlog sample and no task
// is one row with Task "", and Backlog is -1 where no sample was taken.
func (b *Backend) ReadStats(ctx context.Context, since time.Time) ([]snappea.StatsRow, error) {
	rs, err := b.db.QueryContext(ctx, readStatsSQL, snappea.MinuteOf(since))
	if err != nil {
		return nil, fmt.Errorf("read task statistics: %w", dbError(err))
	}
	defer rs.Close()
	var out []snappea.StatsRow
	for rs.Next() {
		var r snappea.StatsRow
		var minute, total, maxd int64
		if err := rs.Scan(&minute, &r.Task, &r.Count, &r.Failures, &total, &maxd, &r.Backlog); err != nil {
			return nil, fmt.Errorf("read task statistics: %w", dbError(err))
		}
		r.Minute, r.Total, r.Max = time.Unix(minute, 0), time.Duration(total), time.Duration(maxd)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read task statistics: %w", dbError(err))
	}
	return out, nil
}

// Daemons.

// DaemonGone is how long after its last heartbeat a daemon is shown as
// gone; Maintenance removes it after DaemonRemove.
const (
	DaemonGone   = 15 * time.Second
	DaemonRemove = time.Hour
)

const (
	registerSQL = `INSERT INTO snappea_daemons (host, pid, started, workers, busy, paused, generation, last_seen)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`
	heartbeatSQL = `INSERT INTO snappea_daemons (id, host, pid, started, workers, busy, paused, generation, last_seen)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET workers = excluded.workers, busy = excluded.busy,
			paused = excluded.paused, generation = excluded.generation, last_seen = excluded.last_seen`
	daemonsSQL = `SELECT id, host, pid, started, workers, busy, paused, generation, last_seen
		FROM snappea_daemons ORDER BY id`
	unregisterSQL = `DELETE FROM snappea_daemons WHERE id = ?`
	removeGoneSQL = `DELETE FROM snappea_daemons WHERE last_seen < ?`
)

// RegisterDaemon adds d (its ID ignored) to the daemons and returns its id.
func (b *Backend) RegisterDaemon(ctx context.Context, d storage.Daemon) (int64, error) {
	var id int64
	now := time.Now().UnixNano()
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		return dbError(tx.QueryRowContext(ctx, registerSQL,
			d.Host, d.PID, now, d.Workers, d.Busy, d.Paused, d.Generation, now).Scan(&id))
	}, false)
	if err != nil {
		return 0, fmt.Errorf("register daemon %s:%d: %w", d.Host, d.PID, err)
	}
	return id, nil
}

// Heartbeat updates daemon d.ID's row, adding it again if it was removed.
func (b *Backend) Heartbeat(ctx context.Context, d storage.Daemon) error {
	now := time.Now().UnixNano()
	started := now
	if !d.Started.IsZero() {
		started = d.Started.UnixNano()
	}
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, heartbeatSQL, d.ID, d.Host, d.PID, started, d.Workers, d.Busy, d.Paused,
			d.Generation, now)
		return dbError(err)
	}, false)
	if err != nil {
		return fmt.Errorf("heartbeat of daemon %d: %w", d.ID, err)
	}
	return nil
}

// Daemons lists the registered daemons by id, those whose last heartbeat
// is older than DaemonGone marked Gone.
func (b *Backend) Daemons(ctx context.Context) ([]storage.Daemon, error) {
	rs, err := b.db.QueryContext(ctx, daemonsSQL)
	if err != nil {
		return nil, fmt.Errorf("read daemons: %w", dbError(err))
	}
	defer rs.Close()
	now := time.Now()
	var out []storage.Daemon
	for rs.Next() {
		var d storage.Daemon
		var started, seen int64
		if err := rs.Scan(&d.ID, &d.Host, &d.PID, &started, &d.Workers, &d.Busy, &d.Paused, &d.Generation,
			&seen); err != nil {
			return nil, fmt.Errorf("read daemons: %w", dbError(err))
		}
		d.Started, d.LastSeen = time.Unix(0, started), time.Unix(0, seen)
		d.Gone = now.Sub(d.LastSeen) > DaemonGone
		out = append(out, d)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read daemons: %w", dbError(err))
	}
	return out, nil
}

// UnregisterDaemon removes daemon id, at its stop.
func (b *Backend) UnregisterDaemon(ctx context.Context, id int64) error {
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, unregisterSQL, id)
		return dbError(err)
	}, false)
	if err != nil {
		return fmt.Errorf("unregister daemon %d: %w", id, err)
	}
	return nil
}

// removeGone deletes the daemons whose last heartbeat is older than
// DaemonRemove.
func (b *Backend) removeGone(ctx context.Context) error {
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, removeGoneSQL, time.Now().Add(-DaemonRemove).UnixNano())
		return dbError(err)
	}, false)
	if err != nil {
		return fmt.Errorf("remove gone daemons: %w", err)
	}
	return nil
}

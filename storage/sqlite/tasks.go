package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/migrations"
	"github.com/snappea/snappea/storage"
)

// The statements on the hot paths. Claim, next-due and promote are each
// one range of the claim index on (run_at, priority DESC, id); a test
// checks their plans.
const (
	// ON CONFLICT DO NOTHING: the only unique constraint a new row can
	// break is the key's (ids come from AUTOINCREMENT), so a pending key
	// makes the insert write nothing, under the write lock: two producers
	// can never both write one key.
	insertSQL = `INSERT INTO snappea_tasks
		(task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key, serial_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	// A task without options, the common case: the columns' defaults are
	// "no options", and binding three values instead of nine is measurably
	// cheaper in EnqueueMany.
	insertNewSQL = `INSERT INTO snappea_tasks (task, args, created_at) VALUES (?, ?, ?)`
	keyHolderSQL = `SELECT id FROM snappea_tasks WHERE key = ?`
	// A Row.Replace whose insert met its key's holder overwrites the
	// holder, in the same write transaction: the holder cannot be claimed
	// in between, and two producers' replaces of one key take turns, the
	// later one's row winning. run_at changes only with Reschedule (the
	// first parameter of the CASE).
	replaceSQL = `UPDATE snappea_tasks SET task = ?, args = ?, created_at = ?, priority = ?, attempt = ?,
		max_attempts = ?, timeout_ns = ?, serial_key = ?, run_at = CASE WHEN ? THEN ? ELSE run_at END
		WHERE key = ? RETURNING id`
	// modernc's SQLite is built without DELETE ... LIMIT, hence the
	// subquery. LIMIT ?+0, not LIMIT ?: SQLite reads a bare parameter's
	// value when it plans a LIMIT and then prepares the statement again
	// whenever a different value is bound, which a claim's count (the free
	// workers) nearly always is; that cost a fifth of the claim's time
	// (BenchmarkClaimVaryingN). An expression keeps one plan.
	claimSQL = `DELETE FROM snappea_tasks WHERE id IN
		(SELECT id FROM snappea_tasks WHERE run_at = 0 ORDER BY priority DESC, id LIMIT ?+0)
		RETURNING id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key`
	nextDueSQL = `SELECT min(run_at) FROM snappea_tasks WHERE run_at > 0`
	// Only integers: a run_at of another type is failed instead (see
	// readNextDue).
	promoteSQL = `UPDATE snappea_tasks SET run_at = 0 WHERE run_at > 0 AND run_at <= ? AND typeof(run_at) = 'integer'`
	// Bounded: counting stops at the limit's worth of index entries.
	countDueSQL = `SELECT count(*) FROM (SELECT 1 FROM snappea_tasks WHERE run_at <= ? LIMIT ?)`
	// At least the number of pending tasks, in two look-ups of the primary
	// key: ids are never reused.
	idSpanSQL = `SELECT coalesce((SELECT max(id) FROM snappea_tasks) - (SELECT min(id) FROM snappea_tasks) + 1, 0)`
)

// plain reports whether r has no options: the insertNew statement, which
// leaves every option column at its default, writes it.
func plain(r *storage.Row) bool {
	return r.Priority == 0 && r.RunAt.IsZero() && r.Attempt <= 1 && r.MaxAttempts == 0 && r.Timeout == 0 && r.Key == "" &&
		r.SerialKey == ""
}

// insertRow writes r with the statement that fits it.
func insertRow(ctx context.Context, st *stmts, r *storage.Row) (sql.Result, error) {
	args := nonNil(r.Args)
	if plain(r) {
		return st.get(ctx, &st.insertNew, st.b.insertNew).ExecContext(ctx, r.Task, args, r.CreatedAt.UnixNano())
	}
	var key any // NULL
	if r.Key != "" {
		key = r.Key
	}
	var serial any // NULL
	if r.SerialKey != "" {
		serial = r.SerialKey
	}
	var runAt int64 // 0: ready
	if !r.RunAt.IsZero() {
		runAt = unixNano(r.RunAt)
	}
	return st.get(ctx, &st.insert, st.b.insert).ExecContext(ctx, r.Task, args, r.CreatedAt.UnixNano(), r.Priority,
		runAt, max(r.Attempt, 1), r.MaxAttempts, int64(r.Timeout), key, serial)
}

// stmts are the backend's statements for writing rows: as prepared, or,
// in a transaction, bound to it, each once, when first used.
type stmts struct {
	b                                     *Backend
	tx                                    *sql.Tx // nil: autocommit
	insert, insertNew, keyHolder, replace *sql.Stmt
}

func (s *stmts) get(ctx context.Context, bound **sql.Stmt, stmt *sql.Stmt) *sql.Stmt {
	if *bound == nil {
		*bound = stmt
		if s.tx != nil {
			*bound = s.tx.StmtContext(ctx, stmt)
		}
	}
	return *bound
}

// Insert writes rows, in order, and returns what became of each. Without
// tx it commits them, all or none, and wakes the daemon unless every row
// was a duplicate; with tx the caller calls Wake after the commit. A row
// with a Key that a pending task (ready or delayed) already holds is not
// written: its Inserted is that task's id, with Duplicate set; or, with
// Replace, it overwrites that task, with Replaced set (so several rows of
// one key in one call end as the last Replace row of them). A replace
// wakes the daemon too, whose next due time may have moved. A single
// row without a key is one autocommit statement: no BEGIN/COMMIT round
// trips, and SQLite takes the write lock (with the busy timeout) at its
// start.
func (b *Backend) Insert(ctx context.Context, tx *sql.Tx, rows []storage.Row) ([]storage.Inserted, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	out := make([]storage.Inserted, len(rows))
	now := time.Now()
	if tx != nil {
		if err := b.checkGone(now); err != nil {
			return nil, fmt.Errorf("%s: %w", enqueueWhat(rows), err)
		}
		if err := writeRows(ctx, &stmts{b: b, tx: tx}, rows, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	if len(rows) == 1 && rows[0].Key == "" {
		sctx, cancel, err := b.turn(ctx, now)
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", rows[0].Task, err)
		}
		out[0], err = write(sctx, &stmts{b: b}, &rows[0])
		if err != nil && ctx.Err() == nil && sctx.Err() != nil {
			err = fmt.Errorf("enqueue %s: %w", rows[0].Task, b.busyTimedOut(err))
		}
		b.endTurn(cancel)
		if err != nil {
			return nil, err
		}
	} else {
		// The inserts and, for a duplicate, the look-up of the key's
		// holder in one transaction, so the id returned is the holder's
		// even if the daemon claims it meanwhile.
		var werr error
		err := b.writeTx(ctx, func(tx *sql.Tx) error {
			werr = writeRows(ctx, &stmts{b: b, tx: tx}, rows, out)
			return werr
		}, false)
		if err != nil && err != werr && len(rows) == 1 {
			err = fmt.Errorf("enqueue %s: %w", rows[0].Task, err)
		}
		if err != nil {
			return nil, err
		}
	}
	for i := range out {
		if !out[i].Duplicate {
			b.wake()
			break
		}
	}
	return out, nil
}

// enqueueWhat names what an Insert of rows enqueues, for its errors.
func enqueueWhat(rows []storage.Row) string {
	if len(rows) == 1 {
		return "enqueue " + rows[0].Task
	}
	return "enqueue"
}

// writeRows inserts rows with st, saying in out what became of each.
func writeRows(ctx context.Context, st *stmts, rows []storage.Row, out []storage.Inserted) error {
	for i := range rows {
		var err error
		if out[i], err = write(ctx, st, &rows[i]); err != nil {
			return err
		}
	}
	return nil
}

// unixNano is t.UnixNano, pinned to the int64 range (years 1678 to 2262)
// where that is undefined.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// write inserts r, reporting a duplicate key. For a row with a key, st
// must be in a transaction (or r the only statement there is), so that
// the holder found is the one the insert ran into.
func write(ctx context.Context, st *stmts, r *storage.Row) (storage.Inserted, error) {
	res, err := insertRow(ctx, st, r)
	if err != nil {
		return storage.Inserted{}, fmt.Errorf("enqueue %s: %w", r.Task, dbError(err))
	}
	if r.Key != "" {
		n, err := res.RowsAffected()
		if err != nil {
			return storage.Inserted{}, fmt.Errorf("enqueue %s: %w", r.Task, err)
		}
		if n == 0 && r.Replace {
			return replace(ctx, st, r)
		}
		if n == 0 {
			var id int64
			if err := st.get(ctx, &st.keyHolder, st.b.keyHolder).QueryRowContext(ctx, r.Key).Scan(&id); err != nil {
				return storage.Inserted{}, fmt.Errorf("enqueue %s: find the task holding its key: %w", r.Task, dbError(err))
			}
			return storage.Inserted{ID: id, Duplicate: true}, nil
		}
	}
	id, err := res.LastInsertId()
	if err != nil {
		return storage.Inserted{}, fmt.Errorf("enqueue %s: %w", r.Task, err)
	}
	return storage.Inserted{ID: id}, nil
}

// replace overwrites the pending task holding r's key with r, whose insert
// met it in st's transaction.
func replace(ctx context.Context, st *stmts, r *storage.Row) (storage.Inserted, error) {
	var runAt int64 // 0: ready
	if !r.RunAt.IsZero() {
		runAt = unixNano(r.RunAt)
	}
	var serial any // NULL
	if r.SerialKey != "" {
		serial = r.SerialKey
	}
	var id int64
	err := st.get(ctx, &st.replace, st.b.replace).QueryRowContext(ctx, r.Task, nonNil(r.Args), r.CreatedAt.UnixNano(),
		r.Priority, max(r.Attempt, 1), r.MaxAttempts, int64(r.Timeout), serial, r.Reschedule, runAt, r.Key).Scan(&id)
	if err != nil {
		return storage.Inserted{}, fmt.Errorf("enqueue %s: replace the task holding its key: %w", r.Task, dbError(err))
	}
	return storage.Inserted{ID: id, Replaced: true}, nil
}

// Claim deletes up to n of the ready tasks, highest priority first and
// oldest first within a priority, and returns them in that order. The
// delete commits before Claim returns, so every task it returns is gone
// from the queue: run it or lose it, never run it twice. Delayed tasks are
// not claimed until Promote has made them ready.
//
// A row that cannot be run as a task (a column of the wrong type, written
// by another program into a table that is not STRICT, or arguments larger
// than Config.MaxArgsSize) is returned all the same, with Err set to an
// error matching snappea.ErrBadRow: it must be failed, not run. One bad row never
// costs the others claimed with it.
func (b *Backend) Claim(ctx context.Context, n int) ([]snappea.Task, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := b.writeMu.Lock(ctx); err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	defer b.writeMu.Unlock()
	// One autocommit statement: SQLite deletes every row during the first
	// step, buffers the RETURNING rows, and commits when the statement
	// finishes. A failed commit surfaces in rows.Err, and then the tasks
	// read are dropped here (their rows were rolled back and stay queued),
	// so nothing is handed out that is not deleted for good.
	rows, err := b.claim.QueryContext(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", dbError(err))
	}
	tasks, err := b.scanClaimed(rows, n)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	return tasks, nil
}

// scanClaimed reads the rows a claim returned (see taskFromRow for the
// columns), at most n, closes them and sorts the tasks in claim order.
func (b *Backend) scanClaimed(rows *sql.Rows, n int) ([]snappea.Task, error) {
	// Not sized by n alone: n is the free worker slots, which may be far
	// more than the tasks waiting. Up to claimPrealloc rows fill it without
	// a copy; more grow it by the rows returned.
	tasks := make([]snappea.Task, 0, min(n, claimPrealloc))
	// Every column is scanned into an any, which cannot fail whatever the
	// row holds (a failed Scan would leave rows deleted and never handed
	// out), and converted per row.
	var cols [10]any
	var args argsColumn
	dest := []any{&cols[0], &cols[1], &args, &cols[3], &cols[4], &cols[5], &cols[6], &cols[7], &cols[8], &cols[9]}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			// Not expected with *any destinations; the row is deleted, so it
			// is handed out as a bad one rather than lost without a word.
			// The error is not quoted: conversion errors quote values.
			tasks = append(tasks, snappea.Task{Err: fmt.Errorf("%w: the row could not be read", snappea.ErrBadRow)})
			continue
		}
		tasks = append(tasks, b.taskFromRow(&cols, &args))
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, dbError(err)
	}
	if err := rows.Close(); err != nil {
		return nil, dbError(err)
	}
	// RETURNING gives no order.
	slices.SortFunc(tasks, func(a, b snappea.Task) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return tasks, nil
}

// claimPrealloc is the most task slots a claim allocates before it has
// rows to put in them.
const claimPrealloc = 256

// taskFromRow converts the claim's columns (id, task, args, created_at,
// priority, attempt, max_attempts, timeout_ns, key) into a Task, the
// args column from args rather than c[2]. A column
// of the wrong type sets Err, naming the first such column and the type it
// should have, never the value; the columns that do convert are kept, for
// the failure record.
func (b *Backend) taskFromRow(c *[10]any, args *argsColumn) snappea.Task {
	var t snappea.Task
	var bad []string
	integer := func(name string, v any, unit string) int64 {
		if n, ok := v.(int64); ok {
			return n
		}
		bad = append(bad, badColumn(name, v, "INTEGER"+unit))
		return 0
	}
	t.ID = integer("id", c[0], "")
	switch v := c[1].(type) {
	case string:
		t.Name = v
	default:
		bad = append(bad, badColumn("task", v, "TEXT (the task name)"))
	}
	if args.ok {
		t.Args = args.b
	} else {
		bad = append(bad, badColumn("args", args.other, "TEXT or BLOB (JSON)"))
	}
	t.EnqueuedAt = time.Unix(0, integer("created_at", c[3], " (Unix nanoseconds)"))
	t.Priority = int(integer("priority", c[4], ""))
	t.Attempt = int(integer("attempt", c[5], ""))
	t.MaxAttempts = int(integer("max_attempts", c[6], ""))
	t.Timeout = time.Duration(integer("timeout_ns", c[7], " (nanoseconds)"))
	switch v := c[8].(type) {
	case nil:
	case string:
		t.Key = v
	default:
		bad = append(bad, badColumn("key", v, "TEXT or NULL"))
	}
	if v, ok := c[9].(string); ok {
		t.SerialKey = v
	}
	switch {
	case len(bad) > 0:
		t.Err = fmt.Errorf("%w: %s", snappea.ErrBadRow, strings.Join(bad, "; "))
	case len(t.Args) > b.cfg.MaxArgsSize:
		t.Err = fmt.Errorf("%w: arguments are %d bytes, over the limit of %d (MaxArgsSize)",
			snappea.ErrBadRow, len(t.Args), b.cfg.MaxArgsSize)
	}
	return t
}

// argsColumn scans the args column whatever it holds: a blob or text is
// copied into b (the driver reuses its memory) and ok set; any other value
// is kept in other, to name its type. A Scanner rather than an *any,
// which would box the copy: one allocation per task less.
type argsColumn struct {
	b     []byte
	ok    bool
	other any
}

func (a *argsColumn) Scan(src any) error {
	*a = argsColumn{ok: true}
	switch v := src.(type) {
	case []byte:
		a.b = bytes.Clone(v)
	case string:
		a.b = []byte(v)
	default:
		a.ok = false
		a.other = src
	}
	return nil
}

// badColumn says that column holds a value of the wrong type: its SQLite
// type, never the value, which may be a secret.
func badColumn(column string, v any, want string) string {
	return fmt.Sprintf("column %s is %s, want %s", column, sqliteType(v), want)
}

// sqliteType names the SQLite storage class of a value as the driver
// returns it.
func sqliteType(v any) string {
	switch v.(type) {
	case nil:
		return "NULL"
	case int64:
		return "INTEGER"
	case float64:
		return "REAL"
	case string:
		return "TEXT"
	case []byte:
		return "BLOB"
	}
	return fmt.Sprintf("%T", v)
}

// Promote makes every delayed task due at or before now ready to claim,
// and returns when the next delayed task is due (the zero time if none is
// left). The daemon calls it before claiming and sleeps no longer than
// until next. When nothing is due it only reads, without the write lock.
func (b *Backend) Promote(ctx context.Context, now time.Time) (next time.Time, err error) {
	due, err := b.readNextDue(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if due == 0 || due > unixNano(now) {
		return unixTime(due), nil
	}
	if err := b.writeMu.Lock(ctx); err != nil {
		return time.Time{}, fmt.Errorf("promote due tasks: %w", err)
	}
	_, err = b.promote.ExecContext(ctx, unixNano(now))
	b.writeMu.Unlock()
	if err != nil {
		return time.Time{}, fmt.Errorf("promote due tasks: %w", dbError(err))
	}
	due, err = b.readNextDue(ctx)
	if err != nil {
		return time.Time{}, err
	}
	return unixTime(due), nil
}

// readNextDue returns the earliest run_at of the delayed tasks, 0 if none.
// A run_at that is not an integer (a REAL such as Python's time.time(), or
// TEXT), which only a table that is not STRICT holds, would otherwise be
// the earliest forever: those rows are failed first (see failBadRunAt).
func (b *Backend) readNextDue(ctx context.Context) (int64, error) {
	for swept := false; ; swept = true {
		var due any
		if err := b.nextDue.QueryRowContext(ctx).Scan(&due); err != nil {
			return 0, fmt.Errorf("read next due task: %w", dbError(err))
		}
		switch v := due.(type) {
		case nil:
			return 0, nil
		case int64:
			return v, nil
		}
		if swept {
			return 0, fmt.Errorf("read next due task: run_at is %s, want INTEGER, after failing such rows", sqliteType(due))
		}
		if err := b.failBadRunAt(ctx); err != nil {
			return 0, err
		}
	}
}

// badRowSQL says what is wrong with a snappea_tasks row, as migration 0005
// does and in its words: the first column of the wrong type, never the
// value.
const badRowSQL = `'bad task row: ' || CASE
	WHEN typeof(task) <> 'text' THEN 'column task is ' || upper(typeof(task)) || ', want TEXT (the task name)'
	WHEN typeof(args) NOT IN ('text', 'blob') THEN 'column args is ' || upper(typeof(args)) || ', want TEXT or BLOB (JSON)'
	WHEN typeof(created_at) <> 'integer' THEN 'column created_at is ' || upper(typeof(created_at)) || ', want INTEGER (Unix nanoseconds)'
	WHEN typeof(priority) <> 'integer' THEN 'column priority is ' || upper(typeof(priority)) || ', want INTEGER'
	WHEN typeof(run_at) <> 'integer' THEN 'column run_at is ' || upper(typeof(run_at)) || ', want INTEGER (0, or Unix nanoseconds)'
	WHEN typeof(attempt) <> 'integer' THEN 'column attempt is ' || upper(typeof(attempt)) || ', want INTEGER'
	WHEN typeof(max_attempts) <> 'integer' THEN 'column max_attempts is ' || upper(typeof(max_attempts)) || ', want INTEGER'
	WHEN typeof(timeout_ns) <> 'integer' THEN 'column timeout_ns is ' || upper(typeof(timeout_ns)) || ', want INTEGER (nanoseconds)'
	ELSE 'column key is ' || upper(typeof(key)) || ', want TEXT or NULL'
END`

// badRunAtSQL selects the delayed rows whose run_at is not an integer
// (TEXT and BLOB sort after every number, so they are > 0 too).
const badRunAtSQL = `run_at > 0 AND typeof(run_at) <> 'integer'`

// failBadRunAt moves the delayed rows whose run_at is not an integer into
// the failed tasks, each with an error naming the column, in one
// transaction. It scans the delayed rows, but runs only when such a row
// has been seen. The run_at unit is not guessed: a REAL may be seconds or
// nanoseconds, and running a task at a time nobody asked for is worse than
// a failure record an operator can retry.
func (b *Backend) failBadRunAt(ctx context.Context) error {
	var n int64
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO snappea_failed
			(task_id, task, args, error, attempts, failed_at, priority, max_attempts, timeout_ns)
			SELECT id,
			       CASE WHEN typeof(task) = 'text' THEN task ELSE '' END,
			       CASE WHEN typeof(args) IN ('text', 'blob') THEN args ELSE X'' END,
			       `+badRowSQL+`,
			       CASE WHEN typeof(attempt) = 'integer' THEN max(attempt, 1) ELSE 1 END,
			       ?,
			       CASE WHEN typeof(priority) = 'integer' THEN priority ELSE 0 END,
			       CASE WHEN typeof(max_attempts) = 'integer' THEN max(max_attempts, 0) ELSE 0 END,
			       CASE WHEN typeof(timeout_ns) = 'integer' THEN max(timeout_ns, 0) ELSE 0 END
			FROM snappea_tasks WHERE `+badRunAtSQL, time.Now().UnixNano())
		if err != nil {
			return dbError(err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM snappea_tasks WHERE `+badRunAtSQL)
		if err != nil {
			return dbError(err)
		}
		n, err = res.RowsAffected()
		return err
	}, false)
	if err != nil {
		return fmt.Errorf("fail delayed tasks whose run_at is not an integer: %w", err)
	}
	b.log.Warn("delayed tasks whose run_at is not an integer (Unix nanoseconds) were failed, not run; see snappea failed list",
		"count", n)
	return nil
}

// unixTime is time.Unix(0, ns), but the zero time for 0.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Cancel deletes the pending task id, ready or delayed, so that it never

// Cancel deletes the pending task id, ready or delayed, so that it never
// runs. It reports false if there was none: it was never enqueued, or it
// has been claimed (it is running or has run) or cancelled already.
func (b *Backend) Cancel(ctx context.Context, id int64) (bool, error) {
	sctx, cancel, err := b.turn(ctx, time.Now())
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, err)
	}
	res, err := b.db.ExecContext(sctx, `DELETE FROM snappea_tasks WHERE id = ?`, id)
	err = b.writeErr(ctx, sctx, err)
	b.endTurn(cancel)
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, err)
	}
	return n > 0, nil
}

// nonNil keeps the NOT NULL args column satisfied by a task built without
// arguments.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Stats counts the pending tasks and the age of the oldest ready one. The
// age of a task that was delayed counts from its enqueue, its delay
// included.
func (b *Backend) Stats(ctx context.Context) (snappea.QueueStats, error) {
	var s snappea.QueueStats
	// any: a table that is not STRICT may hold a run_at or created_at of
	// another type, and status must still answer. Such a value counts as
	// no due time, no age.
	var nextDue, oldestID, oldestAt any
	// One statement: one consistent snapshot, without a transaction (ours
	// begin IMMEDIATE, taking the write lock).
	err := b.db.QueryRowContext(ctx, `WITH oldest AS (SELECT min(id) AS id FROM snappea_tasks WHERE run_at = 0)
		SELECT (SELECT count(*) FROM snappea_tasks WHERE run_at = 0),
		       (SELECT count(*) FROM snappea_tasks WHERE run_at > 0),
		       (SELECT min(run_at) FROM snappea_tasks WHERE run_at > 0),
		       oldest.id,
		       (SELECT created_at FROM snappea_tasks WHERE id = oldest.id)
		FROM oldest`).
		Scan(&s.Ready, &s.Delayed, &nextDue, &oldestID, &oldestAt)
	if err != nil {
		return s, fmt.Errorf("read queue stats: %w", dbError(err))
	}
	s.Pending = s.Ready + s.Delayed
	if ns, ok := nextDue.(int64); ok {
		s.NextDue = unixTime(ns)
	}
	if id, ok := oldestID.(int64); ok {
		s.OldestID = id
		if ns, ok := oldestAt.(int64); ok {
			s.OldestAge = max(time.Since(time.Unix(0, ns)), 0)
		}
	}
	s.SchemaVersion, err = migrations.Version(ctx, b.db)
	return s, err
}

// dbError marks SQLite's busy and read-only failures with snappea.ErrBusy and

// Backlog counts the tasks due at now, up to limit+1 of them. With exact
// false it first reads the span of the pending ids, at least the number
// of pending tasks in two look-ups of the primary key, and answers with
// it, as not exact, when it is within limit.
func (b *Backend) Backlog(ctx context.Context, now time.Time, limit int64, exact bool) (int64, bool, error) {
	if !exact {
		var span int64
		if err := b.idSpan.QueryRowContext(ctx).Scan(&span); err != nil {
			return 0, false, fmt.Errorf("count the backlog: %w", dbError(err))
		}
		if span <= limit {
			return span, false, nil
		}
	}
	var count int64
	if err := b.countDue.QueryRowContext(ctx, unixNano(now), limit+1).Scan(&count); err != nil {
		return 0, false, fmt.Errorf("count the backlog: %w", dbError(err))
	}
	return count, true, nil
}

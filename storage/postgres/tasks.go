package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// unixNano is t.UnixNano, 0 for the zero time, pinned to the int64 range
// (years 1678 to 2262) where that is undefined.
func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
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

// unixTime is time.Unix(0, ns), but the zero time for 0.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (b *Backend) on(tx *sql.Tx) execer {
	if tx != nil {
		return tx
	}
	return b.db
}

// insertChunk is the most rows one statement writes. A larger call is
// written in chunks of it, in one transaction: arrays of this size keep
// each statement's memory and plan small, and past it a bigger chunk
// gains nothing.
const insertChunk = 5000

// Insert writes rows, all or none, and notifies the daemons: the
// notification is delivered when the rows commit (at once without tx, at
// the caller's commit in tx), so Wake is not needed. Up to insertChunk
// rows are one statement; more are several. Without tx, copyMin rows or
// more are written in a transaction of the backend's own. A duplicate key (held by a pending task, or by
// an earlier row of the same call) writes nothing for that row and reports
// the holder; with Row.Replace it overwrites the holder instead. A call
// of several rows with a Replace among them is written a row at a time,
// in order (one statement cannot update a row twice), so that several
// rows of one key end as the last Replace row of them.
func (b *Backend) Insert(ctx context.Context, tx *sql.Tx, rows []storage.Row) ([]storage.Inserted, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	n := len(rows)
	var out []storage.Inserted
	var err error
	switch {
	case n == 1:
		out, err = b.insertOne(ctx, tx, &rows[0])
	case replacing(rows) && tx == nil:
		err = b.WriteTx(ctx, func(tx *sql.Tx) error {
			var err error
			out, err = b.insertEach(ctx, tx, rows)
			return err
		})
	case replacing(rows):
		out, err = b.insertEach(ctx, tx, rows)
	case slices.ContainsFunc(rows, func(r storage.Row) bool { return r.SerialKey != "" }):
		// Rows with serial keys, rare in a batch, one statement each (the
		// batch statements have no serial key column).
		each := func(tx *sql.Tx) error {
			for i := range rows {
				o, err := b.insertOne(ctx, tx, &rows[i])
				if err != nil {
					return err
				}
				out = append(out, o...)
			}
			return nil
		}
		if tx != nil {
			err = each(tx)
		} else {
			err = b.WriteTx(ctx, each)
		}
	case tx == nil && n >= copyMin:
		// Several statements need a transaction to be all or none, and COPY
		// needs one.
		err = b.WriteTx(ctx, func(tx *sql.Tx) error {
			var err error
			out, err = b.insertChunks(ctx, tx, rows)
			return err
		})
	default:
		out, err = b.insertChunks(ctx, tx, rows)
	}
	if err != nil {
		return nil, fmt.Errorf("enqueue %d task(s): %w", n, b.err(err))
	}
	if len(out) != n {
		return nil, fmt.Errorf("enqueue %d task(s): the database returned %d results", n, len(out))
	}
	if err := b.resolveHolders(ctx, tx, rows, out); err != nil {
		return nil, err
	}
	return out, nil
}

// resolveHolders fills in the holders that the statements' snapshots did
// not see: an earlier row of the same statement, or a task committed by
// another producer while the statement ran. The first come from out; the
// others are read in one statement.
func (b *Backend) resolveHolders(ctx context.Context, tx *sql.Tx, rows []storage.Row, out []storage.Inserted) error {
	var written map[string]int64 // key -> id, of the rows written by this call
	var missing []string
	for i := range out {
		if !out[i].Duplicate || out[i].ID != 0 {
			continue
		}
		if written == nil {
			written = make(map[string]int64)
			for j := range out {
				if !out[j].Duplicate && rows[j].Key != "" {
					written[rows[j].Key] = out[j].ID
				}
			}
		}
		if id, ok := written[rows[i].Key]; ok {
			out[i].ID = id
			continue
		}
		missing = append(missing, rows[i].Key)
	}
	if len(missing) == 0 {
		return nil
	}
	rs, err := b.on(tx).QueryContext(ctx, b.q.keyHolders, missing)
	if err != nil {
		return fmt.Errorf("enqueue %d task(s): find the tasks holding their keys: %w", len(rows), b.err(err))
	}
	defer rs.Close()
	holders := make(map[string]int64, len(missing))
	for rs.Next() {
		var key string
		var id int64
		if err := rs.Scan(&key, &id); err != nil {
			return fmt.Errorf("enqueue %d task(s): find the tasks holding their keys: %w", len(rows), b.err(err))
		}
		holders[key] = id
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("enqueue %d task(s): find the tasks holding their keys: %w", len(rows), b.err(err))
	}
	// A key without a holder now: the holder was claimed meanwhile; the row
	// was a duplicate when written, and its id stays 0.
	for i := range out {
		if out[i].Duplicate && out[i].ID == 0 {
			out[i].ID = holders[rows[i].Key]
		}
	}
	return nil
}

// Claim deletes up to n ready tasks, by priority then id, in one
// statement, and returns them in that order. FOR UPDATE SKIP LOCKED lets
// any number of daemons claim at once: each row is deleted by exactly one
// of them, and a claim never waits for another's.
func (b *Backend) Claim(ctx context.Context, n int) ([]snappea.Task, error) {
	if n <= 0 {
		return nil, nil
	}
	rs, err := b.db.QueryContext(ctx, b.q.claim, n)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", b.err(err))
	}
	tasks, err := b.scanClaimed(rs, n)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	return tasks, nil
}

// scanClaimed reads the rows a claim returned, at most n, closes them and
// sorts the tasks in claim order. An error means the statement rolled
// back: nothing was claimed.
func (b *Backend) scanClaimed(rs *sql.Rows, n int) ([]snappea.Task, error) {
	tasks := make([]snappea.Task, 0, min(n, 256))
	for rs.Next() {
		var (
			t                snappea.Task
			created, timeout int64
			key, serial      sql.NullString
		)
		if err := rs.Scan(&t.ID, &t.Name, &t.Args, &created, &t.Priority, &t.Attempt, &t.MaxAttempts,
			&timeout, &key, &serial); err != nil {
			// The columns' types are the table's own, so this is not
			// expected; the row is deleted, so it is handed out as a bad one
			// rather than lost without a word.
			t.Err = fmt.Errorf("%w: the row could not be read", snappea.ErrBadRow)
		}
		t.EnqueuedAt, t.Timeout, t.Key, t.SerialKey = time.Unix(0, created), time.Duration(timeout), key.String, serial.String
		if t.Err == nil && len(t.Args) > b.cfg.MaxArgsSize {
			t.Err = fmt.Errorf("%w: arguments are %d bytes, over the limit of %d (MaxArgsSize)",
				snappea.ErrBadRow, len(t.Args), b.cfg.MaxArgsSize)
		}
		tasks = append(tasks, t)
	}
	if err := rs.Err(); err != nil {
		// The statement failed, so it rolled back: nothing was deleted.
		rs.Close()
		return nil, b.err(err)
	}
	if err := rs.Close(); err != nil {
		return nil, b.err(err)
	}
	b.claimed.Add(int64(len(tasks)))
	sortClaimed(tasks)
	return tasks, nil
}

// sortClaimed puts tasks in claim order: RETURNING gives no order.
// Insertion sort: the rows usually come back in order already.
func sortClaimed(ts []snappea.Task) {
	less := func(a, b *snappea.Task) bool {
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.ID < b.ID
	}
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && less(&ts[j], &ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// Promote makes the delayed tasks due at or before now ready and returns
// when the next one is due, in one statement.
func (b *Backend) Promote(ctx context.Context, now time.Time) (time.Time, error) {
	var promoted int64
	var next sql.NullInt64
	if err := b.db.QueryRowContext(ctx, b.q.promote, max(unixNano(now), 1)).Scan(&promoted, &next); err != nil {
		return time.Time{}, fmt.Errorf("promote due tasks: %w", b.err(err))
	}
	return unixTime(next.Int64), nil
}

// Cancel deletes the pending task id.
func (b *Backend) Cancel(ctx context.Context, id int64) (bool, error) {
	res, err := b.db.ExecContext(ctx, b.q.cancel, id)
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, b.err(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, b.err(err))
	}
	return n > 0, nil
}

// RequestCancel notifies every daemon's Waker of the cancel channel with
// id; the one running the task cancels it.
func (b *Backend) RequestCancel(ctx context.Context, id int64) error {
	if _, err := b.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, b.cancChan, fmt.Sprint(id)); err != nil {
		return fmt.Errorf("request cancel of task %d: %w", id, b.err(err))
	}
	return nil
}

// Stats is a snapshot of the pending tasks, in one statement.
func (b *Backend) Stats(ctx context.Context) (snappea.QueueStats, error) {
	var s snappea.QueueStats
	var next, oldestID, oldestAt sql.NullInt64
	err := b.db.QueryRowContext(ctx, b.q.stats).Scan(&s.Ready, &s.Delayed, &next, &oldestID, &oldestAt, &s.SchemaVersion)
	if err != nil {
		return s, fmt.Errorf("read queue stats: %w", b.err(err))
	}
	s.Pending = s.Ready + s.Delayed
	s.NextDue = unixTime(next.Int64)
	s.OldestID = oldestID.Int64
	if oldestAt.Valid {
		s.OldestAge = max(time.Since(time.Unix(0, oldestAt.Int64)), 0)
	}
	return s, nil
}

// Backlog counts the tasks due at now, up to limit+1; without exact it
// first tries the span of the pending ids (two index look-ups), an upper
// bound since ids are never reused.
func (b *Backend) Backlog(ctx context.Context, now time.Time, limit int64, exact bool) (int64, bool, error) {
	if !exact {
		var span int64
		if err := b.db.QueryRowContext(ctx, b.q.idSpan).Scan(&span); err != nil {
			return 0, false, fmt.Errorf("count the backlog: %w", b.err(err))
		}
		if span <= limit {
			return span, false, nil
		}
	}
	var n int64
	if err := b.db.QueryRowContext(ctx, b.q.countDue, unixNano(now), limit+1).Scan(&n); err != nil {
		return 0, false, fmt.Errorf("count the backlog: %w", b.err(err))
	}
	return n, true, nil
}

// Pending lists waiting tasks in the claim index's order, or its reverse,
// reading the index in order and stopping at the limit; a page after
// f.After reads up to three ranges of the index from the cursor on (see
// the SQLite backend's Pending).
func (b *Backend) Pending(ctx context.Context, f storage.PendingFilter) ([]storage.PendingTask, error) {
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", err)
	}
	if f.Limit == 0 {
		f.Limit = storage.DefaultPendingLimit
	}
	out := []storage.PendingTask{}
	for _, seg := range pendingSegments(f) {
		ps, err := b.pendingSegment(ctx, f, seg, f.Limit-len(out))
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

// CountPending counts the ready and the delayed tasks, each up to
// limit+1, in one statement; the oldest ready task is the first of the
// primary key with run_at 0.
func (b *Backend) CountPending(ctx context.Context, limit int64) (storage.PendingCounts, error) {
	c := storage.PendingCounts{Limit: limit}
	if limit < 0 {
		return c, fmt.Errorf("count pending tasks: limit %d is negative", limit)
	}
	var oldestID, oldestAt sql.NullInt64
	if err := b.db.QueryRowContext(ctx, b.q.countPending, limit+1).Scan(&c.Ready, &c.Delayed, &oldestID, &oldestAt); err != nil {
		return c, fmt.Errorf("count pending tasks: %w", b.err(err))
	}
	if oldestID.Valid {
		c.OldestID, c.OldestAt = oldestID.Int64, time.Unix(0, oldestAt.Int64)
	}
	return c, nil
}

// segment is one range of the claim index after a cursor: a condition
// whose placeholders are written %d, numbered from the first argument
// given, and its arguments.
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
	runAt := unixNano(c.RunAt)
	idCmp, prioCmp, runCmp := ">", "<", ">"
	if f.Newest {
		idCmp, prioCmp, runCmp = "<", ">", "<"
	}
	first := segment{` AND run_at = $%d AND priority = $%d AND id ` + idCmp + ` $%d`, []any{runAt, c.Priority, c.ID}}
	if f.Priority != nil {
		// The cursor's priority is the filter's: no other in its run_at.
		return []segment{first, {` AND run_at ` + runCmp + ` $%d`, []any{runAt}}}
	}
	return []segment{
		first,
		{` AND run_at = $%d AND priority ` + prioCmp + ` $%d`, []any{runAt, c.Priority}},
		{` AND run_at ` + runCmp + ` $%d`, []any{runAt}},
	}
}

func (b *Backend) pendingSegment(ctx context.Context, f storage.PendingFilter, seg segment, limit int) ([]storage.PendingTask, error) {
	query := `SELECT ` + b.q.pendingCols + ` FROM ` + b.q.tasks + ` WHERE true`
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		query += fmt.Sprintf(cond, len(args))
	}
	if f.Delayed {
		query += ` AND run_at > 0`
	}
	if f.Ready {
		query += ` AND run_at = 0`
	}
	if f.Task != "" {
		arg(` AND task = $%d`, f.Task)
	}
	if f.Priority != nil {
		arg(` AND priority = $%d`, *f.Priority)
	}
	if f.Key != "" {
		arg(` AND key = $%d`, f.Key)
	}
	if seg.cond != "" {
		nums := make([]any, len(seg.args))
		for i := range nums {
			nums[i] = len(args) + 1 + i
		}
		query += fmt.Sprintf(seg.cond, nums...)
		args = append(args, seg.args...)
	}
	if f.Newest {
		query += ` ORDER BY run_at DESC, priority, id DESC`
	} else {
		query += ` ORDER BY run_at, priority DESC, id`
	}
	arg(` LIMIT $%d`, limit)
	rs, err := b.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", b.err(err))
	}
	defer rs.Close()
	var out []storage.PendingTask
	for rs.Next() {
		var (
			p                storage.PendingTask
			key, serial      sql.NullString
			runAt, createdAt int64
		)
		if err := rs.Scan(&p.ID, &p.Task, &p.Priority, &key, &runAt, &p.Attempt, &p.MaxAttempts, &createdAt, &serial); err != nil {
			return nil, fmt.Errorf("list pending tasks: %w", b.err(err))
		}
		p.Key, p.SerialKey, p.RunAt, p.EnqueuedAt = key.String, serial.String, unixTime(runAt), time.Unix(0, createdAt)
		out = append(out, p)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list pending tasks: %w", b.err(err))
	}
	return out, nil
}

// columns are a chunk of rows as the statements' arrays, reused from
// chunk to chunk.
type columns struct {
	task, args                     []string
	created, runAt, timeout        []int64
	priority, attempt, maxAttempts []int32
	key                            []*string
	keyed                          bool // some row has a key
}

func (c *columns) fill(rows []storage.Row) {
	n := len(rows)
	if cap(c.task) < n {
		*c = columns{
			task: make([]string, n), args: make([]string, n),
			created: make([]int64, n), runAt: make([]int64, n), timeout: make([]int64, n),
			priority: make([]int32, n), attempt: make([]int32, n), maxAttempts: make([]int32, n),
			key: make([]*string, n),
		}
	}
	c.task, c.args, c.created, c.runAt, c.timeout = c.task[:n], c.args[:n], c.created[:n], c.runAt[:n], c.timeout[:n]
	c.priority, c.attempt, c.maxAttempts, c.key = c.priority[:n], c.attempt[:n], c.maxAttempts[:n], c.key[:n]
	c.keyed = false
	for i := range rows {
		r := &rows[i]
		c.task[i], c.args[i], c.created[i] = r.Task, string(r.Args), unixNano(r.CreatedAt)
		c.priority[i], c.runAt[i] = int32(r.Priority), max(unixNano(r.RunAt), 0)
		c.attempt[i], c.maxAttempts[i], c.timeout[i] = int32(max(r.Attempt, 1)), int32(r.MaxAttempts), int64(r.Timeout)
		c.key[i] = nil
		if r.Key != "" {
			c.key[i] = &r.Key
			c.keyed = true
		}
	}
}

// insertChunks writes rows a chunk at a time, each chunk one statement:
// the plain one where no row of the chunk has a key, else the one that
// reports duplicates.
func (b *Backend) insertChunks(ctx context.Context, tx *sql.Tx, rows []storage.Row) ([]storage.Inserted, error) {
	out := make([]storage.Inserted, 0, len(rows))
	var c columns
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), insertChunk)]
		rows = rows[len(chunk):]
		c.fill(chunk)
		var err error
		switch copied := false; {
		case c.keyed:
			out, err = b.insertKeyed(ctx, tx, &c, out)
		default:
			if tx != nil && len(chunk) >= copyMin {
				out, copied, err = b.insertCopy(ctx, tx, &c, out)
			}
			if !copied && err == nil {
				out, err = b.insertPlain(ctx, tx, &c, out)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// insertPlain writes a chunk without keys, appending its ids to out in
// the rows' order. Every row is written; the identity draws the ids in
// the order of the rows, so the ids returned, sorted, are the rows'.
func (b *Backend) insertPlain(ctx context.Context, tx *sql.Tx, c *columns, out []storage.Inserted) ([]storage.Inserted, error) {
	rs, err := b.on(tx).QueryContext(ctx, b.q.insertPlain, c.task, c.args, c.created, c.priority, c.runAt,
		c.attempt, c.maxAttempts, c.timeout, b.wakeChan)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	first := len(out)
	for rs.Next() {
		var id, woke int64
		if err := rs.Scan(&id, &woke); err != nil {
			return nil, err
		}
		out = append(out, storage.Inserted{ID: id})
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	if len(out)-first != len(c.task) {
		return nil, fmt.Errorf("the database returned %d ids for %d rows", len(out)-first, len(c.task))
	}
	written := out[first:]
	if !slices.IsSortedFunc(written, byID) {
		slices.SortFunc(written, byID)
	}
	return out, nil
}

func byID(a, b storage.Inserted) int { return cmp.Compare(a.ID, b.ID) }

// insertKeyed writes a chunk with keys with the statement that maps each
// row to its result, appending them to out in the rows' order.
func (b *Backend) insertKeyed(ctx context.Context, tx *sql.Tx, c *columns, out []storage.Inserted) ([]storage.Inserted, error) {
	rs, err := b.on(tx).QueryContext(ctx, b.q.insert, c.task, c.args, c.created, c.priority, c.runAt, c.attempt,
		c.maxAttempts, c.timeout, c.key, b.wakeChan)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var written []int64 // ascending
	for rs.Next() {
		var (
			ord, id, woke int64
			holder        sql.NullInt64
		)
		if err := rs.Scan(&ord, &id, &holder, &woke); err != nil {
			return nil, err
		}
		if ord == 0 {
			written = append(written, id)
			continue
		}
		if _, ok := slices.BinarySearch(written, id); ok {
			out = append(out, storage.Inserted{ID: id})
		} else {
			out = append(out, storage.Inserted{ID: holder.Int64, Duplicate: true})
		}
	}
	return out, rs.Err()
}

// replacing reports whether a row of rows replaces its key's holder.
func replacing(rows []storage.Row) bool {
	for i := range rows {
		if rows[i].Replace && rows[i].Key != "" {
			return true
		}
	}
	return false
}

// insertEach writes rows one statement each, in order, in tx.
func (b *Backend) insertEach(ctx context.Context, tx *sql.Tx, rows []storage.Row) ([]storage.Inserted, error) {
	out := make([]storage.Inserted, 0, len(rows))
	for i := range rows {
		one, err := b.insertOne(ctx, tx, &rows[i])
		if err != nil {
			return nil, err
		}
		out = append(out, one...)
	}
	return out, nil
}

// insertOne writes one row with plain parameters. No row back is a
// duplicate; Insert then looks up its holder.
func (b *Backend) insertOne(ctx context.Context, tx *sql.Tx, r *storage.Row) ([]storage.Inserted, error) {
	var key *string
	if r.Key != "" {
		key = &r.Key
	}
	var serial *string
	if r.SerialKey != "" {
		serial = &r.SerialKey
	}
	if key != nil && r.Replace {
		var res storage.Inserted
		var woke bool
		err := b.on(tx).QueryRowContext(ctx, b.q.insertReplace, r.Task, string(r.Args), unixNano(r.CreatedAt),
			r.Priority, max(unixNano(r.RunAt), 0), max(r.Attempt, 1), r.MaxAttempts, int64(r.Timeout), key,
			b.wakeChan, r.Reschedule, serial).Scan(&res.ID, &res.Replaced, &woke)
		if err != nil {
			return nil, err
		}
		return []storage.Inserted{res}, nil
	}
	var res storage.Inserted
	var woke bool
	err := b.on(tx).QueryRowContext(ctx, b.q.insertOne, r.Task, string(r.Args), unixNano(r.CreatedAt), r.Priority,
		max(unixNano(r.RunAt), 0), max(r.Attempt, 1), r.MaxAttempts, int64(r.Timeout), key, b.wakeChan, serial).
		Scan(&res.ID, &woke)
	if errors.Is(err, sql.ErrNoRows) {
		return []storage.Inserted{{Duplicate: true}}, nil
	}
	if err != nil {
		return nil, err
	}
	return []storage.Inserted{res}, nil
}

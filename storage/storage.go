package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/snappea/snappea"
)

// ErrSchemaTooNew: the database was migrated by a newer snappea than this
// one, whose tables this build does not understand. Nothing was changed.
var ErrSchemaTooNew = errors.New("database schema is newer than this snappea")

// Row is a task about to be written: what Insert stores.
type Row struct {
	Task        string        // the registered task name
	Args        []byte        // JSON, stored as the exact bytes given
	CreatedAt   time.Time     // when it was enqueued
	Priority    int           // higher is claimed first
	RunAt       time.Time     // zero: ready now; else not claimable before
	Attempt     int           // 1 for a first run (0 is taken as 1)
	MaxAttempts int           // 0 or 1: no retries
	Timeout     time.Duration // 0: none
	Key         string        // "": none; else unique among pending tasks
	// Replace, with Key: a pending task holding the key is overwritten
	// with this Row (task, arguments, created_at, priority, attempt,
	// max_attempts, timeout), keeping its id and, unless Reschedule, its
	// due time; else the Row is a duplicate, and nothing is written.
	Replace bool
	// Reschedule, with Replace: the holder's due time becomes RunAt too.
	Reschedule bool
	SerialKey  string // "": none; else runs after, and never beside, the tasks queued before it with the same key
}

// Inserted is what became of one Row.
type Inserted struct {
	ID        int64 // the new task's id, or the pending holder's for a duplicate or a replace
	Duplicate bool  // a pending task holds the Row's key: nothing was written
	Replaced  bool  // a pending task held the Row's key and was overwritten with it (Row.Replace)
}

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
	SerialKey   string    // "": none; else it runs after, never beside, the earlier tasks with this key
}

// Ready reports whether the task may be claimed now.
func (p PendingTask) Ready() bool { return p.RunAt.IsZero() }

// PendingFilter chooses the tasks Pending lists.
type PendingFilter struct {
	Task    string // if set, only tasks of that name
	Delayed bool   // only the delayed tasks, not the ready ones
	Limit   int    // the most tasks listed; 0: DefaultPendingLimit
	Newest  bool   // reverse order: the task that would be claimed last first

	Ready    bool   // only the ready tasks, not the delayed ones; not with Delayed
	Priority *int   // if set, only tasks of that priority
	Key      string // if set, only the task holding that key (at most one)
	// After, if set, lists only the tasks after this position in the
	// listing's order (before it in claim order with Newest): the next
	// page after a page's last task, read from the index where it left
	// off, however deep.
	After *PendingCursor
}

// PendingCursor is a task's position in claim order: where a page of
// Pending ends.
type PendingCursor struct {
	RunAt    time.Time // zero: a ready task
	Priority int
	ID       int64
}

// Cursor is p's position, for PendingFilter.After.
func (p PendingTask) Cursor() PendingCursor {
	return PendingCursor{RunAt: p.RunAt, Priority: p.Priority, ID: p.ID}
}

// Check returns an error naming the field that makes f unusable.
func (f PendingFilter) Check() error {
	switch {
	case f.Limit < 0:
		return fmt.Errorf("limit %d is negative", f.Limit)
	case f.Ready && f.Delayed:
		return errors.New("Ready and Delayed are both set: want one or neither")
	}
	return nil
}

// PendingCounts is a bounded look at the pending tasks, as cheap with a
// million of them as with ten: for pages that redraw often, where Stats
// would count every row.
type PendingCounts struct {
	Limit   int64 // what CountPending was given
	Ready   int64 // the ready tasks, counted up to Limit+1: Limit+1 means more than Limit
	Delayed int64 // the delayed tasks, likewise
	// OldestID is the ready task with the lowest id, the one enqueued
	// first, and OldestAt when; 0 and zero when none is ready.
	OldestID int64
	OldestAt time.Time
}

// DefaultPendingLimit is how many tasks Pending lists when the filter
// gives no limit.
const DefaultPendingLimit = 100

// Daemon is one daemon of the cluster that shares the database, as its
// heartbeats left it.
type Daemon struct {
	ID         int64     // assigned by RegisterDaemon
	Host       string    // the host name it runs on
	PID        int       // its process id on that host
	Started    time.Time // when it registered
	Workers    int       // its worker slots
	Busy       int       // tasks it was running at its last heartbeat
	Paused     bool      // it claims nothing while paused
	Generation int64     // its configuration generation (reloads)
	LastSeen   time.Time // its last heartbeat, by the database's clock
	Gone       bool      // it missed its heartbeats: stopped or cut off
}

// Backend is a snappea database. Each method is one round of work on the
// hot paths: one call per claim, one per batch of inserts.
//
// Methods that take a tx run in the caller's transaction when tx is not
// nil, and otherwise in one of the backend's own (or one autocommit
// statement), committed before they return. Every method honours ctx.
type Backend interface {
	// Tasks.

	// Insert writes rows, in order, and returns what became of each.
	// Without tx it commits them, all or none. It wakes the daemons when
	// the rows commit where the database can (PostgreSQL: NOTIFY in the
	// same transaction); elsewhere (SQLite) the caller calls Wake after
	// the commit of a tx, and Insert without tx wakes itself.
	Insert(ctx context.Context, tx *sql.Tx, rows []Row) ([]Inserted, error)
	// Claim deletes up to n ready tasks, by priority then id, and returns
	// them in that order; the delete has committed when it returns. A row
	// that cannot be run is returned with Err set (matching
	// snappea.ErrBadRow): fail it, do not run it.
	Claim(ctx context.Context, n int) ([]snappea.Task, error)
	// Promote makes the delayed tasks due at or before now ready and
	// returns when the next one is due (zero: none left).
	Promote(ctx context.Context, now time.Time) (time.Time, error)
	// Cancel deletes the pending task id; false if there was none.
	Cancel(ctx context.Context, id int64) (bool, error)
	// RequestCancel asks whichever daemon runs task id to cancel its
	// context, through the Wakers' Cancels. Nothing happens if no daemon
	// runs it. A backend whose daemons are reached otherwise (SQLite: the
	// control socket) returns errors.ErrUnsupported.
	RequestCancel(ctx context.Context, id int64) error
	// Stats is a snapshot of the pending tasks.
	Stats(ctx context.Context) (snappea.QueueStats, error)
	// Pending lists waiting tasks in claim order (ready by priority then
	// id, then delayed by due time), or its reverse, up to the limit.
	Pending(ctx context.Context, f PendingFilter) ([]PendingTask, error)
	// CountPending counts the ready and the delayed tasks, each up to
	// limit+1, and finds the oldest ready one, reading no more than
	// limit+1 entries of the claim index for each count.
	CountPending(ctx context.Context, limit int64) (PendingCounts, error)
	// Backlog counts the tasks due at now, up to limit+1 of them; with
	// exact false it may answer with a cheaper upper bound, which it then
	// reports as not exact.
	Backlog(ctx context.Context, now time.Time, limit int64, exact bool) (n int64, isExact bool, err error)

	// The in-flight ledger: what a daemon is running, so that tasks its
	// end interrupts are known (see InFlight).

	// ClaimFor is Claim for a daemon, within the limits r gives and those
	// of serial keys: in the same statement as the delete, it records the
	// tasks claimed in flight for r.Owner, after removing the records of
	// r.Finished. The limits hold across every daemon of the database.
	ClaimFor(ctx context.Context, r ClaimRequest) (Claimed, error)
	// Finish removes the in-flight records of tasks that ended.
	Finish(ctx context.Context, ids []int64) error
	// InFlight lists the in-flight records by id, without their arguments,
	// up to limit (<= 0: all).
	InFlight(ctx context.Context, limit int) ([]InFlight, error)
	// RecoverLost turns the in-flight records r chooses into failed
	// records with r.Cause, or into new tasks (r.Retry), and deletes them,
	// in one transaction; each record is taken once, also when several
	// daemons recover at the same time. It returns what it made of them,
	// by id.
	RecoverLost(ctx context.Context, r Recovery) ([]Lost, error)
	// CountLost counts the failed records of lost tasks (their error
	// begins with snappea.LostPrefix).
	CountLost(ctx context.Context) (int64, error)

	// The failed record.

	// Fail records t as failed for good with msg as its error.
	Fail(ctx context.Context, t *snappea.Task, msg string, at time.Time) error
	// Failures lists up to limit records, newest first; limit <= 0: all.
	Failures(ctx context.Context, limit int) ([]snappea.Failure, error)
	// Failure is the record id, or an error matching snappea.ErrNotFound.
	Failure(ctx context.Context, id int64) (snappea.Failure, error)
	// RetryFailures enqueues failed records anew as first attempts, ready
	// at now, and deletes them, in one transaction: the one with id (an
	// unknown id matches snappea.ErrNotFound), or all, oldest first (id 0).
	RetryFailures(ctx context.Context, id int64, now time.Time) (ids []int64, err error)
	// RetryFailuresOf is RetryFailures of every record of task name
	// task, oldest first; none is not an error.
	RetryFailuresOf(ctx context.Context, task string, now time.Time) (ids []int64, err error)
	// FailureCount counts the records, for pages that show a count
	// without listing them.
	FailureCount(ctx context.Context) (int64, error)
	// PurgeFailures deletes every record and returns how many.
	PurgeFailures(ctx context.Context) (int, error)
	// PruneFailures deletes the records failed before before (zero: no
	// age bound) and those beyond the newest keep (0: no count bound).
	PruneFailures(ctx context.Context, before time.Time, keep int) (int, error)

	// Schedules.

	// Schedules lists the stored schedules by name. In tx it reads what
	// tx sees and keeps the rows from changing under it until tx ends
	// (a scheduler reads, then writes back, in one transaction), so that
	// a tick another daemon takes meanwhile is never written over.
	Schedules(ctx context.Context, tx *sql.Tx) ([]snappea.ScheduleState, error)
	// SaveSchedule creates or replaces a schedule's stored state.
	SaveSchedule(ctx context.Context, tx *sql.Tx, s snappea.ScheduleState) error
	// TakeTick moves schedule name's next tick from from to next and its
	// latest tick taken to last, if next is still from (compare-and-set),
	// in tx; false if another daemon took it first.
	TakeTick(ctx context.Context, tx *sql.Tx, name string, from, next, last time.Time) (bool, error)

	// Statistics.

	// AddStats writes rows in one transaction: a row with a Task adds its
	// counts to its minute and task (Max: the larger), a row without sets
	// its minute's backlog sample to Backlog. Minutes before before are
	// then deleted (zero: none).
	AddStats(ctx context.Context, rows []snappea.StatsRow, before time.Time) error
	// ReadStats returns the rows of the minutes from the one containing
	// since, by minute then task; a minute with a backlog sample and no
	// task is one row with Task "".
	ReadStats(ctx context.Context, since time.Time) ([]snappea.StatsRow, error)

	// Daemons.

	// RegisterDaemon adds d (its ID ignored) to the live daemons and
	// returns its id.
	RegisterDaemon(ctx context.Context, d Daemon) (int64, error)
	// Heartbeat updates daemon d.ID's Workers, Busy, Paused and
	// Generation and its last heartbeat; a row removed meanwhile (the
	// daemon was cut off for long) is added again.
	Heartbeat(ctx context.Context, d Daemon) error
	// Daemons lists the registered daemons by id, those that missed their
	// heartbeats marked Gone.
	Daemons(ctx context.Context) ([]Daemon, error)
	// UnregisterDaemon removes daemon id, at its stop.
	UnregisterDaemon(ctx context.Context, id int64) error

	// Transactions and wakeups.

	// DB is the database, for the caller's own statements in a
	// transaction that also enqueues.
	DB() *sql.DB
	// WriteTx runs fn in a write transaction, taking turns with the
	// backend's other writers, and commits if fn returns nil.
	WriteTx(ctx context.Context, fn func(*sql.Tx) error) error
	// Wake tells the daemon that a transaction of the caller's that
	// inserted tasks has committed; a no-op where inserts notify at
	// commit themselves (PostgreSQL).
	Wake() error
	// Waker is the daemon's side of Wake.
	Waker(ctx context.Context) (Waker, error)

	// Maintenance runs the backend's upkeep until ctx ends.
	Maintenance(ctx context.Context) error
	SchemaVersion(ctx context.Context) (int, error)
	Close() error
}

// Waker tells the daemon tasks may have been queued, and which running
// tasks to cancel.
type Waker interface {
	// Wakes receives when tasks may have been queued. Never closed.
	Wakes() <-chan struct{}
	// Cancels receives the ids RequestCancel was called with, from any
	// host; nil where RequestCancel is unsupported. Never closed.
	Cancels() <-chan int64
	Close() error
}

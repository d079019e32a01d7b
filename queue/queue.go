package queue

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea/migrations"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/wakeup"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The layout of a data directory: Config fills in these names under Dir.
const (
	DefaultDir    = "snappea-data" // relative to the working directory
	DBFile        = "snappea.db"
	WakeupDirName = "wakeup"
)

// Sentinel errors callers may branch on with errors.Is.
var (
	// ErrBusy: the database stayed locked by another connection for longer
	// than Config.BusyTimeout. Nothing was written; retrying later is safe.
	ErrBusy = errors.New("database is busy")
	// ErrReadOnly: the database file or its directory cannot be written.
	ErrReadOnly = errors.New("database is read-only")
	// ErrClosed: the Queue was closed.
	ErrClosed = errors.New("queue is closed")
)

// Config says where the queue lives and how to open it. The zero value is
// usable: it opens ./snappea-data/snappea.db.
type Config struct {
	// Dir is the data directory holding the database and the wakeup
	// directory (and, for the daemon, its pidfile and lock). Default
	// "snappea-data". Created with mode 0700 if missing.
	Dir string
	// DBPath overrides the database file. Default Dir/snappea.db.
	DBPath string
	// WakeupDir overrides the wakeup directory. Default Dir/wakeup.
	WakeupDir string
	// BusyTimeout is how long a statement waits for another connection's
	// write lock before failing with ErrBusy. Default 5s.
	BusyTimeout time.Duration
	// Registry, if set, makes Enqueue check each task's name and arguments
	// against it before writing, so a typo fails in the caller, not later in
	// the daemon. It costs one decode of the arguments per task.
	Registry *registry.Registry
	// Inline runs tasks in the caller instead of queueing them, through the
	// same JSON encoding and decoding as the daemon, so a type mismatch
	// fails in tests too. Requires Registry. Enqueue and EnqueueMany run
	// the tasks before returning and return the first handler error.
	// EnqueueTx writes the row in the caller's transaction as usual, and
	// the tasks run when InTx commits or Notify is called after a commit,
	// as the daemon would run them only then: a rolled-back task never
	// runs. For tests, not production.
	Inline bool
	// Logger receives warnings (a wakeup that could not be sent). Default
	// slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.DBPath == "" {
		c.DBPath = filepath.Join(c.Dir, DBFile)
	}
	if c.WakeupDir == "" {
		c.WakeupDir = filepath.Join(c.Dir, WakeupDirName)
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.BusyTimeout < 0 {
		return fmt.Errorf("queue config: BusyTimeout %v is negative", c.BusyTimeout)
	}
	if c.Inline && c.Registry == nil {
		return errors.New("queue config: Inline needs a Registry to run tasks with")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Task is a claimed task, handed to the daemon to run.
type Task struct {
	ID         int64     // unique for the life of the database
	Name       string    // the registered task name
	Args       []byte    // JSON, as the producer encoded it
	EnqueuedAt time.Time // when the producer enqueued it
}

// Job is one task to enqueue with EnqueueMany.
type Job struct {
	Task string // the registered task name
	Args any    // encoded with encoding/json; a json.RawMessage is used as is
}

// Queue is a handle on the queue database, safe for concurrent use by many
// goroutines; several processes may have their own at the same time.
type Queue struct {
	cfg Config
	db  *sql.DB
	log *slog.Logger

	// writeMu serialises this process's own write statements so that its
	// goroutines queue for the lock here, in order, instead of in SQLite's
	// busy handler, which sleeps a millisecond and more between tries.
	writeMu sync.Mutex

	insert *sql.Stmt
	claim  *sql.Stmt

	inlineID atomic.Int64

	closed atomic.Bool
}

// Open opens (creating if needed) the queue database and applies any
// migrations it lacks. It refuses a database written by a newer snappea.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	db, err := OpenDB(ctx, cfg.DBPath, cfg.BusyTimeout)
	if err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, db: db, log: cfg.Logger}
	if err := q.prepare(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return q, nil
}

// OpenDB opens the SQLite database at path the way snappea uses it (WAL,
// synchronous=NORMAL, busy timeout, IMMEDIATE transactions), creating the
// file and its directory private to the user, and migrates it.
func OpenDB(ctx context.Context, path string, busyTimeout time.Duration) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	// Create the file ourselves so that it is 0600 whatever the umask;
	// SQLite gives its -wal and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("open database %s: %w: %w", path, ErrReadOnly, err)
		}
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	f.Close()

	v := url.Values{}
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(NORMAL)")
	v.Add("_pragma", "foreign_keys(ON)")
	v.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// Idle connections are kept: opening one runs the pragmas above.
	db.SetMaxIdleConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, dbError(err))
	}
	if _, err := migrations.Apply(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate database %s: %w", path, dbError(err))
	}
	return db, nil
}

func (q *Queue) prepare(ctx context.Context) error {
	var err error
	q.insert, err = q.db.PrepareContext(ctx,
		`INSERT INTO snappea_tasks (task, args, created_at) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", dbError(err))
	}
	// modernc's SQLite is built without DELETE ... LIMIT, hence the
	// subquery; it is one indexed range scan of the primary key.
	q.claim, err = q.db.PrepareContext(ctx,
		`DELETE FROM snappea_tasks WHERE id IN (SELECT id FROM snappea_tasks ORDER BY id LIMIT ?)
		 RETURNING id, task, args, created_at`)
	if err != nil {
		return fmt.Errorf("prepare claim: %w", dbError(err))
	}
	return nil
}

// Close closes the database. Tasks already enqueued stay queued.
func (q *Queue) Close() error {
	if q.closed.Swap(true) {
		return nil
	}
	return q.db.Close()
}

// DB returns the queue's database, for callers that want their own
// statements in the same transaction as an enqueue (see EnqueueTx). Its
// transactions begin IMMEDIATE.
func (q *Queue) DB() *sql.DB { return q.db }

// Config returns the queue's configuration with defaults filled in.
func (q *Queue) Config() Config { return q.cfg }

// encode turns args into the JSON the daemon will decode, and, with a
// Registry configured, checks that the daemon's handler would accept it.
func (q *Queue) encode(task string, args any) ([]byte, error) {
	if task == "" {
		return nil, errors.New("enqueue: empty task name")
	}
	var b []byte
	switch a := args.(type) {
	case json.RawMessage:
		if !json.Valid(a) {
			return nil, fmt.Errorf("enqueue %s: %w: arguments are not valid JSON", task, registry.ErrBadArgs)
		}
		b = a
	default:
		var err error
		b, err = json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: encode arguments: %w", task, err)
		}
	}
	if q.cfg.Registry != nil {
		if err := q.cfg.Registry.Check(task, b); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
	}
	return b, nil
}

// Enqueue queues one task and wakes the daemon. args is encoded as JSON
// (pass a json.RawMessage for JSON you already have). It returns the task's
// id once the row is committed.
func (q *Queue) Enqueue(ctx context.Context, task string, args any) (int64, error) {
	b, err := q.encode(task, args)
	if err != nil {
		return 0, err
	}
	if q.cfg.Inline {
		return q.runInline(ctx, task, b)
	}
	if q.closed.Load() {
		return 0, ErrClosed
	}
	q.writeMu.Lock()
	// One autocommit statement: no BEGIN/COMMIT round trips, and SQLite
	// takes the write lock (with the busy timeout) at its start.
	res, err := q.insert.ExecContext(ctx, task, b, time.Now().UnixNano())
	q.writeMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", task, dbError(err))
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", task, err)
	}
	q.wake()
	return id, nil
}

// EnqueueTx queues one task inside the caller's transaction tx, which must
// be on this queue's database (see DB). The task becomes visible when tx
// commits; the caller must then call Notify, or the daemon finds the task
// only at its next fallback poll. InTx does both for you.
func (q *Queue) EnqueueTx(ctx context.Context, tx *sql.Tx, task string, args any) (int64, error) {
	b, err := q.encode(task, args)
	if err != nil {
		return 0, err
	}
	res, err := tx.StmtContext(ctx, q.insert).ExecContext(ctx, task, b, time.Now().UnixNano())
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", task, dbError(err))
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("enqueue %s: %w", task, err)
	}
	return id, nil
}

// EnqueueMany queues jobs in one transaction, all or none, and wakes the
// daemon once. It returns their ids in order.
func (q *Queue) EnqueueMany(ctx context.Context, jobs []Job) ([]int64, error) {
	if q.cfg.Inline {
		ids := make([]int64, 0, len(jobs))
		for _, j := range jobs {
			id, err := q.Enqueue(ctx, j.Task, j.Args)
			if err != nil {
				return ids, err
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	var ids []int64
	err := q.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		ids, err = q.EnqueueManyTx(ctx, tx, jobs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// EnqueueManyTx queues jobs inside the caller's transaction; as with
// EnqueueTx, call Notify after commit.
func (q *Queue) EnqueueManyTx(ctx context.Context, tx *sql.Tx, jobs []Job) ([]int64, error) {
	ids := make([]int64, 0, len(jobs))
	stmt := tx.StmtContext(ctx, q.insert)
	now := time.Now().UnixNano()
	for _, j := range jobs {
		b, err := q.encode(j.Task, j.Args)
		if err != nil {
			return nil, err
		}
		res, err := stmt.ExecContext(ctx, j.Task, b, now)
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", j.Task, dbError(err))
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", j.Task, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// InTx runs fn in a transaction on the queue's database, commits if fn
// returns nil (rolls back otherwise), and after the commit wakes the daemon.
// Use it to enqueue tasks, with EnqueueTx on tx, together with the caller's
// own writes. Inside fn, use only tx: the queue's own Enqueue, EnqueueMany
// and InTx wait for this transaction and would never return.
func (q *Queue) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if q.closed.Load() {
		return ErrClosed
	}
	q.writeMu.Lock()
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		q.writeMu.Unlock()
		return fmt.Errorf("begin transaction: %w", dbError(err))
	}
	err = fn(tx)
	if err == nil {
		if err = tx.Commit(); err != nil {
			err = fmt.Errorf("commit: %w", dbError(err))
		}
	} else {
		tx.Rollback()
	}
	q.writeMu.Unlock()
	if err != nil {
		return err
	}
	if q.cfg.Inline {
		return q.runCommitted(ctx)
	}
	q.wake()
	return nil
}

// Notify wakes the daemon: call it after committing a transaction in which
// you used EnqueueTx. It is cheap when a wakeup is already pending. In
// Inline mode it runs the committed tasks such transactions enqueued.
func (q *Queue) Notify() error {
	if q.cfg.Inline {
		return q.runCommitted(context.Background())
	}
	if err := wakeup.Notify(q.cfg.WakeupDir); err != nil {
		return fmt.Errorf("notify daemon: %w", err)
	}
	return nil
}

// wake is Notify after a commit of our own: the task is safely queued
// whatever happens here, so a failure is logged, not returned (a caller
// that retried would enqueue twice). The daemon's fallback poll finds it.
func (q *Queue) wake() {
	if err := wakeup.Notify(q.cfg.WakeupDir); err != nil {
		q.log.Warn("task queued, but the daemon could not be woken; it will find the task at its next poll",
			"err", err)
	}
}

func (q *Queue) runInline(ctx context.Context, task string, args []byte) (int64, error) {
	id := q.inlineID.Add(1)
	return id, q.run(ctx, Task{ID: id, Name: task, Args: args, EnqueuedAt: time.Now()})
}

// runCommitted is Inline mode's daemon: it claims the tasks that committed
// transactions left in the queue and runs them, returning the first error
// after running them all.
func (q *Queue) runCommitted(ctx context.Context) error {
	var first error
	for {
		ts, err := q.Claim(ctx, 100)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if err := q.run(ctx, t); err != nil && first == nil {
				first = err
			}
		}
		if len(ts) < 100 {
			return first
		}
	}
}

func (q *Queue) run(ctx context.Context, t Task) error {
	tctx := registry.WithInfo(ctx, registry.Info{ID: t.ID, Name: t.Name, EnqueuedAt: t.EnqueuedAt, Logger: q.log})
	if err := q.cfg.Registry.Run(tctx, t.Name, t.Args); err != nil {
		return fmt.Errorf("run %s (inline): %w", t.Name, err)
	}
	return nil
}

// Claim deletes up to n of the oldest queued tasks and returns them, oldest
// first. The delete commits before Claim returns, so every task it returns
// is gone from the queue: run it or lose it, never run it twice.
func (q *Queue) Claim(ctx context.Context, n int) ([]Task, error) {
	if n <= 0 {
		return nil, nil
	}
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	// One autocommit statement: SQLite deletes every row during the first
	// step, buffers the RETURNING rows, and commits when the statement
	// finishes. A failed commit surfaces in rows.Err, and then the tasks
	// read are dropped here (their rows were rolled back and stay queued),
	// so nothing is handed out that is not deleted for good.
	rows, err := q.claim.QueryContext(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", dbError(err))
	}
	tasks := make([]Task, 0, n)
	for rows.Next() {
		var t Task
		var created int64
		if err := rows.Scan(&t.ID, &t.Name, &t.Args, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claim tasks: %w", err)
		}
		t.EnqueuedAt = time.Unix(0, created)
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, fmt.Errorf("claim tasks: %w", dbError(err))
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("claim tasks: %w", dbError(err))
	}
	// RETURNING gives no order; FIFO is by id.
	slices.SortFunc(tasks, func(a, b Task) int { return cmp.Compare(a.ID, b.ID) })
	return tasks, nil
}

// Stats is a snapshot of the queue.
type Stats struct {
	Pending       int64         // tasks queued and not yet claimed
	OldestAge     time.Duration // how long the oldest pending task has waited; 0 when none
	OldestID      int64         // its id; 0 when none
	SchemaVersion int
}

// Stats counts the pending tasks and the age of the oldest.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	var oldestID, oldestAt sql.NullInt64
	err := q.db.QueryRowContext(ctx,
		`SELECT count(*), min(id), (SELECT created_at FROM snappea_tasks ORDER BY id LIMIT 1) FROM snappea_tasks`).
		Scan(&s.Pending, &oldestID, &oldestAt)
	if err != nil {
		return s, fmt.Errorf("read queue stats: %w", dbError(err))
	}
	if oldestAt.Valid {
		s.OldestID = oldestID.Int64
		s.OldestAge = max(time.Since(time.Unix(0, oldestAt.Int64)), 0)
	}
	s.SchemaVersion, err = migrations.Version(ctx, q.db)
	return s, err
}

// dbError marks SQLite's busy and read-only failures with ErrBusy and
// ErrReadOnly and says what a person can do about them, keeping the
// original error in the chain.
func dbError(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("%w (another process held the database's write lock past the busy timeout; retry, or find the long transaction): %w", ErrBusy, err)
	case sqlite3.SQLITE_READONLY:
		return fmt.Errorf("%w (check the permissions of the database file, its -wal and -shm files and its directory): %w", ErrReadOnly, err)
	case sqlite3.SQLITE_CANTOPEN:
		return fmt.Errorf("cannot open the database file (does its directory exist, and may this user write there?): %w", err)
	}
	return err
}

package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage"
	"github.com/snappea/snappea/storage/postgres"
	"github.com/snappea/snappea/storage/sqlite"
)

// The layout of a data directory: Config fills in these names under Dir.
const (
	DefaultDir    = "snappea-data" // relative to the working directory
	DBFile        = "snappea.db"
	WakeupDirName = "wakeup"
)

// Sentinel errors callers may branch on with errors.Is. Those of the
// domain are the root package's, named here too.
var (
	// ErrBusy: the database stayed locked by another connection for longer
	// than Config.BusyTimeout. Nothing was written; retrying later is safe.
	ErrBusy = snappea.ErrBusy
	// ErrReadOnly: the database file or its directory cannot be written.
	ErrReadOnly = snappea.ErrReadOnly
	// ErrFull: the file system holding the database is full. Nothing was
	// written; retrying once space is freed is safe.
	ErrFull = snappea.ErrFull
	// ErrClosed: the Queue was closed.
	ErrClosed = snappea.ErrClosed
	// ErrBacklogFull: more tasks are waiting for the daemon than
	// Config.MaxBacklog allows. Nothing was written. The daemon is behind
	// or stopped: shed load (or retry later), or raise the limit.
	ErrBacklogFull = snappea.ErrBacklogFull
	// ErrNotFound: no failed task has the id asked for.
	ErrNotFound = snappea.ErrNotFound
	// ErrBadRow: a claimed row cannot be run as a task (see Task.Err): a
	// column of the wrong type, or arguments over Config.MaxArgsSize. The
	// error says which column and what type it should have, never the
	// value.
	ErrBadRow = snappea.ErrBadRow
	// ErrNoDatabase: Config.MustExist is set and the database file does
	// not exist.
	ErrNoDatabase = sqlite.ErrNoDatabase
	// ErrArgsTooLarge: a task's encoded arguments are larger than
	// Config.MaxArgsSize. Nothing was written.
	ErrArgsTooLarge = errors.New("task arguments too large")
	// ErrDatabaseGone: the database file was removed or replaced (its data
	// directory deleted, say) since the Queue was opened, so what it wrote
	// would reach no daemon. Nothing was written; reopen the Queue.
	ErrDatabaseGone = sqlite.ErrDatabaseGone
	// ErrInsideInTx: a write on a Queue was called from inside the
	// function given to that Queue's InTx (or WriteTx), which holds the
	// Queue's write turn for its transaction. Write with the transaction
	// instead.
	ErrInsideInTx = sqlite.ErrInsideInTx
)

// DefaultMaxArgsSize is Config.MaxArgsSize's default: 1 MiB.
const DefaultMaxArgsSize = 1 << 20

// Config says where the queue lives and how to open it. The zero value is
// usable: it opens ./snappea-data/snappea.db.
//
// Which fields apply to which backend: DatabaseURL chooses PostgreSQL,
// and then Schema applies and DBPath, WakeupDir, BusyTimeout and
// MustExist do not (Dir is then only the daemon's local directory, for
// its lock, pidfile and control socket). Without DatabaseURL the queue is
// the SQLite database those fields describe, and Schema is ignored.
// MaxArgsSize, Registry, Inline, MaxBacklog and Logger apply to both.
// Backend, when set, overrides both.
type Config struct {
	// Dir is the data directory holding the database and the wakeup
	// directory (and, for the daemon, its pidfile and lock). Default
	// "snappea-data". Created with mode 0700 if missing. With DatabaseURL
	// it holds only the daemon's lock, pidfile and socket.
	Dir string
	// DatabaseURL, if set, makes Open use the PostgreSQL database it
	// names (postgres://user@host:port/dbname, or a libpq key=value
	// string) instead of an SQLite file: see storage/postgres. Its
	// password is never printed. Default "": SQLite.
	DatabaseURL string
	// Schema is the PostgreSQL schema holding snappea's tables, created
	// if missing. Default "snappea". Ignored without DatabaseURL.
	Schema string
	// DBPath overrides the database file. Default Dir/snappea.db.
	DBPath string
	// WakeupDir overrides the wakeup directory. Default Dir/wakeup.
	WakeupDir string
	// BusyTimeout is the longest a write waits for the database, in all:
	// for this process's other writes, for the writers' turn with other
	// processes and for SQLite's write lock. Past it the write fails with
	// ErrBusy, having written nothing. The caller's context ends the wait
	// sooner. It is also the busy timeout of the connections DB returns,
	// for transactions begun on them directly. Default 5s.
	BusyTimeout time.Duration
	// MustExist makes Open fail with ErrNoDatabase if the database file
	// does not exist, instead of creating it: for producers, which should
	// not start a queue of their own that no daemon reads because of a
	// wrong path. The daemon creates the database. Default false: create.
	MustExist bool
	// MaxArgsSize is the largest encoded arguments a task may have, in
	// bytes. Default DefaultMaxArgsSize (1 MiB); negative is an error.
	// Every Enqueue variant refuses larger arguments with ErrArgsTooLarge
	// before writing anything, and the daemon fails a larger row written
	// by other means instead of running it.
	MaxArgsSize int
	// Registry, if set, makes Enqueue check each task's name and arguments
	// against it before writing, so a typo fails in the caller, not later in
	// the daemon. It costs one decode of the arguments per task. Every
	// enqueue then also starts from the task definition's default options
	// (see registry.Register), the call's own options winning.
	Registry *registry.Registry
	// Inline runs tasks in the caller instead of queueing them, through the
	// same JSON encoding and decoding as the daemon, so a type mismatch
	// fails in tests too. Requires Registry. Enqueue and EnqueueMany run
	// the tasks before returning and return the first handler error.
	// EnqueueTx writes the row in the caller's transaction as usual, and
	// the tasks run when InTx commits or Notify is called after a commit,
	// as the daemon would run them only then: a rolled-back task never
	// runs. Delay and RunAt are ignored (tasks run at once), a task runs
	// once whatever its MaxAttempts, its Timeout applies, and a Key held
	// by a committed task not yet run makes the enqueue a duplicate (with
	// OnDuplicate Replace: replaces that task, which runs with the new
	// arguments when the committed tasks run).
	// MaxBacklog is ignored. For tests, not production.
	Inline bool
	// MaxBacklog, if positive, limits the tasks waiting for the daemon:
	// those ready to claim or delayed and already due (tasks delayed into
	// the future do not count). An enqueue that would take the backlog past
	// it fails at once with ErrBacklogFull and writes nothing; at the
	// limit, delayed tasks are refused too. Retry and the retries of failed
	// tasks are exempt: they re-run work already accepted. Ignored in
	// Inline mode. Default 0: unlimited.
	//
	// It is a soft limit, kept cheap: the Queue counts the backlog at most
	// every 100ms and adds its own enqueues since. When the backlog is
	// large, counting it (up to MaxBacklog+1 index entries, several
	// milliseconds per hundred thousand) is done less often, at most 1/50
	// of the time: every 0.4s or so with a hundred thousand tasks waiting.
	// Other processes' enqueues since the last count go unseen, so together
	// they can overshoot the limit by what they enqueue in one interval.
	MaxBacklog int
	// Logger receives warnings (a wakeup that could not be sent). Default
	// slog.Default().
	Logger *slog.Logger
	// Backend, if set, is the storage to use instead of the SQLite
	// database that Dir, DBPath, WakeupDir, BusyTimeout and MustExist
	// describe, which are then ignored: a PostgreSQL backend
	// (storage/postgres.Open), or an SQLite one opened by the caller
	// (storage/sqlite.Open). The caller keeps it and closes it after the
	// Queue; Queue.Close leaves it open. Its own configuration decides
	// what a claim accepts (its MaxArgsSize); the Queue's MaxArgsSize
	// still bounds what it enqueues. Default nil: open SQLite as above.
	Backend storage.Backend
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
	if c.DatabaseURL != "" && c.Schema == "" {
		c.Schema = postgres.DefaultSchema
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.BusyTimeout < 0 {
		return fmt.Errorf("queue config: BusyTimeout %v is negative", c.BusyTimeout)
	}
	if c.MaxArgsSize == 0 {
		c.MaxArgsSize = DefaultMaxArgsSize
	}
	if c.MaxArgsSize < 0 {
		return fmt.Errorf("queue config: MaxArgsSize %d is negative", c.MaxArgsSize)
	}
	if c.MaxBacklog < 0 {
		return fmt.Errorf("queue config: MaxBacklog %d is negative (0 means unlimited)", c.MaxBacklog)
	}
	if c.Inline && c.Registry == nil {
		return errors.New("queue config: Inline needs a Registry to run tasks with")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Task is a claimed task, handed to the daemon to run: the domain's.
type Task = snappea.Task

// Job is one task to enqueue with EnqueueMany.
type Job struct {
	Task    string           // the registered task name
	Args    any              // encoded with encoding/json; a json.RawMessage is used as is
	Options registry.Options // merged over the task definition's defaults when Config.Registry is set
}

// Queue is a handle on the queue database, safe for concurrent use by many
// goroutines; several processes may have their own at the same time. It
// is the client of a storage backend, which issues every statement.
type Queue struct {
	cfg  Config
	b    storage.Backend
	lite *sqlite.Backend // b, when it is SQLite: its upkeep (checkpoints)
	own  bool            // b was opened by Open, which Close closes
	log  *slog.Logger

	backlog backlog

	inlineID atomic.Int64

	closed atomic.Bool
}

// Open opens (creating if needed) the queue database and applies any
// migrations it lacks. It refuses a database written by a newer snappea.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Backend != nil {
		q := &Queue{cfg: cfg, b: cfg.Backend, log: cfg.Logger}
		q.lite, _ = cfg.Backend.(*sqlite.Backend)
		return q, nil
	}
	if cfg.DatabaseURL != "" {
		pb, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, Schema: cfg.Schema,
			MaxArgsSize: cfg.MaxArgsSize, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		return &Queue{cfg: cfg, b: pb, own: true, log: cfg.Logger}, nil
	}
	b, err := sqlite.Open(ctx, cfg.sqliteConfig())
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, b: b, lite: b, own: true, log: cfg.Logger}, nil
}

// sqliteConfig is the SQLite backend's part of c, defaults filled in.
func (c *Config) sqliteConfig() sqlite.Config {
	return sqlite.Config{Path: c.DBPath, WakeupDir: c.WakeupDir, BusyTimeout: c.BusyTimeout,
		MustExist: c.MustExist, MaxArgsSize: c.MaxArgsSize, Logger: c.Logger}
}

// OpenDB opens the SQLite database at path the way snappea uses it and
// migrates it: see sqlite.OpenDB.
func OpenDB(ctx context.Context, path string, busyTimeout time.Duration) (*sql.DB, error) {
	return sqlite.OpenDB(ctx, path, busyTimeout)
}

// Close closes the database, unless it is a Config.Backend, which its
// owner closes. Tasks already enqueued stay queued.
func (q *Queue) Close() error {
	if q.closed.Swap(true) || !q.own {
		return nil
	}
	return q.b.Close()
}

// Backend is the storage the Queue writes to and reads from.
func (q *Queue) Backend() storage.Backend { return q.b }

// DB returns the queue's database, for callers that want their own
// statements in the same transaction as an enqueue (see EnqueueTx). Its
// transactions begin IMMEDIATE.
func (q *Queue) DB() *sql.DB { return q.b.DB() }

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
	if len(b) > q.cfg.MaxArgsSize {
		return nil, fmt.Errorf("enqueue %s: %w: %d bytes encoded, the limit (MaxArgsSize) is %d", task, ErrArgsTooLarge, len(b), q.cfg.MaxArgsSize)
	}
	if q.cfg.Registry != nil {
		if err := q.cfg.Registry.Check(task, b); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
	}
	return b, nil
}

// newRow encodes and checks a task for enqueueing at now, with opts over
// the definition's defaults.
func (q *Queue) newRow(task string, args any, opts registry.Options, now time.Time) (storage.Row, error) {
	b, err := q.encode(task, args)
	if err != nil {
		return storage.Row{}, err
	}
	if q.cfg.Registry != nil {
		opts = q.cfg.Registry.Options(task).Merge(opts)
	}
	if err := opts.ValidateEnqueue(); err != nil {
		return storage.Row{}, fmt.Errorf("enqueue %s: %w", task, err)
	}
	r := storage.Row{Task: task, Args: b, CreatedAt: now, Priority: opts.Priority, Attempt: 1,
		MaxAttempts: opts.MaxAttempts, Timeout: opts.Timeout, Key: opts.Key, SerialKey: opts.SerialKey,
		Replace: opts.OnDuplicate == registry.Replace, Reschedule: opts.Debounce > 0}
	if !q.cfg.Inline {
		r.RunAt = opts.DueAt(now)
	}
	return r, nil
}

// Enqueue queues one task and wakes the daemon. args is encoded as JSON
// (pass a json.RawMessage for JSON you already have). It returns the task's
// id once the row is committed. With Config.Registry set, the task
// definition's default options apply; if they give a Key that a pending
// task holds, nothing is written and the id is that task's.
func (q *Queue) Enqueue(ctx context.Context, task string, args any) (int64, error) {
	res, err := q.EnqueueWith(ctx, task, args, registry.Options{})
	return res.ID, err
}

// EnqueueWith is Enqueue with options, merged over the task definition's
// defaults when Config.Registry is set. A task with a Key that a pending
// task (ready or delayed) already holds is not written: the Result is
// that task's id with Duplicate set, and the error nil. With OnDuplicate
// Replace the pending task takes this enqueue's arguments and options
// instead (and with Debounce its due time moves to now+Debounce), and
// the Result is its id with Replaced set. A delayed task is written as
// such and the daemon is woken all the same, to learn the new earliest
// due time.
func (q *Queue) EnqueueWith(ctx context.Context, task string, args any, opts registry.Options) (registry.Result, error) {
	// The row goes to the backend in a slice, which an interface call
	// moves to the heap: a pooled one costs no allocation.
	one := onePool.Get().(*[1]storage.Row)
	defer func() {
		one[0] = storage.Row{}
		onePool.Put(one)
	}()
	rows := one[:]
	var err error
	if rows[0], err = q.newRow(task, args, opts, time.Now()); err != nil {
		return registry.Result{}, err
	}
	if q.cfg.Inline {
		return q.runInline(ctx, rows[0])
	}
	if q.closed.Load() {
		return registry.Result{}, ErrClosed
	}
	reserved, err := q.reserve(ctx, rows)
	if err != nil {
		return registry.Result{}, err
	}
	// One call: the backend writes the row, or finds its key's holder, and
	// wakes the daemon.
	ins, err := q.b.Insert(ctx, nil, rows)
	if err != nil {
		q.release(reserved)
		return registry.Result{}, err
	}
	if ins[0].Duplicate || ins[0].Replaced {
		q.release(reserved)
	}
	return result(ins[0]), nil
}

// result is a backend's Inserted as an enqueue's Result.
func result(ins storage.Inserted) registry.Result {
	return registry.Result{ID: ins.ID, Duplicate: ins.Duplicate, Replaced: ins.Replaced}
}

// onePool holds the one-row slices of single enqueues.
var onePool = sync.Pool{New: func() any { return new([1]storage.Row) }}

// EnqueueTx queues one task inside the caller's transaction tx, which must
// be on this queue's database (see DB). The task becomes visible when tx
// commits; the caller must then call Notify, or the daemon finds the task
// only at its next fallback poll. InTx does both for you.
func (q *Queue) EnqueueTx(ctx context.Context, tx *sql.Tx, task string, args any) (int64, error) {
	res, err := q.EnqueueWithTx(ctx, tx, task, args, registry.Options{})
	return res.ID, err
}

// EnqueueWithTx is EnqueueWith inside the caller's transaction tx; as with
// EnqueueTx, call Notify after commit. A duplicate Key is judged against
// the tasks tx sees, under the write lock tx holds.
func (q *Queue) EnqueueWithTx(ctx context.Context, tx *sql.Tx, task string, args any, opts registry.Options) (registry.Result, error) {
	r, err := q.newRow(task, args, opts, time.Now())
	if err != nil {
		return registry.Result{}, err
	}
	rows := []storage.Row{r}
	reserved, err := q.reserve(ctx, rows)
	if err != nil {
		return registry.Result{}, err
	}
	ins, err := q.b.Insert(ctx, tx, rows)
	if err != nil {
		q.release(reserved)
		return registry.Result{}, err
	}
	if ins[0].Duplicate || ins[0].Replaced {
		q.release(reserved)
	}
	return result(ins[0]), nil
}

// EnqueueMany queues jobs in one transaction, all or none, and wakes the
// daemon once. It returns their ids in order; a job whose Key a pending
// task holds is not written and its id is 0, unless it replaces that task
// (OnDuplicate Replace): its id is then that task's. Jobs of one key
// apply in order: the last Replace of them wins.
func (q *Queue) EnqueueMany(ctx context.Context, jobs []Job) ([]int64, error) {
	if q.cfg.Inline {
		ids := make([]int64, 0, len(jobs))
		for _, j := range jobs {
			res, err := q.EnqueueWith(ctx, j.Task, j.Args, j.Options)
			if err != nil {
				return ids, err
			}
			if res.Duplicate {
				res.ID = 0
			}
			ids = append(ids, res.ID)
		}
		return ids, nil
	}
	if q.closed.Load() {
		return nil, ErrClosed
	}
	return q.enqueueMany(ctx, nil, jobs)
}

// EnqueueManyTx queues jobs inside the caller's transaction; as with
// EnqueueTx, call Notify after commit. Ids are as with EnqueueMany.
func (q *Queue) EnqueueManyTx(ctx context.Context, tx *sql.Tx, jobs []Job) ([]int64, error) {
	return q.enqueueMany(ctx, tx, jobs)
}

// enqueueMany inserts jobs in tx, or in a transaction of the backend's if
// tx is nil, in one backend call.
func (q *Queue) enqueueMany(ctx context.Context, tx *sql.Tx, jobs []Job) ([]int64, error) {
	rows, err := q.newRows(jobs)
	if err != nil {
		return nil, err
	}
	reserved, err := q.reserve(ctx, rows)
	if err != nil {
		return nil, err
	}
	ins, err := q.b.Insert(ctx, tx, rows)
	if err != nil {
		q.release(reserved)
		return nil, err
	}
	ids := make([]int64, len(rows))
	dup := 0 // rows reserve counted that added no task
	for i := range ins {
		if (ins[i].Duplicate || ins[i].Replaced) && rows[i].RunAt.IsZero() {
			dup++
		}
		if !ins[i].Duplicate {
			ids[i] = ins[i].ID
		}
	}
	q.release(dup)
	return ids, nil
}

func (q *Queue) newRows(jobs []Job) ([]storage.Row, error) {
	rows := make([]storage.Row, len(jobs))
	now := time.Now()
	for i, j := range jobs {
		var err error
		if rows[i], err = q.newRow(j.Task, j.Args, j.Options, now); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// InTx runs fn in a transaction on the queue's database, commits if fn
// returns nil (rolls back otherwise), and after the commit wakes the daemon.
// Use it to enqueue tasks, with EnqueueTx on tx, together with the caller's
// own writes. The transaction holds the queue's write turn: inside fn, use
// only tx. The queue's own writes (Enqueue, EnqueueMany, InTx, Cancel...)
// called from fn fail at once with ErrInsideInTx; called from another
// goroutine that fn waits for, they fail with ErrBusy after BusyTimeout.
func (q *Queue) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if q.closed.Load() {
		return ErrClosed
	}
	if err := q.b.WriteTx(ctx, fn); err != nil {
		return err
	}
	if q.cfg.Inline {
		return q.runCommitted(ctx)
	}
	q.wake()
	return nil
}

// WriteTx runs fn in a transaction, in turn with the queue's other writes
// in this and other processes, and commits if fn returns nil (rolls back
// otherwise). It is InTx without the wakeup, for writes that enqueue
// nothing, such as the daemon's statistics: a transaction begun on DB
// directly does not take turns, and a claim meeting it sleeps in SQLite's
// busy handler. Waiting for the turn and for the database honours ctx and
// lasts at most BusyTimeout in all. As in InTx, use only tx inside fn.
func (q *Queue) WriteTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if q.closed.Load() {
		return ErrClosed
	}
	return q.b.WriteTx(ctx, fn)
}

// Notify wakes the daemon: call it after committing a transaction in which
// you used EnqueueTx. It is cheap when a wakeup is already pending. In
// Inline mode it runs the committed tasks such transactions enqueued.
func (q *Queue) Notify() error {
	if q.cfg.Inline {
		return q.runCommitted(context.Background())
	}
	return q.b.Wake()
}

// wake is Notify after a commit of our own: the task is safely queued
// whatever happens here, so a failure is logged, not returned (a caller
// that retried would enqueue twice). The daemon's fallback poll finds it.
func (q *Queue) wake() {
	if err := q.b.Wake(); err != nil {
		q.log.Warn("task queued, but the daemon could not be woken; it will find the task at its next poll",
			"err", err)
	}
}

// errLookedUp rolls back runInline's look-up of a key's holder.
var errLookedUp = errors.New("key looked up")

// runInline runs r now, as Inline mode's Enqueue, unless a committed task
// not yet run holds its key. The holder is found by inserting r in a
// transaction that is then rolled back, unless r replaced the holder:
// that commits, and the holder runs with r's arguments when the
// committed tasks run.
func (q *Queue) runInline(ctx context.Context, r storage.Row) (registry.Result, error) {
	if r.Key != "" {
		var holder storage.Inserted
		err := q.b.WriteTx(ctx, func(tx *sql.Tx) error {
			ins, err := q.b.Insert(ctx, tx, []storage.Row{r})
			if err != nil {
				return err
			}
			holder = ins[0]
			if holder.Replaced {
				return nil
			}
			return errLookedUp
		})
		switch {
		case err == nil && holder.Replaced:
			return result(holder), nil
		case err != errLookedUp:
			return registry.Result{}, fmt.Errorf("enqueue %s: find the task holding its key: %w", r.Task, err)
		case holder.Duplicate:
			return registry.Result{ID: holder.ID, Duplicate: true}, nil
		}
	}
	id := q.inlineID.Add(1)
	return registry.Result{ID: id}, q.run(ctx, Task{ID: id, Name: r.Task, Args: r.Args,
		EnqueuedAt: r.CreatedAt, Priority: r.Priority, Attempt: r.Attempt,
		MaxAttempts: r.MaxAttempts, Timeout: r.Timeout, Key: r.Key})
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
			err := t.Err
			if err == nil {
				err = q.run(ctx, t)
			}
			if err != nil && first == nil {
				first = err
			}
		}
		if len(ts) < 100 {
			return first
		}
	}
}

func (q *Queue) run(ctx context.Context, t Task) error {
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.Timeout)
		defer cancel()
	}
	tctx := registry.WithInfo(ctx, registry.Info{ID: t.ID, Name: t.Name, EnqueuedAt: t.EnqueuedAt, Logger: q.log,
		Attempt: t.Attempt, MaxAttempts: t.MaxAttempts})
	if err := q.cfg.Registry.Run(tctx, t.Name, t.Args); err != nil {
		return fmt.Errorf("run %s (inline): %w", t.Name, err)
	}
	return nil
}

// Retry enqueues t again, as a new task with its own id, for its next
// attempt: the same name, arguments, priority, timeout and MaxAttempts,
// Attempt one more, ready at at (now if at is not in the future), its
// SerialKey, and no Key, which t's claim freed. It wakes the daemon and returns the new id.
// Retries do not count against MaxBacklog. Whether t has attempts left is
// the caller's decision.
func (q *Queue) Retry(ctx context.Context, t *Task, at time.Time) (int64, error) {
	if q.closed.Load() {
		return 0, fmt.Errorf("retry task %d: %w", t.ID, ErrClosed)
	}
	now := time.Now()
	ins, err := q.b.Insert(ctx, nil, []storage.Row{{Task: t.Name, Args: t.Args, CreatedAt: now,
		Priority: t.Priority, RunAt: registry.Options{RunAt: at}.DueAt(now), Attempt: max(t.Attempt, 1) + 1,
		MaxAttempts: t.MaxAttempts, Timeout: t.Timeout, SerialKey: t.SerialKey}})
	if err != nil {
		return 0, fmt.Errorf("retry task %d: %w", t.ID, err)
	}
	return ins[0].ID, nil
}

// Stats is a snapshot of the queue: the domain's QueueStats.
type Stats = snappea.QueueStats

// Stats counts the pending tasks and the age of the oldest ready one. The
// age of a task that was delayed counts from its enqueue, its delay
// included.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	return q.b.Stats(ctx)
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
// error matching ErrBadRow: it must be failed, not run. One bad row never
// costs the others claimed with it.
func (q *Queue) Claim(ctx context.Context, n int) ([]Task, error) {
	return q.b.Claim(ctx, n)
}

// Promote makes every delayed task due at or before now ready to claim,
// and returns when the next delayed task is due (the zero time if none is
// left). The daemon calls it before claiming and sleeps no longer than
// until next. When nothing is due it only reads, without the write lock.
func (q *Queue) Promote(ctx context.Context, now time.Time) (next time.Time, err error) {
	return q.b.Promote(ctx, now)
}

// Cancel deletes the pending task id, ready or delayed, so that it never
// runs. It reports false if there was none: it was never enqueued, or it
// has been claimed (it is running or has run) or cancelled already.
func (q *Queue) Cancel(ctx context.Context, id int64) (bool, error) {
	return q.b.Cancel(ctx, id)
}

// AddStats writes task statistics rows in one transaction, in turn with
// the queue's other writes: see storage.Backend.AddStats. The daemon's
// statistics Recorder writes through it.
func (q *Queue) AddStats(ctx context.Context, rows []snappea.StatsRow, before time.Time) error {
	if q.closed.Load() {
		return ErrClosed
	}
	return q.b.AddStats(ctx, rows, before)
}

// ReadStats returns the statistics rows of the minutes from the one
// containing since, by minute then task.
func (q *Queue) ReadStats(ctx context.Context, since time.Time) ([]snappea.StatsRow, error) {
	return q.b.ReadStats(ctx, since)
}

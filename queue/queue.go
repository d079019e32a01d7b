package queue

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snappea/snappea"
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
	ErrNoDatabase = errors.New("no queue database")
	// ErrArgsTooLarge: a task's encoded arguments are larger than
	// Config.MaxArgsSize. Nothing was written.
	ErrArgsTooLarge = errors.New("task arguments too large")
	// ErrDatabaseGone: the database file was removed or replaced (its data
	// directory deleted, say) since the Queue was opened, so what it wrote
	// would reach no daemon. Nothing was written; reopen the Queue.
	ErrDatabaseGone = errors.New("queue database gone")
)

// DefaultMaxArgsSize is Config.MaxArgsSize's default: 1 MiB.
const DefaultMaxArgsSize = 1 << 20

// goneCheckEvery is how often, at most, the write path checks that the
// database file is still the one opened (see ErrDatabaseGone).
const goneCheckEvery = time.Second

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
	// by a committed task not yet run makes the enqueue a duplicate.
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
// goroutines; several processes may have their own at the same time.
type Queue struct {
	cfg Config
	db  *sql.DB
	log *slog.Logger

	// writeMu serialises this process's own write statements, and takes
	// turns with other processes' (see writeLock), so that writers queue
	// here instead of in SQLite's busy handler, which sleeps a millisecond
	// and more between tries.
	writeMu *writeLock

	insert    *sql.Stmt
	insertNew *sql.Stmt // insert for a task without options
	keyHolder *sql.Stmt
	claim     *sql.Stmt
	nextDue   *sql.Stmt
	promote   *sql.Stmt
	countDue  *sql.Stmt
	idSpan    *sql.Stmt

	backlog backlog

	inlineID atomic.Int64

	// The database file as opened, and when the write path last checked
	// that it is still at DBPath (Unix ns); gone once it was not.
	dbFile    os.FileInfo
	goneAt    atomic.Int64
	goneEvery time.Duration
	gone      atomic.Bool

	closed atomic.Bool
}

// The statements on the hot paths. Claim, next-due and promote are each
// one range of the claim index on (run_at, priority DESC, id); a test
// checks their plans.
const (
	// ON CONFLICT DO NOTHING: the only unique constraint a new row can
	// break is the key's (ids come from AUTOINCREMENT), so a pending key
	// makes the insert write nothing, under the write lock: two producers
	// can never both write one key.
	insertSQL = `INSERT INTO snappea_tasks
		(task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
	// A task without options, the common case: the columns' defaults are
	// "no options", and binding three values instead of nine is measurably
	// cheaper in EnqueueMany.
	insertNewSQL = `INSERT INTO snappea_tasks (task, args, created_at) VALUES (?, ?, ?)`
	keyHolderSQL = `SELECT id FROM snappea_tasks WHERE key = ?`
	// modernc's SQLite is built without DELETE ... LIMIT, hence the
	// subquery.
	claimSQL = `DELETE FROM snappea_tasks WHERE id IN
		(SELECT id FROM snappea_tasks WHERE run_at = 0 ORDER BY priority DESC, id LIMIT ?)
		RETURNING id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key`
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

// Open opens (creating if needed) the queue database and applies any
// migrations it lacks. It refuses a database written by a newer snappea.
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.MustExist {
		if _, err := os.Stat(cfg.DBPath); errors.Is(err, os.ErrNotExist) {
			abs, _ := filepath.Abs(cfg.DBPath)
			return nil, fmt.Errorf("open queue: %w at %s (MustExist is set): the daemon creates it when it starts; check the path, which producer and daemon must agree on", ErrNoDatabase, abs)
		}
	}
	db, err := OpenDB(ctx, cfg.DBPath, cfg.BusyTimeout)
	if err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, db: db, log: cfg.Logger, writeMu: openWriteLock(cfg.DBPath, cfg.BusyTimeout),
		goneEvery: goneCheckEvery}
	q.goneAt.Store(time.Now().UnixNano())
	if q.dbFile, err = os.Stat(cfg.DBPath); err != nil {
		q.writeMu.close()
		db.Close()
		return nil, fmt.Errorf("open queue: %w", err)
	}
	if err := q.prepare(ctx); err != nil {
		q.writeMu.close()
		db.Close()
		return nil, err
	}
	return q, nil
}

// AutoCheckpointPages is the size of the write-ahead log, in 4 KiB pages,
// past which the commit that crosses it also checkpoints the log into the
// database file. SQLite's default is 1000, which puts a checkpoint, with its
// fsync, inside one producer's commit every few hundred tasks: a quarter of
// single-transaction enqueue time and most of the pickup latency tail. The
// daemon checkpoints in the background instead and rewinds the log once it
// passes TruncateLogBytes (see RunCheckpoints), so that while it runs the
// log stays within a few times that; the threshold only bounds the log
// (about 400 MiB) when no daemon does, for example while producers run
// with the daemon stopped. Even then a producer checkpoints rarely: one that
// does so every few thousand pages spends a fifth of its time on it. After a
// checkpoint the log file is cut back to JournalSizeLimit, and a daemon
// starting truncates it (see TruncateCheckpoint).
const AutoCheckpointPages = 100000

// JournalSizeLimit is what the write-ahead log file is cut back to, in
// bytes, once a checkpoint has emptied it.
const JournalSizeLimit = 64 << 20

// OpenDB opens the SQLite database at path the way snappea uses it (WAL,
// synchronous=NORMAL, busy timeout, IMMEDIATE transactions, checkpoints
// left to the daemon up to AutoCheckpointPages), creating the file and its
// directory private to the user, and migrates it.
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
	v.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", AutoCheckpointPages))
	v.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", JournalSizeLimit))
	v.Add("_pragma", "foreign_keys(ON)")
	v.Add("_pragma", "cache_size(-1024)")
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
	for _, p := range []struct {
		stmt **sql.Stmt
		name string
		sql  string
	}{
		{&q.insert, "insert", insertSQL},
		{&q.insertNew, "insert", insertNewSQL},
		{&q.keyHolder, "key lookup", keyHolderSQL},
		{&q.claim, "claim", claimSQL},
		{&q.nextDue, "next due", nextDueSQL},
		{&q.promote, "promote", promoteSQL},
		{&q.countDue, "backlog count", countDueSQL},
		{&q.idSpan, "id span", idSpanSQL},
	} {
		stmt, err := q.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare %s: %w", p.name, dbError(err))
		}
		*p.stmt = stmt
	}
	return nil
}

// Checkpoint copies what the write-ahead log holds into the database file,
// without waiting for readers or writers (a PASSIVE checkpoint), and returns
// how many pages the log held and how many of them are now in the file.
func (q *Queue) Checkpoint(ctx context.Context) (logPages, checkpointed int, err error) {
	var busy int
	err = q.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logPages, &checkpointed)
	if err != nil {
		return 0, 0, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	return logPages, checkpointed, nil
}

// TruncateLogBytes is the size of the write-ahead log file past which the
// daemon's checkpoint service rewinds the log in the writers' turn (see
// RunCheckpoints): 4 MiB, under a tenth of a second of single-task
// enqueues at 5,000/s (each commit adds three pages or so). The file itself
// is cut to zero bytes only past half of JournalSizeLimit or after a
// failure; otherwise the next commits reuse its space.
const TruncateLogBytes = 4 << 20

// truncateWait bounds how long a truncating checkpoint, which holds the
// writers' turn, waits for readers of the log to finish. A reader is done
// in well under a millisecond; one that is not makes the checkpoint give
// up for this time and try again at the next interval.
const truncateWait = 20 * time.Millisecond

// TruncateCheckpoint checkpoints the whole write-ahead log and truncates
// the log file to zero bytes, giving its disk space back. It takes the
// writers' turn for the while, so that it neither waits in SQLite's busy
// handler for a writer nor lets one add to the log meanwhile: producers
// wait for it as for any other write. After a PASSIVE Checkpoint has
// copied most of the log that is a millisecond or so; on a large log not
// checkpointed yet it is as long as copying it takes. It waits at most
// truncateWait for readers, then reports false: the log was not emptied
// this time (nothing is lost; try again later).
func (q *Queue) TruncateCheckpoint(ctx context.Context) (truncated bool, err error) {
	return q.lockedCheckpoint(ctx, "TRUNCATE")
}

// lockedCheckpoint runs a RESTART or TRUNCATE checkpoint in the writers'
// turn, waiting at most truncateWait for readers, and reports whether the
// log was emptied.
func (q *Queue) lockedCheckpoint(ctx context.Context, mode string) (bool, error) {
	conn, err := q.db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	defer conn.Close()
	// The pool's connections wait BusyTimeout; this one, for this
	// statement, only truncateWait.
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", truncateWait.Milliseconds())); err != nil {
		return false, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	defer func() {
		_, rerr := conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout = %d", q.cfg.BusyTimeout.Milliseconds()))
		if rerr != nil {
			// Never hand a connection with the short timeout back to
			// the pool.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	var busy, logPages, checkpointed int
	if err := q.writeMu.Lock(ctx); err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	start := time.Now()
	err = conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &logPages, &checkpointed)
	q.writeMu.Unlock()
	q.log.Debug("write-ahead log checkpointed in the writers' turn", "mode", mode, "held", time.Since(start),
		"emptied", busy == 0)
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", dbError(err))
	}
	return busy == 0, nil
}

// ReclaimSpace gives back the disk space the write-ahead log takes, with a
// TruncateCheckpoint, and fails if it could not: the daemon calls it
// after a write failed with ErrFull, before it writes again, so that its
// own writes do not use up space just freed before the log is truncated.
func (q *Queue) ReclaimSpace(ctx context.Context) error {
	ok, err := q.TruncateCheckpoint(ctx)
	if err != nil {
		return fmt.Errorf("reclaim disk space: %w", err)
	}
	if !ok {
		return errors.New("reclaim disk space: the write-ahead log is in use by a reader; will try again")
	}
	return nil
}

// RunCheckpoints checkpoints every interval until ctx ends, keeping the
// write-ahead log short and checkpoints out of producers' commits; the
// daemon runs it as a service. Failures are logged and retried at the next
// interval. It returns nil when ctx ends.
//
// Each look is a PASSIVE checkpoint, which waits for no one; once the log
// file has grown past TruncateLogBytes, or after a checkpoint failed, a
// TruncateCheckpoint follows it. PASSIVE alone does not bound the log
// under sustained writes: it copies the log up to the last commit before
// it started, but SQLite only rewinds the log to its start when a writer
// begins while every frame has been copied and no reader is using the log.
// At thousands of commits a second one always lands while the checkpoint
// runs (the daemon's own claims are commits too), so the next writer finds
// the log not fully copied and appends to it; the log grows without end,
// each checkpoint takes longer as it does, making a commit during it ever
// more certain, until it reaches AutoCheckpointPages and producers' commits
// checkpoint it themselves (100-340 ms each, over and over), and the first
// commit after the log is finally rewound pays for cutting the file back to
// JournalSizeLimit (about 60 ms). Readers holding an old snapshot would
// stop it too, but the daemon's reads are single statements, done in well
// under a millisecond: the writers are what PASSIVE cannot get ahead of.
//
// Truncating also gives the log's disk space back, which is how a daemon
// on a file system that filled up recovers once a little space is freed:
// the checkpoint needs room only for the pages it adds to the database
// file, and then the whole log file is free again. A checkpoint that
// failed is therefore retried at every interval, whether or not anything
// was written since (on a full disk, nothing can be).
func (q *Queue) RunCheckpoints(ctx context.Context, interval time.Duration) error {
	t := time.NewTimer(interval)
	defer t.Stop()
	failing := false
	// An idle database is left alone: the log file's size and time only
	// change when something was written. While nothing is, the look is
	// made less and less often, up to once a second, so that an idle daemon
	// costs nothing; the first write brings it back to interval. Only a
	// look that left the log fully checkpointed counts as the last.
	var last os.FileInfo
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fi, err := os.Stat(q.cfg.DBPath + "-wal")
		if err == nil && !failing && last != nil && fi.Size() == last.Size() && fi.ModTime().Equal(last.ModTime()) {
			wait = min(2*wait, max(interval, time.Second))
			t.Reset(wait)
			continue
		}
		wait = interval
		t.Reset(wait)
		last = nil
		done, err := q.checkpointOnce(ctx, fi, failing)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				q.log.Warn("checkpointing the write-ahead log failed; will retry", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			q.log.Info("checkpointing the write-ahead log works again")
		}
		failing = false
		if done {
			// Stat again: a truncation changed the file.
			if fi, err := os.Stat(q.cfg.DBPath + "-wal"); err == nil {
				last = fi
			}
		}
	}
}

// checkpointOnce is one look of RunCheckpoints at the log, whose file fi
// describes (nil if it could not be read). It reports whether the log is
// now fully checkpointed. A RESTART checkpoint, in the writers' turn, is
// the cheap way to rewind the log: it lets the next commit write from the
// file's start, reusing its space. The file is truncated instead after a
// failure (to give the space back) or when it is so large that the next
// commit would pay for cutting it back to JournalSizeLimit.
func (q *Queue) checkpointOnce(ctx context.Context, fi os.FileInfo, failed bool) (done bool, err error) {
	logPages, checkpointed, err := q.Checkpoint(ctx)
	if err != nil {
		return false, err
	}
	if failed {
		return q.lockedCheckpoint(ctx, "TRUNCATE")
	}
	if fi == nil || fi.Size() < TruncateLogBytes {
		return checkpointed == logPages, nil
	}
	// Commits made while the first pass ran are copied by a second, so
	// that the pass in the writers' turn has only a few to copy.
	if _, _, err := q.Checkpoint(ctx); err != nil {
		return false, err
	}
	mode := "RESTART"
	if fi.Size() > JournalSizeLimit/2 {
		mode = "TRUNCATE"
	}
	return q.lockedCheckpoint(ctx, mode)
}

// Close closes the database. Tasks already enqueued stay queued.
func (q *Queue) Close() error {
	if q.closed.Swap(true) {
		return nil
	}
	err := q.db.Close()
	q.writeMu.close()
	return err
}

// DB returns the queue's database, for callers that want their own
// statements in the same transaction as an enqueue (see EnqueueTx). Its
// transactions begin IMMEDIATE.
func (q *Queue) DB() *sql.DB { return q.db }

// Config returns the queue's configuration with defaults filled in.
func (q *Queue) Config() Config { return q.cfg }

// checkGone fails with ErrDatabaseGone once the file at DBPath is no
// longer the database opened: it was removed, or replaced. It looks at
// most every goneEvery, so that a write costs one clock read.
func (q *Queue) checkGone(now time.Time) error {
	if q.gone.Load() {
		return q.goneErr()
	}
	ns := now.UnixNano()
	if at := q.goneAt.Load(); ns-at < int64(q.goneEvery) || !q.goneAt.CompareAndSwap(at, ns) {
		return nil
	}
	fi, err := os.Stat(q.cfg.DBPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return nil // cannot tell (permissions?): SQLite will say if it cannot write
	}
	if err == nil && os.SameFile(fi, q.dbFile) {
		return nil
	}
	q.gone.Store(true)
	return q.goneErr()
}

func (q *Queue) goneErr() error {
	return fmt.Errorf("%w: the database file %s was removed or replaced since the queue was opened (data directory deleted?); nothing was written, reopen the queue", ErrDatabaseGone, q.cfg.DBPath)
}

// turn takes the write turn for one autocommit write, first checking that
// the queue is open and its database still there. It returns the context
// the write's statements run with: ctx, or, when taking the turn took
// time, ctx ending at the deadline that makes BusyTimeout the total wait.
// The caller must call endTurn with the cancel function (nil or not).
func (q *Queue) turn(ctx context.Context, now time.Time) (context.Context, context.CancelFunc, error) {
	if q.closed.Load() {
		return nil, nil, ErrClosed
	}
	if err := q.checkGone(now); err != nil {
		return nil, nil, err
	}
	deadline, err := q.writeMu.lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	if deadline.IsZero() {
		return ctx, nil, nil
	}
	sctx, cancel := context.WithDeadline(ctx, deadline)
	return sctx, cancel, nil
}

// endTurn gives the turn taken with turn up.
func (q *Queue) endTurn(cancel context.CancelFunc) {
	q.writeMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// writeErr is dbError for a statement run with turn's context sctx, to
// be called before endTurn: the end of the busy timeout, not the caller's
// context, is ErrBusy.
func (q *Queue) writeErr(ctx, sctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && sctx.Err() != nil {
		return q.busyTimedOut(err)
	}
	return dbError(err)
}

// busyTimedOut says that a write that waited for its turn ran out of the
// busy timeout in the database.
func (q *Queue) busyTimedOut(err error) error {
	return fmt.Errorf("%w (waited the busy timeout, %v, for other writers and the database's write lock; retry, or find the long transaction): %w", ErrBusy, q.cfg.BusyTimeout, err)
}

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

// row is one snappea_tasks row about to be written.
type row struct {
	task        string
	args        []byte
	created     int64 // Unix ns
	priority    int
	runAt       int64 // 0: ready; else Unix ns when due
	attempt     int
	maxAttempts int
	timeout     time.Duration
	key         string // "": none
}

// plain reports whether r has no options: the insertNew statement, which
// leaves every option column at its default, writes it.
func (r *row) plain() bool {
	return r.priority == 0 && r.runAt == 0 && r.attempt == 1 && r.maxAttempts == 0 && r.timeout == 0 && r.key == ""
}

// insert writes r with the statement that fits it.
func (r *row) insert(ctx context.Context, st *stmts) (sql.Result, error) {
	if r.plain() {
		return st.get(ctx, &st.insertNew, st.q.insertNew).ExecContext(ctx, r.task, r.args, r.created)
	}
	var key any // NULL
	if r.key != "" {
		key = r.key
	}
	return st.get(ctx, &st.insert, st.q.insert).ExecContext(ctx, r.task, r.args, r.created, r.priority, r.runAt,
		r.attempt, r.maxAttempts, int64(r.timeout), key)
}

// stmts are the queue's statements for writing rows: as prepared, or, in
// a transaction, bound to it, each once, when first used.
type stmts struct {
	q                            *Queue
	tx                           *sql.Tx // nil: autocommit
	insert, insertNew, keyHolder *sql.Stmt
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

// newRow encodes and checks a task for enqueueing at now, with opts over
// the definition's defaults.
func (q *Queue) newRow(task string, args any, opts registry.Options, now time.Time) (row, error) {
	b, err := q.encode(task, args)
	if err != nil {
		return row{}, err
	}
	if q.cfg.Registry != nil {
		opts = q.cfg.Registry.Options(task).Merge(opts)
	}
	if err := opts.Validate(); err != nil {
		return row{}, fmt.Errorf("enqueue %s: %w", task, err)
	}
	r := row{task: task, args: b, created: now.UnixNano(), priority: opts.Priority, attempt: 1,
		maxAttempts: opts.MaxAttempts, timeout: opts.Timeout, key: opts.Key}
	if !q.cfg.Inline {
		r.runAt = dueAt(opts, now)
	}
	return r, nil
}

// dueAt is a task's run_at: 0 if it may run now, else when it may, in Unix
// ns.
func dueAt(opts registry.Options, now time.Time) int64 {
	switch {
	case !opts.RunAt.IsZero():
		if opts.RunAt.After(now) {
			return unixNano(opts.RunAt)
		}
	case opts.Delay > 0:
		at := now.UnixNano() + int64(opts.Delay)
		if at < 0 { // overflow: beyond the year 2262
			return math.MaxInt64
		}
		return at
	}
	return 0
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
func write(ctx context.Context, st *stmts, r *row) (registry.Result, error) {
	res, err := r.insert(ctx, st)
	if err != nil {
		return registry.Result{}, fmt.Errorf("enqueue %s: %w", r.task, dbError(err))
	}
	if r.key != "" {
		n, err := res.RowsAffected()
		if err != nil {
			return registry.Result{}, fmt.Errorf("enqueue %s: %w", r.task, err)
		}
		if n == 0 {
			var id int64
			if err := st.get(ctx, &st.keyHolder, st.q.keyHolder).QueryRowContext(ctx, r.key).Scan(&id); err != nil {
				return registry.Result{}, fmt.Errorf("enqueue %s: find the task holding its key: %w", r.task, dbError(err))
			}
			return registry.Result{ID: id, Duplicate: true}, nil
		}
	}
	id, err := res.LastInsertId()
	if err != nil {
		return registry.Result{}, fmt.Errorf("enqueue %s: %w", r.task, err)
	}
	return registry.Result{ID: id}, nil
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
// that task's id with Duplicate set, and the error nil. A delayed task is
// written as such and the daemon is woken all the same, to learn the new
// earliest due time.
func (q *Queue) EnqueueWith(ctx context.Context, task string, args any, opts registry.Options) (registry.Result, error) {
	now := time.Now()
	r, err := q.newRow(task, args, opts, now)
	if err != nil {
		return registry.Result{}, err
	}
	if q.cfg.Inline {
		return q.runInline(ctx, &r)
	}
	if q.closed.Load() {
		return registry.Result{}, ErrClosed
	}
	reserved, err := q.reserve(ctx, []row{r})
	if err != nil {
		return registry.Result{}, err
	}
	var res registry.Result
	if r.key == "" {
		// One autocommit statement: no BEGIN/COMMIT round trips, and SQLite
		// takes the write lock (with the busy timeout) at its start.
		var sctx context.Context
		var cancel context.CancelFunc
		if sctx, cancel, err = q.turn(ctx, now); err != nil {
			err = fmt.Errorf("enqueue %s: %w", task, err)
		} else {
			res, err = write(sctx, &stmts{q: q}, &r)
			if err != nil && ctx.Err() == nil && sctx.Err() != nil {
				err = fmt.Errorf("enqueue %s: %w", task, q.busyTimedOut(err))
			}
			q.endTurn(cancel)
		}
	} else {
		// The insert and, for a duplicate, the look-up of the key's holder
		// in one transaction, so the id returned is the holder's even if
		// the daemon claims it meanwhile.
		var werr error
		err = q.writeTx(ctx, func(tx *sql.Tx) error {
			res, werr = write(ctx, &stmts{q: q, tx: tx}, &r)
			return werr
		}, false)
		if err != nil && err != werr {
			err = fmt.Errorf("enqueue %s: %w", task, err)
		}
	}
	if err != nil {
		q.release(reserved)
		return registry.Result{}, err
	}
	if res.Duplicate {
		q.release(reserved)
		return res, nil
	}
	q.wake()
	return res, nil
}

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
	now := time.Now()
	r, err := q.newRow(task, args, opts, now)
	if err != nil {
		return registry.Result{}, err
	}
	if err := q.checkGone(now); err != nil {
		return registry.Result{}, fmt.Errorf("enqueue %s: %w", task, err)
	}
	reserved, err := q.reserve(ctx, []row{r})
	if err != nil {
		return registry.Result{}, err
	}
	res, err := write(ctx, &stmts{q: q, tx: tx}, &r)
	if err != nil || res.Duplicate {
		q.release(reserved)
	}
	return res, err
}

// EnqueueMany queues jobs in one transaction, all or none, and wakes the
// daemon once. It returns their ids in order; a job whose Key a pending
// task holds is not written and its id is 0.
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
	rows, err := q.newRows(jobs)
	if err != nil {
		return nil, err
	}
	reserved, err := q.reserve(ctx, rows)
	if err != nil {
		return nil, err
	}
	var ids []int64
	err = q.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		ids, err = writeMany(ctx, tx, q, rows)
		return err
	}, false)
	if err == nil {
		q.wake()
	}
	if err != nil {
		q.release(reserved)
		return nil, err
	}
	q.release(dueDuplicates(rows, ids))
	return ids, nil
}

// EnqueueManyTx queues jobs inside the caller's transaction; as with
// EnqueueTx, call Notify after commit. Ids are as with EnqueueMany.
func (q *Queue) EnqueueManyTx(ctx context.Context, tx *sql.Tx, jobs []Job) ([]int64, error) {
	rows, err := q.newRows(jobs)
	if err != nil {
		return nil, err
	}
	if err := q.checkGone(time.Now()); err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	reserved, err := q.reserve(ctx, rows)
	if err != nil {
		return nil, err
	}
	ids, err := writeMany(ctx, tx, q, rows)
	if err != nil {
		q.release(reserved)
		return nil, err
	}
	q.release(dueDuplicates(rows, ids))
	return ids, nil
}

func (q *Queue) newRows(jobs []Job) ([]row, error) {
	rows := make([]row, len(jobs))
	now := time.Now()
	for i, j := range jobs {
		var err error
		if rows[i], err = q.newRow(j.Task, j.Args, j.Options, now); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// dueDuplicates counts the rows reserve counted that were not written.
func dueDuplicates(rows []row, ids []int64) int {
	n := 0
	for i := range rows {
		if ids[i] == 0 && rows[i].runAt == 0 {
			n++
		}
	}
	return n
}

// writeMany inserts rows in tx and returns their ids, 0 for a duplicate.
func writeMany(ctx context.Context, tx *sql.Tx, q *Queue, rows []row) ([]int64, error) {
	ids := make([]int64, len(rows))
	st := &stmts{q: q, tx: tx}
	for i := range rows {
		res, err := write(ctx, st, &rows[i])
		if err != nil {
			return nil, err
		}
		if !res.Duplicate {
			ids[i] = res.ID
		}
	}
	return ids, nil
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
	if err := q.writeTx(ctx, fn, true); err != nil {
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
	return q.writeTx(ctx, fn, true)
}

// writeTx runs fn in a transaction, in turn with the queue's other
// writes, and commits if fn returns nil. With user set fn is the caller's,
// and a write of ours that it calls fails with ErrInsideInTx.
func (q *Queue) writeTx(ctx context.Context, fn func(tx *sql.Tx) error, user bool) error {
	if q.closed.Load() {
		return ErrClosed
	}
	if err := q.checkGone(time.Now()); err != nil {
		return err
	}
	deadline, err := q.writeMu.lock(ctx)
	if err != nil {
		return err
	}
	defer q.writeMu.Unlock()
	var tx *sql.Tx
	if deadline.IsZero() {
		tx, err = q.db.BeginTx(ctx, nil)
	} else {
		// What is left of the busy timeout bounds BEGIN's wait for SQLite's
		// lock, and only BEGIN's: the transaction's context must not end
		// at the deadline, hence a timer disarmed once BEGIN returns.
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		timer := time.AfterFunc(time.Until(deadline), cancel)
		tx, err = q.db.BeginTx(tctx, nil)
		if !timer.Stop() && ctx.Err() == nil {
			if err == nil {
				tx.Rollback()
			}
			return fmt.Errorf("begin transaction: %w", q.busyTimedOut(context.DeadlineExceeded))
		}
	}
	if err != nil {
		return fmt.Errorf("begin transaction: %w", dbError(err))
	}
	if user {
		q.writeMu.owner.Store(goid())
		defer q.writeMu.owner.Store(0)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", dbError(err))
	}
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

// runInline runs r now, as Inline mode's Enqueue, unless a committed task
// not yet run holds its key.
func (q *Queue) runInline(ctx context.Context, r *row) (registry.Result, error) {
	if r.key != "" {
		var id int64
		err := q.keyHolder.QueryRowContext(ctx, r.key).Scan(&id)
		if err == nil {
			return registry.Result{ID: id, Duplicate: true}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return registry.Result{}, fmt.Errorf("enqueue %s: find the task holding its key: %w", r.task, dbError(err))
		}
	}
	id := q.inlineID.Add(1)
	return registry.Result{ID: id}, q.run(ctx, Task{ID: id, Name: r.task, Args: r.args,
		EnqueuedAt: time.Unix(0, r.created), Priority: r.priority, Attempt: r.attempt,
		MaxAttempts: r.maxAttempts, Timeout: r.timeout, Key: r.key})
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
	if n <= 0 {
		return nil, nil
	}
	if err := q.writeMu.Lock(ctx); err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
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
	// Not sized by n alone: n is the free worker slots, which may be far
	// more than the tasks waiting. Up to claimPrealloc rows fill it without
	// a copy; more grow it by the rows returned.
	tasks := make([]Task, 0, min(n, claimPrealloc))
	// Every column is scanned into an any, which cannot fail whatever the
	// row holds (a failed Scan would leave rows deleted and never handed
	// out), and converted per row.
	var cols [9]any
	var args argsColumn
	dest := []any{&cols[0], &cols[1], &args, &cols[3], &cols[4], &cols[5], &cols[6], &cols[7], &cols[8]}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			// Not expected with *any destinations; the row is deleted, so it
			// is handed out as a bad one rather than lost without a word.
			// The error is not quoted: conversion errors quote values.
			tasks = append(tasks, Task{Err: fmt.Errorf("%w: the row could not be read", ErrBadRow)})
			continue
		}
		tasks = append(tasks, q.taskFromRow(&cols, &args))
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, fmt.Errorf("claim tasks: %w", dbError(err))
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("claim tasks: %w", dbError(err))
	}
	// RETURNING gives no order.
	slices.SortFunc(tasks, func(a, b Task) int {
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
func (q *Queue) taskFromRow(c *[9]any, args *argsColumn) Task {
	var t Task
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
	switch {
	case len(bad) > 0:
		t.Err = fmt.Errorf("%w: %s", ErrBadRow, strings.Join(bad, "; "))
	case len(t.Args) > q.cfg.MaxArgsSize:
		t.Err = fmt.Errorf("%w: arguments are %d bytes, over the limit of %d (MaxArgsSize)",
			ErrBadRow, len(t.Args), q.cfg.MaxArgsSize)
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
func (q *Queue) Promote(ctx context.Context, now time.Time) (next time.Time, err error) {
	due, err := q.readNextDue(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if due == 0 || due > unixNano(now) {
		return unixTime(due), nil
	}
	if err := q.writeMu.Lock(ctx); err != nil {
		return time.Time{}, fmt.Errorf("promote due tasks: %w", err)
	}
	_, err = q.promote.ExecContext(ctx, unixNano(now))
	q.writeMu.Unlock()
	if err != nil {
		return time.Time{}, fmt.Errorf("promote due tasks: %w", dbError(err))
	}
	due, err = q.readNextDue(ctx)
	if err != nil {
		return time.Time{}, err
	}
	return unixTime(due), nil
}

// readNextDue returns the earliest run_at of the delayed tasks, 0 if none.
// A run_at that is not an integer (a REAL such as Python's time.time(), or
// TEXT), which only a table that is not STRICT holds, would otherwise be
// the earliest forever: those rows are failed first (see failBadRunAt).
func (q *Queue) readNextDue(ctx context.Context) (int64, error) {
	for swept := false; ; swept = true {
		var due any
		if err := q.nextDue.QueryRowContext(ctx).Scan(&due); err != nil {
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
		if err := q.failBadRunAt(ctx); err != nil {
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
func (q *Queue) failBadRunAt(ctx context.Context) error {
	var n int64
	err := q.writeTx(ctx, func(tx *sql.Tx) error {
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
	q.log.Warn("delayed tasks whose run_at is not an integer (Unix nanoseconds) were failed, not run; see snappea failed list",
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
// runs. It reports false if there was none: it was never enqueued, or it
// has been claimed (it is running or has run) or cancelled already.
func (q *Queue) Cancel(ctx context.Context, id int64) (bool, error) {
	sctx, cancel, err := q.turn(ctx, time.Now())
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, err)
	}
	res, err := q.db.ExecContext(sctx, `DELETE FROM snappea_tasks WHERE id = ?`, id)
	err = q.writeErr(ctx, sctx, err)
	q.endTurn(cancel)
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("cancel task %d: %w", id, err)
	}
	return n > 0, nil
}

// Retry enqueues t again, as a new task with its own id, for its next
// attempt: the same name, arguments, priority, timeout and MaxAttempts,
// Attempt one more, ready at at (now if at is not in the future), and no
// Key, which t's claim freed. It wakes the daemon and returns the new id.
// Retries do not count against MaxBacklog. Whether t has attempts left is
// the caller's decision.
func (q *Queue) Retry(ctx context.Context, t *Task, at time.Time) (int64, error) {
	now := time.Now()
	r := row{task: t.Name, args: nonNil(t.Args), created: now.UnixNano(), priority: t.Priority,
		runAt: dueAt(registry.Options{RunAt: at}, now), attempt: max(t.Attempt, 1) + 1,
		maxAttempts: t.MaxAttempts, timeout: t.Timeout}
	sctx, cancel, err := q.turn(ctx, now)
	if err != nil {
		return 0, fmt.Errorf("retry task %d: %w", t.ID, err)
	}
	res, err := write(sctx, &stmts{q: q}, &r)
	if err != nil && ctx.Err() == nil && sctx.Err() != nil {
		err = q.busyTimedOut(err)
	}
	q.endTurn(cancel)
	if err != nil {
		return 0, fmt.Errorf("retry task %d: %w", t.ID, err)
	}
	q.wake()
	return res.ID, nil
}

// nonNil keeps the NOT NULL args column satisfied by a task built without
// arguments.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Stats is a snapshot of the queue: the domain's QueueStats.
type Stats = snappea.QueueStats

// Stats counts the pending tasks and the age of the oldest ready one. The
// age of a task that was delayed counts from its enqueue, its delay
// included.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	// any: a table that is not STRICT may hold a run_at or created_at of
	// another type, and status must still answer. Such a value counts as
	// no due time, no age.
	var nextDue, oldestID, oldestAt any
	// One statement: one consistent snapshot, without a transaction (ours
	// begin IMMEDIATE, taking the write lock).
	err := q.db.QueryRowContext(ctx, `WITH oldest AS (SELECT min(id) AS id FROM snappea_tasks WHERE run_at = 0)
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
	case sqlite3.SQLITE_FULL:
		return fmt.Errorf("%w (free space on the file system holding the database; a running daemon then truncates the write-ahead log and catches up): %w", ErrFull, err)
	case sqlite3.SQLITE_READONLY:
		return fmt.Errorf("%w (check the permissions of the database file, its -wal and -shm files and its directory): %w", ErrReadOnly, err)
	case sqlite3.SQLITE_CANTOPEN:
		return fmt.Errorf("cannot open the database file (does its directory exist, and may this user write there?): %w", err)
	}
	return err
}

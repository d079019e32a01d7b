package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/migrations"
	"github.com/snappea/snappea/storage"
	"github.com/snappea/snappea/wakeup"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors of the SQLite backend, beside the domain's.
var (
	// ErrNoDatabase: Config.MustExist is set and the database file does
	// not exist.
	ErrNoDatabase = errors.New("no queue database")
	// ErrDatabaseGone: the database file was removed or replaced (its data
	// directory deleted, say) since the Backend was opened, so what it
	// wrote would reach no daemon. Nothing was written; reopen it.
	ErrDatabaseGone = errors.New("queue database gone")
)

// Defaults of Config's fields.
const (
	DefaultBusyTimeout = 5 * time.Second
	DefaultMaxArgsSize = 1 << 20
	// DefaultCheckpointInterval is how often Maintenance checkpoints the
	// write-ahead log, so that producers' commits never have to.
	DefaultCheckpointInterval = 200 * time.Millisecond
)

// Config says where the database lives and how to open it. Path and
// WakeupDir are required; the zero value of every other field means its
// default.
type Config struct {
	// Path is the database file, created (mode 0600, its directory 0700)
	// if missing unless MustExist is set.
	Path string
	// WakeupDir is the directory whose wake file tells the daemon that
	// tasks were queued (package wakeup).
	WakeupDir string
	// BusyTimeout is the longest a write waits for the database, in all:
	// for this process's other writes, for the writers' turn with other
	// processes and for SQLite's write lock. Past it the write fails with
	// snappea.ErrBusy, having written nothing. Default 5s.
	BusyTimeout time.Duration
	// MustExist makes Open fail with ErrNoDatabase if the database file
	// does not exist, instead of creating it.
	MustExist bool
	// MaxArgsSize is the largest arguments a claimed task may have, in
	// bytes; a larger one is returned with Err set. Default 1 MiB.
	MaxArgsSize int
	// CheckpointInterval is how often Maintenance checkpoints the
	// write-ahead log. Default DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Logger receives warnings (a wakeup that could not be sent, rows
	// failed for a bad run_at). Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Path == "" {
		return errors.New("sqlite config: Path is empty")
	}
	if c.WakeupDir == "" {
		return errors.New("sqlite config: WakeupDir is empty")
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.BusyTimeout < 0 {
		return fmt.Errorf("sqlite config: BusyTimeout %v is negative", c.BusyTimeout)
	}
	if c.MaxArgsSize == 0 {
		c.MaxArgsSize = DefaultMaxArgsSize
	}
	if c.MaxArgsSize < 0 {
		return fmt.Errorf("sqlite config: MaxArgsSize %d is negative", c.MaxArgsSize)
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Backend is a snappea database in an SQLite file, safe for concurrent
// use; several processes may have their own on the same file.
type Backend struct {
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
	replace   *sql.Stmt // a Row.Replace's overwrite of its key's holder
	claim     *sql.Stmt
	nextDue   *sql.Stmt
	promote   *sql.Stmt
	countDue  *sql.Stmt
	idSpan    *sql.Stmt
	ledger    ledgerStmts

	// The database file as opened, and when the write path last checked
	// that it is still at Path (Unix ns); gone once it was not.
	dbFile    os.FileInfo
	goneAt    atomic.Int64
	goneEvery time.Duration
	gone      atomic.Bool

	closed atomic.Bool
}

// Open opens (creating if needed) the database and applies any
// migrations it lacks. It refuses a database written by a newer snappea
// with an error matching storage.ErrSchemaTooNew.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.MustExist {
		if _, err := os.Stat(cfg.Path); errors.Is(err, os.ErrNotExist) {
			abs, _ := filepath.Abs(cfg.Path)
			return nil, fmt.Errorf("open queue: %w at %s (MustExist is set): the daemon creates it when it starts; check the path, which producer and daemon must agree on", ErrNoDatabase, abs)
		}
	}
	db, err := OpenDB(ctx, cfg.Path, cfg.BusyTimeout)
	if err != nil {
		return nil, err
	}
	return newBackend(ctx, cfg, db, openWriteLock(cfg.Path, cfg.BusyTimeout))
}

// newBackend prepares the statements on db, opened as cfg says.
func newBackend(ctx context.Context, cfg Config, db *sql.DB, l *writeLock) (*Backend, error) {
	b := &Backend{cfg: cfg, db: db, log: cfg.Logger, writeMu: l, goneEvery: goneCheckEvery}
	b.goneAt.Store(time.Now().UnixNano())
	var err error
	if b.dbFile, err = os.Stat(cfg.Path); err != nil {
		l.close()
		db.Close()
		return nil, fmt.Errorf("open queue: %w", err)
	}
	if err := b.prepare(ctx); err != nil {
		l.close()
		db.Close()
		return nil, err
	}
	return b, nil
}

// Close closes the database. Tasks already enqueued stay queued.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	err := b.db.Close()
	b.writeMu.close()
	return err
}

// DB returns the database, for callers that want their own statements in
// the same transaction as an enqueue. Its transactions begin IMMEDIATE.
func (b *Backend) DB() *sql.DB { return b.db }

// Path is the database file.
func (b *Backend) Path() string { return b.cfg.Path }

// SchemaVersion is the highest migration applied to the database.
func (b *Backend) SchemaVersion(ctx context.Context) (int, error) {
	return migrations.Version(ctx, b.db)
}

// WriteTx runs fn in a transaction, in turn with the other writes in this
// and other processes, and commits if fn returns nil (rolls back
// otherwise). A write of this Backend called from fn fails at once with
// ErrInsideInTx. Waiting for the turn and for the database honours ctx and
// lasts at most BusyTimeout in all.
func (b *Backend) WriteTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return b.writeTx(ctx, fn, true)
}

// Wake tells the daemon that a transaction that inserted tasks has
// committed: it touches the wake file.
func (b *Backend) Wake() error {
	if err := wakeup.Notify(b.cfg.WakeupDir); err != nil {
		return fmt.Errorf("notify daemon: %w", err)
	}
	return nil
}

// wake is Wake after a commit of our own: the task is safely queued
// whatever happens here, so a failure is logged, not returned (a caller
// that retried would enqueue twice). The daemon's fallback poll finds it.
func (b *Backend) wake() {
	if err := wakeup.Notify(b.cfg.WakeupDir); err != nil {
		b.log.Warn("task queued, but the daemon could not be woken; it will find the task at its next poll",
			"err", err)
	}
}

// Waker watches the wakeup directory. Its Cancels is nil: on SQLite a
// running task is cancelled through the daemon's control socket.
func (b *Backend) Waker(ctx context.Context) (storage.Waker, error) {
	w, err := wakeup.New(wakeup.Config{Dir: b.cfg.WakeupDir, Logger: b.log})
	if err != nil {
		return nil, err
	}
	return waker{w}, nil
}

type waker struct{ *wakeup.Watcher }

func (waker) Cancels() <-chan int64 { return nil }

// RequestCancel is unsupported on SQLite, whose daemon is reached through
// its control socket: it returns errors.ErrUnsupported.
func (b *Backend) RequestCancel(ctx context.Context, id int64) error {
	return fmt.Errorf("cancel running task %d through the database: %w (use the daemon's control socket)", id, errors.ErrUnsupported)
}

// Maintenance checkpoints the write-ahead log every CheckpointInterval
// (see RunCheckpoints), and once a minute removes the daemons gone for
// DaemonRemove, until ctx ends; it returns nil then.
func (b *Backend) Maintenance(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.RunCheckpoints(ctx, b.cfg.CheckpointInterval)
	}()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := b.removeGone(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("maintenance: will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			<-done
			return nil
		case <-t.C:
		}
	}
}

var _ storage.Backend = (*Backend)(nil)

// goneCheckEvery is how often, at most, the write path checks that the
// database file is still the one opened (see ErrDatabaseGone).
const goneCheckEvery = time.Second

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
			return nil, fmt.Errorf("open database %s: %w: %w", path, snappea.ErrReadOnly, err)
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

func (b *Backend) prepare(ctx context.Context) error {
	for _, p := range []struct {
		stmt **sql.Stmt
		name string
		sql  string
	}{
		{&b.insert, "insert", insertSQL},
		{&b.insertNew, "insert", insertNewSQL},
		{&b.keyHolder, "key lookup", keyHolderSQL},
		{&b.replace, "replace", replaceSQL},
		{&b.claim, "claim", claimSQL},
		{&b.nextDue, "next due", nextDueSQL},
		{&b.promote, "promote", promoteSQL},
		{&b.countDue, "backlog count", countDueSQL},
		{&b.idSpan, "id span", idSpanSQL},
	} {
		stmt, err := b.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare %s: %w", p.name, dbError(err))
		}
		*p.stmt = stmt
	}
	return b.ledger.prepare(ctx, b.db)
}

// checkGone fails with ErrDatabaseGone once the file at DBPath is no
// longer the database opened: it was removed, or replaced. It looks at
// most every goneEvery, so that a write costs one clock read.
func (b *Backend) checkGone(now time.Time) error {
	if b.gone.Load() {
		return b.goneErr()
	}
	ns := now.UnixNano()
	if at := b.goneAt.Load(); ns-at < int64(b.goneEvery) || !b.goneAt.CompareAndSwap(at, ns) {
		return nil
	}
	fi, err := os.Stat(b.cfg.Path)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return nil // cannot tell (permissions?): SQLite will say if it cannot write
	}
	if err == nil && os.SameFile(fi, b.dbFile) {
		return nil
	}
	b.gone.Store(true)
	return b.goneErr()
}

func (b *Backend) goneErr() error {
	return fmt.Errorf("%w: the database file %s was removed or replaced since the queue was opened (data directory deleted?); nothing was written, reopen the queue", ErrDatabaseGone, b.cfg.Path)
}

// turn takes the write turn for one autocommit write, first checking that
// the queue is open and its database still there. It returns the context
// the write's statements run with: ctx, or, when taking the turn took
// time, ctx ending at the deadline that makes BusyTimeout the total wait.
// The caller must call endTurn with the cancel function (nil or not).
func (b *Backend) turn(ctx context.Context, now time.Time) (context.Context, context.CancelFunc, error) {
	if b.closed.Load() {
		return nil, nil, snappea.ErrClosed
	}
	if err := b.checkGone(now); err != nil {
		return nil, nil, err
	}
	deadline, err := b.writeMu.lock(ctx)
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
func (b *Backend) endTurn(cancel context.CancelFunc) {
	b.writeMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// writeErr is dbError for a statement run with turn's context sctx, to
// be called before endTurn: the end of the busy timeout, not the caller's
// context, is snappea.ErrBusy.
func (b *Backend) writeErr(ctx, sctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && sctx.Err() != nil {
		return b.busyTimedOut(err)
	}
	return dbError(err)
}

// busyTimedOut says that a write that waited for its turn ran out of the
// busy timeout in the database.
func (b *Backend) busyTimedOut(err error) error {
	return fmt.Errorf("%w (waited the busy timeout, %v, for other writers and the database's write lock; retry, or find the long transaction): %w", snappea.ErrBusy, b.cfg.BusyTimeout, err)
}

// writeTx runs fn in a transaction, in turn with the queue's other
// writes, and commits if fn returns nil. With user set fn is the caller's,
// and a write of ours that it calls fails with ErrInsideInTx.
func (b *Backend) writeTx(ctx context.Context, fn func(tx *sql.Tx) error, user bool) error {
	if b.closed.Load() {
		return snappea.ErrClosed
	}
	if err := b.checkGone(time.Now()); err != nil {
		return err
	}
	deadline, err := b.writeMu.lock(ctx)
	if err != nil {
		return err
	}
	defer b.writeMu.Unlock()
	var tx *sql.Tx
	if deadline.IsZero() {
		tx, err = b.db.BeginTx(ctx, nil)
	} else {
		// What is left of the busy timeout bounds BEGIN's wait for SQLite's
		// lock, and only BEGIN's: the transaction's context must not end
		// at the deadline, hence a timer disarmed once BEGIN returns.
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		timer := time.AfterFunc(time.Until(deadline), cancel)
		tx, err = b.db.BeginTx(tctx, nil)
		if !timer.Stop() && ctx.Err() == nil {
			if err == nil {
				tx.Rollback()
			}
			return fmt.Errorf("begin transaction: %w", b.busyTimedOut(context.DeadlineExceeded))
		}
	}
	if err != nil {
		return fmt.Errorf("begin transaction: %w", dbError(err))
	}
	if user {
		b.writeMu.owner.Store(goid())
		defer b.writeMu.owner.Store(0)
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

// dbError marks SQLite's busy and read-only failures with snappea.ErrBusy and
// snappea.ErrReadOnly and says what a person can do about them, keeping the
// original error in the chain.
func dbError(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("%w (another process held the database's write lock past the busy timeout; retry, or find the long transaction): %w", snappea.ErrBusy, err)
	case sqlite3.SQLITE_FULL:
		return fmt.Errorf("%w (free space on the file system holding the database; a running daemon then truncates the write-ahead log and catches up): %w", snappea.ErrFull, err)
	case sqlite3.SQLITE_READONLY:
		return fmt.Errorf("%w (check the permissions of the database file, its -wal and -shm files and its directory): %w", snappea.ErrReadOnly, err)
	case sqlite3.SQLITE_CANTOPEN:
		return fmt.Errorf("cannot open the database file (does its directory exist, and may this user write there?): %w", err)
	}
	return err
}

package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/snappea/snappea/storage"
)

// Defaults of Config's fields.
const (
	DefaultSchema         = "snappea"
	DefaultMaxOpenConns   = 16
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxArgsSize    = 1 << 20
	DefaultDaemonGone     = 15 * time.Second
	DefaultDaemonRemove   = time.Hour
	DefaultVacuumEvery    = 10_000
)

// Config says which database to use and how. URL is required; the zero
// value of every other field means its default.
type Config struct {
	// URL is the server and database, as a postgres:// URL or a
	// "host=... dbname=..." string, as libpq reads them (PG* environment
	// variables fill in what it leaves out). Its password is never
	// printed: errors and String show it as xxxxx.
	URL string
	// Schema holds snappea's tables, created if missing. Default
	// "snappea". Lower-case letters, digits and _, starting with a
	// letter or _, at most 40 characters (it also names the
	// notification channels).
	Schema string
	// MaxOpenConns bounds the connections of the pool behind DB; the
	// daemon's Waker has one more of its own. Default 16.
	MaxOpenConns int
	// ConnectTimeout bounds each connection attempt. Default 5s.
	ConnectTimeout time.Duration
	// MaxArgsSize is the largest arguments a claimed task may have, in
	// bytes; a larger one is returned with Err set. Default 1 MiB.
	MaxArgsSize int
	// DaemonGone is how long after its last heartbeat a daemon is shown
	// as gone. Default 15s: three missed heartbeats at 5s.
	DaemonGone time.Duration
	// DaemonRemove is how long after its last heartbeat Maintenance
	// removes a gone daemon. Default 1h.
	DaemonRemove time.Duration
	// VacuumEvery is how many tasks this backend claims between two
	// VACUUMs of the task table by Maintenance. Autovacuum looks at a
	// table at most once a minute (autovacuum_naptime), and by then a busy
	// queue has left hundreds of thousands of dead index entries at the
	// start of the claim range, which every claim reads past. Default
	// 10,000; negative: never (autovacuum alone).
	VacuumEvery int
	// Logger receives lifecycle messages and problems (a lost listener
	// connection). Default slog.Default().
	Logger *slog.Logger
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

func (c *Config) setDefaults() error {
	if c.URL == "" {
		return errors.New("postgres config: URL is empty (want postgres://user@host:port/dbname)")
	}
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if !schemaName.MatchString(c.Schema) {
		return fmt.Errorf("postgres config: Schema %q: want lower-case letters, digits and _, starting with a letter or _, at most 40 characters", c.Schema)
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"ConnectTimeout", &c.ConnectTimeout, DefaultConnectTimeout}, {"DaemonGone", &c.DaemonGone, DefaultDaemonGone},
		{"DaemonRemove", &c.DaemonRemove, DefaultDaemonRemove}} {
		if *f.v < 0 {
			return fmt.Errorf("postgres config: %s %v is negative (0 means the default, %v)", f.name, *f.v, f.def)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.MaxOpenConns < 0 {
		return fmt.Errorf("postgres config: MaxOpenConns %d is negative (0 means the default, %d)", c.MaxOpenConns, DefaultMaxOpenConns)
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	if c.MaxArgsSize < 0 {
		return fmt.Errorf("postgres config: MaxArgsSize %d is negative (0 means the default, %d)", c.MaxArgsSize, DefaultMaxArgsSize)
	}
	if c.MaxArgsSize == 0 {
		c.MaxArgsSize = DefaultMaxArgsSize
	}
	if c.VacuumEvery == 0 {
		c.VacuumEvery = DefaultVacuumEvery
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Backend is snappea's database on a PostgreSQL server. It is safe for
// concurrent use; any number of processes, on any number of hosts, may
// have one on the same database and schema.
type Backend struct {
	cfg      Config
	conn     *pgx.ConnConfig // for the Waker's own connections
	db       *sql.DB
	log      *slog.Logger
	server   string // host:port, for errors
	secret   string // the password, to redact from errors
	wakeChan string // the NOTIFY channel of inserts
	cancChan string // the NOTIFY channel of cancel requests
	q        queries
	lq       ledgerQueries
	// The claim's state: the limited names of the last ClaimFor (for
	// Finish's wakeups), and whether tasks with serial keys were queued
	// at the last claim (then claims take the lock).
	limited      atomic.Pointer[[]string]
	serialQueued atomic.Bool
	claimed      atomic.Int64 // tasks claimed since the last VACUUM
	copies       atomic.Int64 // chunks written with COPY (see copyRequest), for the tests
}

var _ storage.Backend = (*Backend)(nil)

// Open connects to the database, creates the schema if it is missing and
// applies the migrations it lacks. It refuses a schema migrated by a newer
// snappea (storage.ErrSchemaTooNew). Errors name the server, never the
// password.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	cc, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's parse errors may quote the URL.
		return nil, fmt.Errorf("open PostgreSQL database %s: parse the URL: %w", Redact(cfg.URL),
			redactErr(err, passwordOf(cfg.URL)))
	}
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > cfg.ConnectTimeout {
		cc.ConnectTimeout = cfg.ConnectTimeout
	}
	b := &Backend{
		cfg: cfg, conn: cc, log: cfg.Logger,
		server:   net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))),
		secret:   cc.Password,
		wakeChan: cfg.Schema + "_tasks",
		cancChan: cfg.Schema + "_cancel",
	}
	b.q = newQueries(pgx.Identifier{cfg.Schema}.Sanitize())
	b.lq = newLedgerQueries(pgx.Identifier{cfg.Schema}.Sanitize())
	b.db = sql.OpenDB(connector{stdlib.GetConnector(*cc)})
	b.db.SetMaxOpenConns(cfg.MaxOpenConns)
	b.db.SetMaxIdleConns(cfg.MaxOpenConns)
	if err := b.db.PingContext(ctx); err != nil {
		b.db.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", b.server, b.err(err))
	}
	if err := b.migrate(ctx); err != nil {
		b.db.Close()
		return nil, fmt.Errorf("migrate PostgreSQL database at %s, schema %s: %w", b.server, cfg.Schema, err)
	}
	return b, nil
}

// String names the database without its password.
func (b *Backend) String() string {
	return fmt.Sprintf("PostgreSQL %s schema %s", Redact(b.cfg.URL), b.cfg.Schema)
}

// Config returns the configuration with defaults filled in.
func (b *Backend) Config() Config { return b.cfg }

// DB is the database, for the caller's own statements in a transaction
// that also enqueues. The tables are in the schema Config.Schema, and
// every statement of the backend names it, so a transaction on another
// *sql.DB open on the same database (the application's own, with its own
// search_path) may be passed as tx as well.
func (b *Backend) DB() *sql.DB { return b.db }

// Close closes the pool. Tasks already enqueued stay queued.
func (b *Backend) Close() error { return b.db.Close() }

// err wraps a database error so that the password never shows.
func (b *Backend) err(err error) error {
	if err == nil {
		return nil
	}
	return redactErr(err, b.secret)
}

// WriteTx runs fn in a transaction and commits if fn returns nil. On
// PostgreSQL writers need no turns: row locks order them.
func (b *Backend) WriteTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", b.err(err))
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", b.err(err))
	}
	return nil
}

// Wake is a no-op: inserts notify the daemons in their own transaction,
// delivered when it commits.
func (b *Backend) Wake() error { return nil }

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations reads the embedded files, NNNN_name.sql, in version order.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "migrations/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", n)
		}
		body, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{v, name, string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: versions must run 1, 2, 3, ... without gaps", m.version, m.name)
		}
	}
	return ms, nil
}

// Version is the schema version this build migrates to.
func Version() int {
	ms, _ := loadMigrations()
	return len(ms)
}

// migrate creates the schema if missing and applies the migrations it
// lacks, in one transaction under an advisory lock on the schema's name,
// so that daemons starting at once take turns and the second finds the
// work done.
func (b *Backend) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	schema := pgx.Identifier{b.cfg.Schema}.Sanitize()
	return b.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('snappea migrate ' || $1, 0))`,
			b.cfg.Schema); err != nil {
			return fmt.Errorf("take the migration lock: %w", b.err(err))
		}
		if _, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema); err != nil {
			return fmt.Errorf("create schema: %w", b.err(err))
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+schema+`.schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create the migrations table: %w", b.err(err))
		}
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM `+schema+`.schema_migrations`).
			Scan(&have); err != nil {
			return fmt.Errorf("read the schema version: %w", b.err(err))
		}
		if have > len(ms) {
			return fmt.Errorf("%w: schema %s is at version %d, this snappea knows up to %d; upgrade snappea",
				storage.ErrSchemaTooNew, b.cfg.Schema, have, len(ms))
		}
		if have == len(ms) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `SET LOCAL search_path TO `+schema); err != nil {
			return fmt.Errorf("set search_path: %w", b.err(err))
		}
		for _, m := range ms[have:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.version, m.name, b.err(err))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+schema+`.schema_migrations (version, name) VALUES ($1, $2)`,
				m.version, m.name); err != nil {
				return fmt.Errorf("record migration %04d_%s: %w", m.version, m.name, b.err(err))
			}
			b.log.Info("applied migration", "schema", b.cfg.Schema, "version", m.version, "name", m.name)
		}
		return nil
	})
}

// SchemaVersion is the latest migration applied to the schema.
func (b *Backend) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := b.db.QueryRowContext(ctx, b.q.version).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the schema version: %w", b.err(err))
	}
	return v, nil
}

// Maintenance runs the backend's upkeep until ctx ends: every second it
// VACUUMs the task table if this backend claimed Config.VacuumEvery tasks
// since the last time, and every minute it removes the daemons gone for
// longer than Config.DaemonRemove. Failures are logged and retried.
func (b *Backend) Maintenance(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastRemove := time.Time{}
	for {
		if b.cfg.VacuumEvery > 0 && b.claimed.Load() >= int64(b.cfg.VacuumEvery) {
			if err := b.Vacuum(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("vacuuming the task table failed; will retry", "err", err)
			}
		}
		if time.Since(lastRemove) >= time.Minute {
			lastRemove = time.Now()
			if _, err := b.RemoveGoneDaemons(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("removing gone daemons failed; will retry", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Vacuum VACUUMs the task table, removing the dead rows and index entries
// that claims leave, unless another VACUUM holds it (SKIP_LOCKED: several
// daemons need not queue up for one table).
func (b *Backend) Vacuum(ctx context.Context) error {
	n := b.claimed.Load()
	if _, err := b.db.ExecContext(ctx, `VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) `+b.q.tasks); err != nil {
		return fmt.Errorf("vacuum the task table: %w", b.err(err))
	}
	b.claimed.Add(-n)
	return nil
}

// Unavailable reports whether err, from Open or a statement, says the
// server could not be reached or is not accepting connections yet (down,
// starting, shutting down, out of connection slots): a daemon starting
// then retries. Wrong credentials, a missing database, a bad URL or a
// newer schema are not: retrying would not help.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, storage.ErrSchemaTooNew) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// The server answered: only "not now" is worth waiting for.
		return strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "53")
	}
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

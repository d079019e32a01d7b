package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed sqlite/*.sql
var sqliteFS embed.FS

// ErrSchemaTooNew is matched by the error Apply returns when the database
// was migrated by a newer snappea than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this snappea")

// Migration is one numbered schema change.
type Migration struct {
	Version int    // from the file name's leading number; starts at 1
	Name    string // the file name
	SQL     string // the statements
}

// SQLite returns the SQLite migrations in the order they apply.
func SQLite() []Migration {
	ms, err := load(sqliteFS, "sqlite")
	if err != nil {
		// The files are embedded at build time; a bad name is a build bug.
		panic(err)
	}
	return ms
}

func load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %q: name must start with a positive number and an underscore", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d (versions must be 1, 2, 3, ... without gaps)", m.Name, i+1)
		}
	}
	return ms, nil
}

// Latest is the schema version this build of snappea writes.
func Latest() int { return len(SQLite()) }

// Version reports the schema version of db: 0 for a database snappea has
// never migrated.
func Version(ctx context.Context, db *sql.DB) (int, error) {
	return version(ctx, db)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func version(ctx context.Context, q querier) (int, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'snappea_migrations'`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(version) FROM snappea_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// Apply brings db up to the latest schema and returns the version it ended
// at. db must begin IMMEDIATE transactions (snappea's queue opens SQLite
// that way), so that the version check and the change happen under the
// write lock. Apply refuses with an error matching ErrSchemaTooNew when db
// is ahead of this build.
func Apply(ctx context.Context, db *sql.DB) (int, error) {
	return apply(ctx, db, SQLite())
}

func apply(ctx context.Context, db *sql.DB, ms []Migration) (int, error) {
	// Fast path, without the write lock: nothing to do on every open but
	// the first.
	v, err := version(ctx, db)
	if err != nil {
		return 0, err
	}
	if err := checkNotNewer(v, len(ms)); err != nil {
		return v, err
	}
	for v < len(ms) {
		v, err = applyNext(ctx, db, ms)
		if err != nil {
			return v, err
		}
	}
	return v, nil
}

func checkNotNewer(have, known int) error {
	if have > known {
		return fmt.Errorf("%w: the database is at schema version %d, this snappea knows up to %d; upgrade snappea (or point it at another database)",
			ErrSchemaTooNew, have, known)
	}
	return nil
}

// applyNext applies the first migration db lacks, re-reading the version
// inside the transaction: another process may have applied it meanwhile.
func applyNext(ctx context.Context, db *sql.DB, ms []Migration) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	v, err := version(ctx, tx)
	if err != nil {
		return 0, err
	}
	if err := checkNotNewer(v, len(ms)); err != nil {
		return v, err
	}
	if v == len(ms) {
		return v, nil
	}
	m := ms[v]
	if v == 0 {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS snappea_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT    NOT NULL,
			applied_at INTEGER NOT NULL
		)`); err != nil {
			return v, fmt.Errorf("create migrations table: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return v, fmt.Errorf("apply migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO snappea_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().Unix()); err != nil {
		return v, fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return v, fmt.Errorf("commit migration %s: %w", m.Name, err)
	}
	return m.Version, nil
}

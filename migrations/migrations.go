package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"github.com/snappea/snappea/storage"
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
// was migrated by a newer snappea than this one: the storage interface's.
var ErrSchemaTooNew = storage.ErrSchemaTooNew

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
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s have the same version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// Latest is the schema version this build of snappea writes: the highest
// version among its migrations.
func Latest() int { return latest(SQLite()) }

func latest(ms []Migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}

// Version reports the schema version of db, the highest migration applied
// to it: 0 for a database snappea has never migrated.
func Version(ctx context.Context, db *sql.DB) (int, error) {
	done, err := applied(ctx, db)
	if err != nil {
		return 0, err
	}
	return highest(done), nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// applied returns the versions recorded in db's snappea_migrations table.
func applied(ctx context.Context, q querier) (map[int]bool, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'snappea_migrations'`).Scan(&n)
	if err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	done := map[int]bool{}
	if n == 0 {
		return done, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT version FROM snappea_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema version: %w", err)
		}
		done[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	return done, nil
}

func highest(done map[int]bool) int {
	v := 0
	for d := range done {
		v = max(v, d)
	}
	return v
}

// Apply brings db up to the latest schema and returns the version it ended
// at. db must begin IMMEDIATE transactions (snappea's queue opens SQLite
// that way), so that the check and the change happen under the write lock.
// Apply refuses with an error matching ErrSchemaTooNew when db has a
// migration this build does not know.
func Apply(ctx context.Context, db *sql.DB) (int, error) {
	return apply(ctx, db, SQLite())
}

// apply applies, in order, every migration in ms that db has not recorded.
// It goes by the set of recorded versions, not the highest: a number left
// free for a change still under review is applied when it arrives, even to
// a database that already has the versions after it.
func apply(ctx context.Context, db *sql.DB, ms []Migration) (int, error) {
	// Fast path, without the write lock: nothing to do on every open but
	// the first.
	done, err := applied(ctx, db)
	if err != nil {
		return 0, err
	}
	if err := checkKnown(done, ms); err != nil {
		return highest(done), err
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if done, err = applyOne(ctx, db, ms, m); err != nil {
			return highest(done), err
		}
	}
	return highest(done), nil
}

// checkKnown refuses a database with a migration that ms lacks: it was
// written by a newer snappea, whose tables this build does not understand.
func checkKnown(done map[int]bool, ms []Migration) error {
	known := make(map[int]bool, len(ms))
	for _, m := range ms {
		known[m.Version] = true
	}
	for v := range done {
		if !known[v] {
			return fmt.Errorf("%w: the database is at schema version %d and has migration %d, this snappea knows up to %d; upgrade snappea (or point it at another database)",
				ErrSchemaTooNew, highest(done), v, latest(ms))
		}
	}
	return nil
}

// applyOne applies m in its own transaction, re-reading the applied set
// inside it: another process may have applied m meanwhile. It returns the
// applied set as it stands afterwards.
func applyOne(ctx context.Context, db *sql.DB, ms []Migration, m Migration) (map[int]bool, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	done, err := applied(ctx, tx)
	if err != nil {
		return nil, err
	}
	if err := checkKnown(done, ms); err != nil {
		return done, err
	}
	if done[m.Version] {
		return done, nil
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS snappea_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return done, fmt.Errorf("create migrations table: %w", err)
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return done, fmt.Errorf("apply migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO snappea_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().Unix()); err != nil {
		return done, fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return done, fmt.Errorf("commit migration %s: %w", m.Name, err)
	}
	done[m.Version] = true
	return done, nil
}

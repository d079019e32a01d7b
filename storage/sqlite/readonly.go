package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/snappea/snappea/migrations"
	"golang.org/x/sys/unix"
)

// OpenReadOnly opens an existing queue database for reading only, as a
// user who may read the data directory but not write it (a monitoring
// account) can: it creates nothing, applies no migrations and writes
// nothing; every write on the Queue fails with snappea.ErrReadOnly. The database
// must exist and be at this snappea's schema. A user who may write it
// still writes nothing, except that the last process to close a WAL
// database removes its -wal and -shm files, as every snappea process does.
//
// SQLite reads a database in WAL mode through its -shm file. While a
// daemon or producer has the database open that file exists, and a reader
// needs only read access to it. When nothing has the database open the
// file is gone, and SQLite must create it beside the database: a user who
// may not write the directory then gets an error saying so.
func OpenReadOnly(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	path := cfg.Path
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	v := url.Values{}
	// A user who may write the directory opens the file for writing all
	// the same, never creating it and with query_only keeping every
	// statement from writing: only such a connection, the last to close,
	// removes the -wal and -shm files, which a read-only one would leave
	// behind.
	mode := "ro"
	if unix.Access(filepath.Dir(path), unix.W_OK) == nil && unix.Access(path, unix.W_OK) == nil {
		mode = "rw"
	}
	v.Set("mode", mode)
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	v.Add("_pragma", "query_only(1)")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s read-only: %w", path, err)
	}
	db.SetMaxIdleConns(2)
	version, err := migrations.Version(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s read-only: %w", path, readOnlyError(path, dbError(err)))
	}
	if latest := migrations.Latest(); version < latest {
		db.Close()
		return nil, fmt.Errorf("database %s is at schema version %d, this snappea reads %d: a user who may write it upgrades it with 'snappea migrate'",
			path, version, latest)
	}
	// Writes go to SQLite, which refuses them (query_only): snappea.ErrReadOnly.
	b, err := newBackend(ctx, cfg, db, newWriteLock(cfg.BusyTimeout))
	if err != nil {
		return nil, fmt.Errorf("open database %s read-only: %w", path, err)
	}
	return b, nil
}

// readOnlyError explains why a reader could not open path: most often a
// WAL database's -shm file that is missing and cannot be created, or
// exists and cannot be read.
func readOnlyError(path string, err error) error {
	shm := path + "-shm"
	if _, serr := os.Stat(shm); errors.Is(serr, os.ErrNotExist) {
		if unix.Access(filepath.Dir(path), unix.W_OK) != nil {
			return fmt.Errorf("no process has the database open, so SQLite would have to create %s to read it, and this user may not write %s (it can read the database while the daemon runs): %w",
				shm, filepath.Dir(path), err)
		}
		return err
	}
	if unix.Access(shm, unix.R_OK) != nil {
		return fmt.Errorf("this user may not read %s, which SQLite reads beside the database (its mode follows the database file's): %w", shm, err)
	}
	return err
}

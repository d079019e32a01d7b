package queue

import (
	"context"
	"errors"
	"time"

	"github.com/snappea/snappea/storage/sqlite"
)

// The SQLite database's upkeep, which the daemon runs: see the methods of
// the same names on sqlite.Backend. On another backend they do nothing,
// except RunCheckpoints, which runs its Maintenance.

// AutoCheckpointPages, JournalSizeLimit and TruncateLogBytes bound the
// SQLite database's write-ahead log: see package sqlite.
const (
	AutoCheckpointPages = sqlite.AutoCheckpointPages
	JournalSizeLimit    = sqlite.JournalSizeLimit
	TruncateLogBytes    = sqlite.TruncateLogBytes
	WriteLockSuffix     = sqlite.WriteLockSuffix
)

// OpenReadOnly opens an existing queue database for reading only, as a
// user who may read the data directory but not write it (a monitoring
// account) can: it creates nothing, applies no migrations and writes
// nothing; every write on the Queue fails with ErrReadOnly. The database
// must exist and be at this snappea's schema (see sqlite.OpenReadOnly).
// It is for SQLite only: with Config.DatabaseURL or Config.Backend it
// fails, as PostgreSQL's grants, not the client, decide who may write.
func OpenReadOnly(ctx context.Context, cfg Config) (*Queue, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.DatabaseURL != "" || cfg.Backend != nil {
		return nil, errors.New("queue.OpenReadOnly: only for SQLite; with DatabaseURL or Backend use Open (on PostgreSQL, a role with read-only grants)")
	}
	b, err := sqlite.OpenReadOnly(ctx, cfg.sqliteConfig())
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, b: b, lite: b, own: true, log: cfg.Logger}, nil
}

// Checkpoint copies what the write-ahead log holds into the database file
// without waiting for anyone, and returns how many pages the log held and
// how many of them are now in the file.
func (q *Queue) Checkpoint(ctx context.Context) (logPages, checkpointed int, err error) {
	if q.lite == nil {
		return 0, 0, nil
	}
	return q.lite.Checkpoint(ctx)
}

// TruncateCheckpoint checkpoints the whole write-ahead log and truncates
// its file, in the writers' turn; false if a reader kept it from emptying
// the log this time.
func (q *Queue) TruncateCheckpoint(ctx context.Context) (truncated bool, err error) {
	if q.lite == nil {
		return true, nil
	}
	return q.lite.TruncateCheckpoint(ctx)
}

// ReclaimSpace gives back the disk space the write-ahead log takes, and
// fails if it could not: the daemon calls it after a write failed with
// ErrFull, before it writes again.
func (q *Queue) ReclaimSpace(ctx context.Context) error {
	if q.lite == nil {
		return nil
	}
	return q.lite.ReclaimSpace(ctx)
}

// RunCheckpoints checkpoints every interval until ctx ends, keeping the
// write-ahead log short and checkpoints out of producers' commits; the
// daemon runs it as a service. It returns nil when ctx ends.
func (q *Queue) RunCheckpoints(ctx context.Context, interval time.Duration) error {
	if q.lite == nil {
		return q.b.Maintenance(ctx)
	}
	return q.lite.RunCheckpoints(ctx, interval)
}

package snappea

import "errors"

// Sentinel errors callers may branch on with errors.Is. The errors
// returned wrap them with what was being done and what a person can do.
var (
	// ErrBusy: the database stayed locked by another connection for longer
	// than the busy timeout. Nothing was written; retrying later is safe.
	ErrBusy = errors.New("database is busy")
	// ErrReadOnly: the database file or its directory cannot be written.
	ErrReadOnly = errors.New("database is read-only")
	// ErrFull: the file system holding the database is full. Nothing was
	// written; retrying once space is freed is safe.
	ErrFull = errors.New("disk is full")
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("queue is closed")
	// ErrBacklogFull: more tasks are waiting for the daemon than the
	// backlog limit allows. Nothing was written. The daemon is behind or
	// stopped: shed load (or retry later), or raise the limit.
	ErrBacklogFull = errors.New("queue backlog is full: the daemon is behind or stopped; shed load or retry later, or raise the limit (MaxBacklog)")
	// ErrNotFound: no record has the id asked for.
	ErrNotFound = errors.New("not found")
	// ErrBadRow: a claimed row cannot be run as a task (see Task.Err): a
	// column of the wrong type, or arguments over the size limit. The
	// error says which column and what type it should have, never the
	// value.
	ErrBadRow = errors.New("bad task row")
)

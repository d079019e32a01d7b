package storage

import (
	"time"

	"github.com/snappea/snappea"
)

// ClaimRequest is a daemon's claim: see Backend.ClaimFor.
type ClaimRequest struct {
	// Owner is the daemon the claimed tasks are recorded in flight for,
	// not 0: on PostgreSQL its id in the table of daemons (RegisterDaemon),
	// on SQLite any number unique to this run of the daemon.
	Owner int64
	// N is the most tasks taken; 0 only removes Finished.
	N int
	// Finished are tasks of Owner's that ended since its last claim: their
	// in-flight records are removed first, in the same statement where the
	// backend can (PostgreSQL), else in its own (SQLite), before the claim.
	Finished []int64
	// MaxRunning limits the tasks of a name in flight at once, by all
	// owners: a claim takes a task of a limited name only while fewer than
	// its limit are in flight. Whatever the limits, a task with a serial
	// key is taken only while no task with the key is in flight and no
	// older one with it is queued.
	MaxRunning map[string]int
}

// Claimed is what ClaimFor took.
type Claimed struct {
	Tasks []snappea.Task // in claim order
	// Held: ready tasks were left queued because of a limit (MaxRunning, a
	// serial key); claim again once a task in flight has ended.
	Held bool
}

// InFlight is the record of a claimed task while it runs: what is needed
// to fail it, or run it again, if its daemon ends without finishing it.
type InFlight struct {
	ID          int64 // the task's id
	Task        string
	Args        []byte
	EnqueuedAt  time.Time
	Priority    int
	Attempt     int // 1 for a first run
	MaxAttempts int
	Timeout     time.Duration
	Owner       int64     // the daemon that claimed it (ClaimRequest.Owner)
	Started     time.Time // when it was claimed
}

// Whose chooses the in-flight records RecoverLost takes.
type Whose int

const (
	// OwnedBy takes Recovery.Owner's own records: a daemon at its stop,
	// for the tasks still running at its graceful deadline.
	OwnedBy Whose = iota
	// NotOwnedBy takes every record but Recovery.Owner's: a daemon that
	// holds the single-instance lock (SQLite) knows no other daemon runs.
	NotOwnedBy
	// GoneOwners takes the records of daemons that missed their
	// heartbeats or whose row in the table of daemons is gone, never
	// Recovery.Owner's (PostgreSQL, where several daemons share one
	// database).
	GoneOwners
)

// Recovery says whose in-flight records RecoverLost takes and what it
// makes of them.
type Recovery struct {
	Whose Whose
	Owner int64
	// Cause is the error of the failed records written
	// (snappea.LostDied, snappea.LostInterrupted).
	Cause string
	// Retry names the tasks enqueued again instead of failed (their
	// definitions have registry.Options.RetryLost), each with the attempts
	// it may use in all: a record whose attempt is below it becomes a new
	// ready task with its attempt counted; one at it is failed.
	Retry map[string]int
	// At is the time written as the failure's, or as the new task's
	// enqueue.
	At time.Time
}

// Lost is what RecoverLost made of one in-flight record: a failed record
// (FailureID) or a new task (RetryID).
type Lost struct {
	InFlight
	FailureID int64
	RetryID   int64
}

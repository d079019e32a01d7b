package snappea

import "time"

// Task is a claimed task, handed to the daemon to run. Its row is gone from
// the queue by the time anyone holds a Task: delivery is at-most-once.
type Task struct {
	ID          int64         // unique for the life of the database
	Name        string        // the registered task name
	Args        []byte        // JSON, as the producer encoded it
	EnqueuedAt  time.Time     // when the producer enqueued this attempt
	Priority    int           // higher was claimed first
	Attempt     int           // 1 for the first run, 2 for the first retry, ...
	MaxAttempts int           // total attempts allowed; 0 or 1: no retries
	Timeout     time.Duration // the handler's deadline; 0: none
	Key         string        // the unique key it was enqueued with, if any; free again once claimed
	SerialKey   string        // its serial key, if any: a retry keeps it
	// Err, if set, says why the claimed row cannot be run (it matches
	// ErrBadRow): fail the task, do not run it. The fields that could be
	// read are set, for the failure record.
	Err error
}

// Failure is a task that failed its last attempt, as the failed record
// keeps it for an operator to list, retry or purge.
type Failure struct {
	ID          int64         // the failure record's own id
	TaskID      int64         // the id of the task's last attempt
	Task        string        // the task name
	Args        []byte        // the task's arguments, JSON
	Error       string        // the last attempt's error
	Attempts    int           // attempts made
	FailedAt    time.Time     // when it was recorded
	Priority    int           // the task's options, for a retry
	MaxAttempts int           //
	Timeout     time.Duration //
}

// QueueStats is a snapshot of the queue.
type QueueStats struct {
	Pending       int64         // tasks queued and not yet claimed: Ready + Delayed
	Ready         int64         // tasks that may be claimed now
	Delayed       int64         // tasks waiting for their time (some may be due, awaiting promotion)
	NextDue       time.Time     // when the earliest delayed task is due; zero when none
	OldestAge     time.Duration // how long the oldest ready task has waited since enqueued; 0 when none
	OldestID      int64         // its id; 0 when none
	SchemaVersion int
}

// MinuteOf is the Unix second at which t's minute starts: statistics rows
// are kept per minute, under that key, on every backend.
func MinuteOf(t time.Time) int64 { return t.Truncate(time.Minute).Unix() }

// StatsRow is one minute's statistics for one task name. Its JSON form
// names the durations' unit: total_ns, max_ns.
type StatsRow struct {
	Minute   time.Time     `json:"minute"`   // the start of the minute
	Task     string        `json:"task"`     // the task name; "" for a minute with a backlog sample but no finished task
	Count    int64         `json:"count"`    // tasks that finished, whatever their outcome
	Failures int64         `json:"failures"` // of those, the ones that failed, panicked or were discarded
	Total    time.Duration `json:"total_ns"` // the sum of their run times
	Max      time.Duration `json:"max_ns"`   // the longest run time
	Backlog  int64         `json:"backlog"`  // pending tasks sampled when the minute was written; -1 if not sampled
}

// ScheduleState is a schedule as stored: its definition and when it fires.
type ScheduleState struct {
	Name, Spec, Task string
	Next             time.Time // the next tick to take
	Last             time.Time // the latest tick taken; zero: none yet
}

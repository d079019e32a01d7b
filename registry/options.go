package registry

import (
	"errors"
	"fmt"
	"time"
)

// ErrBadOptions is matched by errors for enqueue options that cannot be
// honoured, such as a negative Delay.
var ErrBadOptions = errors.New("bad task options")

// Options are a task's enqueue options. Zero fields mean "not set": a task
// definition's defaults (see Register) fill them in, and where neither sets
// a field the task gets the behaviour described on it.
//
// Priority is strict: while tasks of a higher priority are ready, no task
// of a lower one is claimed, so a steady flood of high-priority tasks
// starves the rest for as long as it lasts. Keep high priorities for work
// that is both urgent and bounded.
type Options struct {
	// Priority orders claiming: higher is claimed first, FIFO (by id)
	// within a priority. Default 0; may be negative, which is how a call
	// lowers a task below a definition's positive default (0 cannot, as it
	// means "not set").
	Priority int
	// Delay makes the task claimable no earlier than Delay after enqueue.
	Delay time.Duration
	// RunAt makes the task claimable no earlier than this time; a time in
	// the past means now. It wins over Delay.
	RunAt time.Time
	// Timeout is the handler's context deadline, counted from its start.
	// Default none.
	Timeout time.Duration
	// MaxAttempts is the total number of attempts, the first included. 0
	// or 1: the task is not retried.
	MaxAttempts int
	// Key, if not empty, is unique among pending tasks: enqueueing a task
	// while another with the same Key is pending (ready or delayed) writes
	// nothing and reports the pending one (see Result). The key is freed
	// when that task is claimed, so a task may enqueue its own successor
	// with its key. Keys are shared by all task names.
	Key string
	// Isolated runs the task in a child process of the daemon's process
	// pool instead of on a goroutine (see package prefork and 'snappea
	// run --isolation'): a handler that ignores its context can then be
	// killed at its timeout, and one that exits, crashes or leaks memory
	// costs only its own child. It is a property of the definition: give
	// it to Register; an enqueue's Isolated is ignored (Merge keeps the
	// definition's).
	Isolated bool
}

// Merge returns o with every field that over sets (non-zero) replaced by
// over's. Delay and RunAt are one setting, when the task runs: if over sets
// either, both come from over, so a call's Delay replaces a default RunAt.
func (o Options) Merge(over Options) Options {
	if over.Priority != 0 {
		o.Priority = over.Priority
	}
	if over.Delay != 0 || !over.RunAt.IsZero() {
		o.Delay, o.RunAt = over.Delay, over.RunAt
	}
	if over.Timeout != 0 {
		o.Timeout = over.Timeout
	}
	if over.MaxAttempts != 0 {
		o.MaxAttempts = over.MaxAttempts
	}
	if over.Key != "" {
		o.Key = over.Key
	}
	return o
}

// Validate reports options that cannot be honoured, with an error that
// matches ErrBadOptions and names the field.
func (o Options) Validate() error {
	switch {
	case o.Delay < 0:
		return fmt.Errorf("%w: Delay %v is negative", ErrBadOptions, o.Delay)
	case o.Timeout < 0:
		return fmt.Errorf("%w: Timeout %v is negative", ErrBadOptions, o.Timeout)
	case o.MaxAttempts < 0:
		return fmt.Errorf("%w: MaxAttempts %d is negative", ErrBadOptions, o.MaxAttempts)
	}
	return nil
}

// Result is what an enqueue with options did.
type Result struct {
	// ID is the new task's id; for a duplicate, the id of the pending task
	// holding the key.
	ID int64
	// Duplicate reports that a pending task had the same Key: nothing was
	// written.
	Duplicate bool
}

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

	// RetryLost makes a task lost by its daemon (killed, or still running
	// at a graceful stop's deadline) be enqueued again, with its attempt
	// counted, instead of recorded failed: at-least-once delivery, for
	// idempotent tasks. It is read from the task's definition. A lost task
	// is enqueued again while it has attempts left: MaxAttempts, or
	// DefaultLostAttempts when that is 0 or 1 (see LostAttempts).
	RetryLost bool
	// MaxRunning, if positive, is the most tasks of this name that run at
	// once, across every daemon of the database; the others wait, and
	// other tasks go ahead meanwhile. It is read from the task's
	// definition. Default 0: no limit but the workers.
	MaxRunning int
	// SerialKey, if not empty, makes the tasks that share it run one at a
	// time, in the order they were enqueued (by id), across every daemon
	// of the database; other tasks go ahead meanwhile.
	SerialKey string
}

// DefaultLostAttempts is the attempts a task with RetryLost and a
// MaxAttempts of 0 or 1 may use when it is lost: a task that takes its
// daemon down every time (out of memory) is recorded failed after that.
const DefaultLostAttempts = 3

// LostAttempts is the attempts a lost task may use in all before it is
// recorded failed instead of enqueued again: 0 without RetryLost.
func (o Options) LostAttempts() int {
	switch {
	case !o.RetryLost:
		return 0
	case o.MaxAttempts > 1:
		return o.MaxAttempts
	}
	return DefaultLostAttempts
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
	if over.RetryLost {
		o.RetryLost = true
	}
	if over.MaxRunning != 0 {
		o.MaxRunning = over.MaxRunning
	}
	if over.SerialKey != "" {
		o.SerialKey = over.SerialKey
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
	case o.MaxRunning < 0:
		return fmt.Errorf("%w: MaxRunning %d is negative (0: no limit)", ErrBadOptions, o.MaxRunning)
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

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
	// with its key. Keys are shared by all task names. OnDuplicate
	// chooses what happens instead.
	Key string
	// OnDuplicate is what an enqueue does when a pending task holds its
	// Key. 0 (not set) and Keep: the pending task stays as it is and
	// nothing is written. Replace: see Replace.
	OnDuplicate Duplicate
	// Debounce, with OnDuplicate Replace, makes the task due Debounce
	// after its newest enqueue: a new task is delayed by it, and each
	// replace pushes the pending task's due time back to now+Debounce
	// (a ready task becomes delayed again), so that it runs once the
	// enqueues have paused for Debounce. It says when the task runs, as
	// Delay and RunAt do: give only one of them. Default 0: a replace
	// keeps the pending task's due time.
	Debounce time.Duration
	// Isolated runs the task in a child process of the daemon's process
	// pool instead of on a goroutine (see package prefork and 'snappea
	// run --isolation'): a handler that ignores its context can then be
	// killed at its timeout, and one that exits, crashes or leaks memory
	// costs only its own child. It is a property of the definition: give
	// it to Register; an enqueue's Isolated is ignored (Merge keeps the
	// definition's).
	Isolated bool

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

// Duplicate is a policy for an enqueue whose Key a pending task holds.
type Duplicate int

const (
	// Keep leaves the pending task as it is and writes nothing: the
	// enqueue's Result has Duplicate set. The default, as 0 is; naming it
	// lets a call override a definition's Replace.
	Keep Duplicate = iota + 1
	// Replace makes the pending task the newest enqueue's, atomically
	// (also against concurrent producers in other processes): its task
	// name, arguments, priority, timeout, MaxAttempts and enqueue time all
	// become the new enqueue's. It keeps its id and its place in the
	// queue, and its due time unless Debounce is set; the Result has
	// Replaced set. A task that is already running (claimed) no longer
	// holds its key, so the enqueue is a new pending task instead. Replace
	// needs a Key.
	Replace
)

// String names the policy as Go code does.
func (d Duplicate) String() string {
	switch d {
	case 0:
		return "not set"
	case Keep:
		return "Keep"
	case Replace:
		return "Replace"
	}
	return fmt.Sprintf("Duplicate(%d)", int(d))
}

// DueAt is when a task enqueued at now with o may first run: the zero
// time for at once (a RunAt not after now included), else now+Debounce,
// RunAt, or now+Delay, whichever o gives.
func (o Options) DueAt(now time.Time) time.Time {
	switch {
	case o.Debounce > 0:
		return now.Add(o.Debounce)
	case !o.RunAt.IsZero():
		if o.RunAt.After(now) {
			return o.RunAt
		}
	case o.Delay > 0:
		return now.Add(o.Delay)
	}
	return time.Time{}
}

// Merge returns o with every field that over sets (non-zero) replaced by
// over's. Delay, RunAt and Debounce are one setting, when the task runs:
// if over sets any of them, all three come from over, so a call's Delay
// replaces a default RunAt or Debounce. An OnDuplicate of Keep over drops
// a Debounce under it that over does not set, as Debounce applies only to
// Replace.
func (o Options) Merge(over Options) Options {
	if over.Priority != 0 {
		o.Priority = over.Priority
	}
	if over.Delay != 0 || !over.RunAt.IsZero() || over.Debounce != 0 {
		o.Delay, o.RunAt, o.Debounce = over.Delay, over.RunAt, over.Debounce
	}
	if over.OnDuplicate != 0 {
		o.OnDuplicate = over.OnDuplicate
		if over.OnDuplicate == Keep && over.Debounce == 0 {
			o.Debounce = 0
		}
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
	case o.OnDuplicate < 0 || o.OnDuplicate > Replace:
		return fmt.Errorf("%w: OnDuplicate %d is not a policy (want Keep or Replace)", ErrBadOptions, int(o.OnDuplicate))
	case o.Debounce < 0:
		return fmt.Errorf("%w: Debounce %v is negative", ErrBadOptions, o.Debounce)
	case o.Debounce > 0 && o.OnDuplicate != Replace:
		return fmt.Errorf("%w: Debounce %v needs OnDuplicate: Replace (it pushes back the task a replace keeps)", ErrBadOptions, o.Debounce)
	case o.Debounce > 0 && (o.Delay != 0 || !o.RunAt.IsZero()):
		return fmt.Errorf("%w: Debounce and Delay or RunAt both say when the task runs; give one of them", ErrBadOptions)
	}
	return nil
}

// ValidateEnqueue is Validate for the options of one enqueue, merged
// over its definition's defaults: it also refuses OnDuplicate Replace
// without a Key, which a definition may leave to each enqueue.
func (o Options) ValidateEnqueue() error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.OnDuplicate == Replace && o.Key == "" {
		return fmt.Errorf("%w: OnDuplicate Replace needs a Key (the pending task to replace is the one holding it)", ErrBadOptions)
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
	// Replaced reports that a pending task had the same Key and now has
	// this enqueue's arguments and options (OnDuplicate Replace); ID is
	// its id.
	Replaced bool
}

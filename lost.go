package snappea

import "strings"

// The errors of the failed records of lost tasks: tasks that were claimed
// (deleted from the queue) and never finished, because their daemon ended
// while they ran. Both begin with LostPrefix.
const (
	// LostDied: the daemon was killed (kill -9, the OOM killer, a power
	// cut) or cut off from the database; the next daemon found the task
	// still in flight.
	LostDied = "lost: the daemon died while it ran"
	// LostInterrupted: the daemon stopped and the task was still running
	// at the graceful stop's deadline; its context was cancelled.
	LostInterrupted = "lost: still running at the graceful stop's deadline; the daemon stopped without its result"
)

// LostPrefix begins the error of every lost task's failed record.
const LostPrefix = "lost: "

// IsLost reports whether a failed record's error says its task was lost.
func IsLost(msg string) bool { return strings.HasPrefix(msg, LostPrefix) }

// LostError is the error reported (to a Reporter such as Sentry) for a
// task found lost: its daemon ended while it ran. Cause is LostDied or
// LostInterrupted.
type LostError struct {
	Cause   string
	Retried bool // enqueued again (registry.Options.RetryLost) instead of failed
}

func (e *LostError) Error() string {
	if e.Retried {
		return e.Cause + " (enqueued again: RetryLost)"
	}
	return e.Cause
}

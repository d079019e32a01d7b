package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/snappea/snappea"
)

// Failure is a task that failed its last attempt, as Fail recorded it:
// the domain's.
type Failure = snappea.Failure

// Fail records that t failed for good, with cause as the error, in the
// failed tasks an operator can list (Failures), retry (RetryFailure) or
// purge. The daemon calls it when a task's last attempt fails.
func (q *Queue) Fail(ctx context.Context, t *Task, cause error) error {
	msg := ""
	if cause != nil {
		msg = cause.Error()
	}
	return q.b.Fail(ctx, t, msg, time.Now())
}

// Failures returns up to limit failed tasks, newest first; limit <= 0
// returns them all.
func (q *Queue) Failures(ctx context.Context, limit int) ([]Failure, error) {
	return q.b.Failures(ctx, limit)
}

// FailureByID returns the failed task recorded as id, or an error matching
// ErrNotFound.
func (q *Queue) FailureByID(ctx context.Context, id int64) (Failure, error) {
	return q.b.Failure(ctx, id)
}

// RetryFailure enqueues the failed task id anew, ready now, as its first
// attempt, with its priority, timeout and MaxAttempts, and deletes the
// failure record, in one transaction. It wakes the daemon and returns the
// new task's id; an unknown id matches ErrNotFound. It does not count
// against MaxBacklog.
func (q *Queue) RetryFailure(ctx context.Context, id int64) (int64, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	ids, err := q.b.RetryFailures(ctx, id, time.Now())
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// RetryAllFailures is RetryFailure for every failed task, oldest first, in
// one transaction. It returns how many it enqueued. A record whose
// arguments the task table refuses (not JSON: a bad row another program
// wrote) is left in place rather than make the whole retry fail.
func (q *Queue) RetryAllFailures(ctx context.Context) (int, error) {
	if q.closed.Load() {
		return 0, ErrClosed
	}
	ids, err := q.b.RetryFailures(ctx, 0, time.Now())
	return len(ids), err
}

// PurgeFailures deletes every failed task record and returns how many.
func (q *Queue) PurgeFailures(ctx context.Context) (int, error) {
	return q.b.PurgeFailures(ctx)
}

// PruneFailures deletes the failed task records older than maxAge and
// those beyond the newest maxRows, and returns how many it deleted. 0
// disables either bound.
func (q *Queue) PruneFailures(ctx context.Context, maxAge time.Duration, maxRows int) (int, error) {
	if maxAge < 0 || maxRows < 0 {
		return 0, fmt.Errorf("prune failed tasks: maxAge %v and maxRows %d may not be negative (0 disables)", maxAge, maxRows)
	}
	if maxAge == 0 && maxRows == 0 {
		return 0, nil
	}
	if q.closed.Load() {
		return 0, ErrClosed
	}
	var before time.Time
	if maxAge > 0 {
		before = time.Now().Add(-maxAge)
	}
	return q.b.PruneFailures(ctx, before, maxRows)
}

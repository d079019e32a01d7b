package queue

import (
	"context"

	"github.com/snappea/snappea/storage"
)

// PendingTask is a task waiting in the queue, ready or delayed, without
// its arguments (they can hold secrets).
type PendingTask = storage.PendingTask

// DefaultPendingLimit is how many tasks Pending lists when the filter
// gives no limit.
const DefaultPendingLimit = storage.DefaultPendingLimit

// PendingFilter chooses the tasks Pending lists. With Task set the scan
// reads past tasks of other names until it has Limit of them (the claim
// index does not hold names).
type PendingFilter = storage.PendingFilter

// Pending lists waiting tasks in the order the daemon takes them: ready
// tasks first, highest priority first and oldest first within one (the
// claim order), then delayed ones by due time, up to the filter's limit.
// A large backlog costs no more than a small one.
func (q *Queue) Pending(ctx context.Context, f PendingFilter) ([]PendingTask, error) {
	return q.b.Pending(ctx, f)
}

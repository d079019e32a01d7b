package queue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/snappea/snappea/storage"
)

// backlogRefresh is the least time between two counts of the backlog: the
// bound on how long other processes' enqueues go unseen, unless counting
// is slow (see backlog.interval).
const backlogRefresh = 100 * time.Millisecond

// backlog is a Queue's cheap, approximate view of how many tasks wait for
// the daemon, for Config.MaxBacklog. count(*) in SQLite reads every row, so
// an enqueue does not count: it adds to a count read a little while ago the
// tasks this Queue has enqueued since.
//
// The count is first an upper bound that costs two index look-ups: the
// span of the pending ids (AUTOINCREMENT ids are never reused, so no more
// tasks than that can be pending). While it is within the limit, that is
// enough. Only when it is not are the due tasks counted, up to the limit
// plus one, and only the exact count refuses an enqueue.
type backlog struct {
	mu       sync.Mutex
	countAt  time.Time     // when count was read; zero: never
	count    int64         // tasks due and waiting then, or more if !exact
	exact    bool          // count is a count, not the id span
	own      int64         // tasks this Queue reserved since
	interval time.Duration // how long count is used: backlogRefresh, longer if counting is slow
}

// reserve makes room for the due tasks among rows, which this Queue is
// about to write, and returns how many that is; or it fails with
// ErrBacklogFull. Any enqueue needs room for one task, so that at the
// limit delayed tasks are refused too. A caller that then writes fewer
// (an error, a duplicate key) gives them back with release.
func (q *Queue) reserve(ctx context.Context, rows []storage.Row) (int, error) {
	limit := int64(q.cfg.MaxBacklog)
	if limit == 0 || len(rows) == 0 || q.cfg.Inline {
		return 0, nil
	}
	n := 0
	for i := range rows {
		if rows[i].RunAt.IsZero() {
			n++
		}
	}
	need := int64(max(n, 1))
	b := &q.backlog
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.countAt.IsZero() || time.Since(b.countAt) >= b.interval {
		if err := q.countBacklog(ctx, false); err != nil {
			return 0, err
		}
	}
	if b.count+b.own+need > limit && !b.exact {
		if err := q.countBacklog(ctx, true); err != nil {
			return 0, err
		}
	}
	if b.count+b.own+need > limit {
		return 0, fmt.Errorf("enqueue %d task(s) with %d already waiting, limit %d: %w",
			len(rows), b.count+b.own, limit, ErrBacklogFull)
	}
	b.own += int64(n)
	return n, nil
}

// countBacklog refreshes q.backlog (locked by the caller): with the id
// span if that is within the limit and exact is false, else by counting.
func (q *Queue) countBacklog(ctx context.Context, exact bool) error {
	b := &q.backlog
	limit := int64(q.cfg.MaxBacklog)
	start := time.Now()
	count, isExact, err := q.b.Backlog(ctx, start, limit, exact)
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	if !isExact {
		b.countAt, b.count, b.exact, b.own, b.interval = start, count, false, 0, backlogRefresh
		return nil
	}
	b.countAt, b.count, b.exact, b.own = start, count, true, 0
	b.interval = max(backlogRefresh, 50*time.Since(start))
	return nil
}

// release gives back n reserved tasks that were not written.
func (q *Queue) release(n int) {
	if n == 0 {
		return
	}
	b := &q.backlog
	b.mu.Lock()
	// A count read since the reservation may already lack the tasks.
	b.own = max(b.own-int64(n), 0)
	b.mu.Unlock()
}

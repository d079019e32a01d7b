package daemon

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/storage"
)

// ledgerFlushDelay is how long the in-flight records of finished tasks
// wait for the next claim, which removes them with its own, before they
// are removed on their own: while tasks keep coming the ledger costs
// little more than the claims, and a task that finished is listed lost
// after a crash only if it finished this shortly before.
const ledgerFlushDelay = 10 * time.Millisecond

// ledgerFinishBatch is how many finished tasks' records a claim on SQLite
// waits for before it removes them, in a statement of their own: one per
// task would cost the claim a second statement every time. On PostgreSQL
// the claim's own statement removes them, at no cost, so every claim does.
const ledgerFinishBatch = 256

// ledgerCallTimeout bounds a removal of finished records and a recovery.
const ledgerCallTimeout = 10 * time.Second

// ledger is the foreman's Source: the queue's claims, each recorded in
// flight for this daemon in the claim's own transaction (see
// storage.Backend.ClaimFor), and the records of the tasks that ended
// removed in batches. A record left when the daemon ends is a lost task:
// the daemon's stop records the tasks still running at its graceful
// deadline, and the next daemon those of a daemon that died (recover).
type ledger struct {
	d *Daemon
	q *queue.Queue
	b storage.Backend
	// owner is this daemon's id in the ledger: on PostgreSQL its row in
	// the table of daemons, registered before the first claim.
	owner func(ctx context.Context) (int64, error)
	// retry is the attempts of the tasks defined with RetryLost.
	retry map[string]int
	// limits is MaxRunning by task name: the definitions' and the
	// Config's.
	limits map[string]int
	// held: the last claim left ready tasks a limit held back; the
	// foreman claims again when a task ends.
	held atomic.Bool
	// batch is the finished records a claim waits for before it removes
	// them (ledgerFinishBatch on SQLite, 1 elsewhere).
	batch int

	mu       sync.Mutex
	finished []int64
	timer    *time.Timer // armed while finished waits; nil after stop
	stopped  bool

	// outstanding counts the tasks claimed and not settled (or settled
	// Interrupted): the records a stop must record lost.
	outstanding atomic.Int64

	lost    atomic.Int64 // lost tasks this daemon recorded failed
	retried atomic.Int64 // lost tasks this daemon enqueued again
}

var (
	_ foreman.Source = (*ledger)(nil)
	_ foreman.Ledger = (*ledger)(nil)
)

func (d *Daemon) newLedger() *ledger {
	l := &ledger{d: d, q: d.q, b: d.q.Backend(), retry: map[string]int{}, batch: 1}
	if d.lite {
		l.batch = ledgerFinishBatch
	}
	for _, name := range d.cfg.Registry.Names() {
		o := d.cfg.Registry.Options(name)
		if n, ok := d.cfg.MaxRunning[name]; ok {
			o.MaxRunning = n
		}
		if o.MaxRunning > 0 {
			if l.limits == nil {
				l.limits = map[string]int{}
			}
			l.limits[name] = o.MaxRunning
		}
		o.RetryLost = o.RetryLost || slices.Contains(d.cfg.RetryLost, name)
		if n := o.LostAttempts(); n > 0 {
			l.retry[name] = n
		}
	}
	// On SQLite any number unique to this run: the lock, not a table of
	// daemons, says whose records are lost.
	id := rand.Int64N(math.MaxInt64-1) + 1
	l.owner = func(context.Context) (int64, error) { return id, nil }
	return l
}

// Claim claims up to n tasks in flight for this daemon, removing the
// records of the tasks finished since the last claim.
func (l *ledger) Claim(ctx context.Context, n int) ([]snappea.Task, error) {
	owner, err := l.owner(ctx)
	if err != nil {
		return nil, err
	}
	var fin []int64
	l.mu.Lock()
	// While a limit holds tasks back, every claim removes the finished
	// records first: they may be what frees the limit.
	if len(l.finished) >= l.batch || (len(l.finished) > 0 && l.held.Load()) {
		fin, l.finished = l.finished, nil
		// This claim removes them: no flush of its own is due until
		// another task settles (putBack arms it again).
		if l.timer != nil {
			l.timer.Stop()
			l.timer = nil
		}
	}
	l.mu.Unlock()
	c, err := l.b.ClaimFor(ctx, storage.ClaimRequest{Owner: owner, N: n, Finished: fin, MaxRunning: l.limits})
	if err != nil {
		l.putBack(fin)
		return nil, err
	}
	l.removed(len(fin))
	l.held.Store(c.Held)
	l.outstanding.Add(int64(len(c.Tasks)))
	return c.Tasks, nil
}

// Held reports whether the last claim left ready tasks that a limit
// held back (see foreman.Ledger).
func (l *ledger) Held() bool { return l.held.Load() }

// Promote is the queue's.
func (l *ledger) Promote(ctx context.Context, now time.Time) (time.Time, error) {
	return l.q.Promote(ctx, now)
}

// ReclaimSpace is the queue's (see foreman's spaceReclaimer).
func (l *ledger) ReclaimSpace(ctx context.Context) error { return l.q.ReclaimSpace(ctx) }

// Settled notes that t ended, its retry or failed record written: its
// in-flight record goes with the next claim, or after ledgerFlushDelay. A
// task interrupted by the stop keeps its record, for the stop to record
// it lost.
func (l *ledger) Settled(t *snappea.Task, o foreman.Outcome) {
	if o == foreman.Interrupted {
		return
	}
	l.outstanding.Add(-1)
	l.putBack([]int64{t.ID})
}

// putBack adds ids to the records to remove and arms the flush.
func (l *ledger) putBack(ids []int64) {
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finished = append(l.finished, ids...)
	if l.timer == nil && !l.stopped {
		l.timer = time.AfterFunc(ledgerFlushDelay, l.flushIdle)
	}
}

func (l *ledger) flushIdle() {
	l.mu.Lock()
	l.timer = nil
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ledgerCallTimeout)
	defer cancel()
	if err := l.flush(ctx); err != nil {
		l.d.log.Warn("could not remove finished tasks from the ledger; will retry", "err", err)
	}
}

// flush removes the records of the finished tasks now; on failure they
// are kept for the next try.
func (l *ledger) flush(ctx context.Context) error {
	l.mu.Lock()
	fin := l.finished
	l.finished = nil
	l.mu.Unlock()
	if len(fin) == 0 {
		return nil
	}
	if err := l.b.Finish(ctx, fin); err != nil {
		l.putBack(fin)
		return err
	}
	l.removed(len(fin))
	return nil
}

// removed logs, at debug, that n finished tasks' in-flight records went.
func (l *ledger) removed(n int) {
	if n > 0 && l.d.log.Enabled(context.Background(), slog.LevelDebug) {
		l.d.log.Debug("finished tasks removed from the ledger", "count", n)
	}
}

// stop is the ledger's part of the daemon's stop, once the foreman has
// returned: the finished tasks' records removed, and those left (tasks
// still running at the graceful deadline, or abandoned then) recorded
// lost.
//
// Both writes end by deadline (the stop's, at least finalFlushMin from
// now), so that a database another process keeps locked cannot hold up
// the stop; what they could not write the next daemon records (as died).
// With no task left in flight and none to remove, nothing is written.
func (l *ledger) stop(deadline time.Time) {
	l.mu.Lock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	idle := len(l.finished) == 0
	l.mu.Unlock()
	if idle && l.outstanding.Load() == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := l.flush(ctx); err != nil {
		l.d.log.Error("could not remove finished tasks from the ledger at stop; the next daemon will record them lost",
			"err", err)
		return
	}
	if l.outstanding.Load() == 0 {
		return
	}
	owner, err := l.owner(ctx)
	if err != nil {
		return // never registered: it claimed nothing
	}
	l.recover(ctx, storage.Recovery{Whose: storage.OwnedBy, Owner: owner, Cause: snappea.LostInterrupted})
}

// recoverDead records the tasks lost by daemons that died before this
// one started: on SQLite, with the single-instance lock held, every record
// but this daemon's; elsewhere those of the daemons whose heartbeats
// stopped (also checked at every heartbeat, see cluster). Without the lock
// (Config.NoLock) on SQLite nothing is recovered: another daemon may be
// running the tasks.
func (l *ledger) recoverDead(ctx context.Context) {
	whose := storage.GoneOwners
	if l.d.lite {
		if l.d.lock == nil {
			return
		}
		whose = storage.NotOwnedBy
	}
	owner, _ := l.owner(ctx) // 0 if not registered: it has no records
	ctx, cancel := context.WithTimeout(ctx, ledgerCallTimeout)
	defer cancel()
	l.recover(ctx, storage.Recovery{Whose: whose, Owner: owner, Cause: snappea.LostDied})
}

// recover runs r (its Retry and At filled in), logs what it found and
// reports each task recorded failed, once: the record is gone after.
func (l *ledger) recover(ctx context.Context, r storage.Recovery) {
	r.Retry, r.At = l.retry, time.Now()
	lost, err := l.b.RecoverLost(ctx, r)
	if err != nil {
		if ctx.Err() == nil {
			l.d.log.Error("could not record the lost tasks; will retry at the next start", "err", err)
		}
		return
	}
	for i := range lost {
		x := &lost[i]
		t := snappea.Task{ID: x.ID, Name: x.Task, Args: x.Args, EnqueuedAt: x.EnqueuedAt, Priority: x.Priority,
			Attempt: x.Attempt, MaxAttempts: x.MaxAttempts, Timeout: x.Timeout}
		attrs := []any{"task", x.Task, "task_id", x.ID, "attempt", x.Attempt, "daemon_id", x.Owner,
			"started", x.Started, "cause", r.Cause}
		if x.RetryID != 0 {
			l.retried.Add(1)
			l.d.log.Warn("lost task enqueued again (RetryLost)", append(attrs, "retry_id", x.RetryID)...)
			continue
		}
		l.lost.Add(1)
		l.d.log.Error("task lost; recorded failed", append(attrs, "failed_id", x.FailureID)...)
		if l.d.cfg.Reporter != nil {
			l.d.cfg.Reporter.Report(&snappea.LostError{Cause: r.Cause}, &t)
		}
	}
}

// errNotRegistered: the daemon has no row in the table of daemons yet,
// so it claims nothing (its in-flight records need an owner the other
// daemons can check the heartbeats of).
var errNotRegistered = errors.New("not registered in the table of daemons yet; claiming after the next try")

// Limits returns the limits the daemon claims within: the most tasks of
// a name that run at once (the definitions' MaxRunning and
// Config.MaxRunning), and the tasks enqueued again when lost (RetryLost),
// sorted.
func (d *Daemon) Limits() (maxRunning map[string]int, retryLost []string) {
	for name := range d.led.retry {
		retryLost = append(retryLost, name)
	}
	slices.Sort(retryLost)
	return maps.Clone(d.led.limits), retryLost
}

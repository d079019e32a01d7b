package stats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/foreman"
)

// DefaultRetention is how long rows are kept when Config.Retention is 0.
const DefaultRetention = 7 * 24 * time.Hour

// writeDelay is how long after a minute boundary Run writes the minute
// that just ended, so that tasks finishing at the boundary are in it.
// One that comes later still is written with the next minute, and adds
// to the row: nothing is lost.
const writeDelay = time.Second

// stopFlushTimeout is the default of Config.StopFlushTimeout: long enough
// to wait out another connection's write lock, short enough not to hold up
// a stop.
const stopFlushTimeout = 10 * time.Second

// Store is where statistics persist: a storage.Backend, or a queue.Queue
// (whose writes take their turn with its other writers).
type Store interface {
	// AddStats writes rows in one transaction: a row with a Task adds
	// its counts to its minute and task, a row without sets its minute's
	// backlog sample. Minutes before before are then deleted (zero: none).
	AddStats(ctx context.Context, rows []snappea.StatsRow, before time.Time) error
	// ReadStats returns the rows of the minutes from the one containing
	// since, by minute then task.
	ReadStats(ctx context.Context, since time.Time) ([]snappea.StatsRow, error)
}

// Config configures a Recorder. Store is required; everything else has a
// default.
type Config struct {
	// Store is the snappea database the statistics are written to.
	// Required.
	Store Store
	// Retention is how long rows are kept: each write deletes the minutes
	// older than this. Default DefaultRetention (7 days); negative keeps
	// rows forever.
	Retention time.Duration
	// Backlog, if set, returns the number of pending tasks. It is called
	// once per write, and its answer stored for the minute being written.
	// A failure is logged and that minute has no sample. Optional.
	Backlog func(ctx context.Context) (int64, error)
	// Logger receives write failures at warn. Default slog.Default().
	Logger *slog.Logger
	// StopFlushTimeout bounds the final flush when Run's context ends, also
	// while another process holds the database's write lock. Default 10s;
	// the daemon gives it its graceful timeout, so that statistics never
	// hold up a stop.
	StopFlushTimeout time.Duration
	// Now tells the time, for tests. Default time.Now. It is called on
	// every Finished, so it must be safe for concurrent use.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return errors.New("stats config: Store is required")
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.StopFlushTimeout < 0 {
		return fmt.Errorf("stats config: StopFlushTimeout %v is negative", c.StopFlushTimeout)
	}
	if c.StopFlushTimeout == 0 {
		c.StopFlushTimeout = stopFlushTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Recorder counts finished tasks per minute and task name in memory and
// writes the counts to the database; see the package documentation.
// Create it with New; it is safe for concurrent use.
type Recorder struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
	// monotonic: the clock is time.Now, and Finished reads only its
	// monotonic part, half the cost; see clock.
	monotonic bool

	mu sync.Mutex
	// base is a recent time.Now, taken again at every write, that Finished
	// adds the monotonic time since to; baseNano is its wall clock
	// reading in Unix nanoseconds.
	base     time.Time
	baseNano int64
	// cur is the minute of the newest counts, in curTasks by task name:
	// the hot path hashes only the name, once. Entries are zeroed, not
	// deleted, when their counts move to older, so that the next minute
	// reuses them without allocating.
	cur      int64
	curTasks map[string]*agg
	// older holds the counts of other minutes not yet written.
	older map[key]agg
	// backlog holds backlog samples not yet written, by minute.
	backlog map[int64]int64
}

var _ foreman.Observer = (*Recorder)(nil)

type key struct {
	minute int64 // unix seconds of the minute's start
	task   string
}

type agg struct {
	finished, failures int64
	total, max         time.Duration
}

func (a *agg) add(b agg) {
	a.finished += b.finished
	a.failures += b.failures
	a.total += b.total
	a.max = max(a.max, b.max)
}

// New checks cfg and returns a Recorder. Nothing is written until Run or
// Flush.
func New(cfg Config) (*Recorder, error) {
	monotonic := cfg.Now == nil
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg:       cfg,
		log:       cfg.Logger,
		now:       cfg.Now,
		monotonic: monotonic,
		curTasks:  make(map[string]*agg),
		older:     make(map[key]agg),
		backlog:   make(map[int64]int64),
	}
	r.rebase(r.now())
	r.cur = snappea.MinuteOf(r.base)
	return r, nil
}

func (r *Recorder) rebase(now time.Time) {
	r.base, r.baseNano = now, now.UnixNano()
}

// clock is Config.Now for Finished, in Unix nanoseconds, called with r.mu
// held. time.Now reads the wall clock and the monotonic clock; time.Since
// only the latter. base is renewed at every write, so after a step of the
// wall clock, or a suspend (which stops the monotonic clock), only the
// counts recorded until the next write land in the wrong minute.
func (r *Recorder) clock() int64 {
	if r.monotonic {
		return r.baseNano + int64(time.Since(r.base))
	}
	return r.now().UnixNano()
}

// minuteOfNano is snappea.MinuteOf for a Unix time in nanoseconds, for
// Finished, which reads a clock in nanoseconds.
func minuteOfNano(ns int64) int64 {
	const minute = int64(time.Minute)
	m := ns / minute
	if ns%minute < 0 {
		m--
	}
	return m * 60
}

// IsFailure reports whether a task that ended with o counts as a failure:
// it failed (each failed attempt of a retried task counts), panicked or
// was discarded. Every other outcome is not: an interrupted task was cut
// off by a stop, and a cancelled one by an operator, through no fault of
// its own; the foreman does not report those either.
func IsFailure(o foreman.Outcome) bool {
	return o == foreman.Failed || o == foreman.Panicked || o == foreman.Discarded
}

// Finished records a finished task against the current minute. It
// implements foreman.Observer: a lock, a clock reading and a map update,
// without allocating for a task name that also finished in the minute
// before.
func (r *Recorder) Finished(t *snappea.Task, o foreman.Outcome, d time.Duration) {
	var failed int64
	if IsFailure(o) {
		failed = 1
	}
	one := agg{finished: 1, failures: failed, total: d, max: d}
	r.mu.Lock()
	m := minuteOfNano(r.clock())
	if m > r.cur {
		r.foldCurrent()
		r.cur = m
	}
	if m == r.cur {
		a := r.curTasks[t.Name]
		if a == nil {
			a = new(agg)
			r.curTasks[t.Name] = a
		}
		a.add(one)
	} else {
		// The clock went back.
		r.addOlder(key{m, t.Name}, one)
	}
	r.mu.Unlock()
}

// foldCurrent moves the counts in curTasks to older, keeping the entries
// of the names seen since the last fold for the next minute. r.mu must be
// held.
func (r *Recorder) foldCurrent() {
	for name, a := range r.curTasks {
		if a.finished == 0 {
			delete(r.curTasks, name)
			continue
		}
		r.addOlder(key{r.cur, name}, *a)
		*a = agg{}
	}
}

func (r *Recorder) addOlder(k key, b agg) {
	a := r.older[k]
	a.add(b)
	r.older[k] = a
}

// Run writes the minutes that have ended, shortly after each minute
// boundary, and prunes rows older than Config.Retention. A failed write is
// logged at warn and its counts kept in memory for the next one (counts
// older than the retention are dropped then). When ctx ends, Run flushes
// everything, the current minute included, taking at most
// Config.StopFlushTimeout, and returns nil, or the error of that final
// flush, which says how much was not written.
func (r *Recorder) Run(ctx context.Context) error {
	timer := time.NewTimer(r.untilNextWrite())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			// ctx is over, but the flush is what stopping is for.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StopFlushTimeout)
			defer cancel()
			if err := r.Flush(fctx); err != nil {
				rows, tasks := r.Unwritten()
				return fmt.Errorf("final flush within %v: %w (not written: %d finished tasks in %d rows)",
					r.cfg.StopFlushTimeout, err, tasks, rows)
			}
			return nil
		case <-timer.C:
			if err := r.write(ctx, false); err != nil && ctx.Err() == nil {
				r.log.Warn("writing task statistics failed; will retry in a minute", "err", err)
			}
			timer.Reset(r.untilNextWrite())
		}
	}
}

// untilNextWrite is the time until writeDelay after the next minute
// boundary, or after the current one if that has not come yet.
func (r *Recorder) untilNextWrite() time.Duration {
	now := r.now()
	next := time.Unix(snappea.MinuteOf(now.Add(-writeDelay))+60, 0).Add(writeDelay)
	return next.Sub(now)
}

// Unwritten returns what is recorded and not yet written: the rows (one
// per minute and task name) and the finished tasks they count. After a
// failed final flush, it is what the stop loses.
func (r *Recorder) Unwritten() (rows int, tasks int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.curTasks {
		if a.finished > 0 {
			rows++
			tasks += a.finished
		}
	}
	for _, a := range r.older {
		rows++
		tasks += a.finished
	}
	return rows, tasks
}

// Flush writes everything recorded so far, the current minute included,
// with a fresh backlog sample for the current minute, and prunes old rows.
// On failure the counts stay in memory for the next write. Counts recorded
// in the current minute after a Flush add to the same row when written.
func (r *Recorder) Flush(ctx context.Context) error {
	return r.write(ctx, true)
}

// write writes the minutes before the current one, or with all every
// minute, in one transaction.
func (r *Recorder) write(ctx context.Context, all bool) error {
	now := r.now()
	cur := snappea.MinuteOf(now)
	var cutoff int64 // rows before this minute are pruned; 0: none
	if r.cfg.Retention > 0 {
		cutoff = snappea.MinuteOf(now.Add(-r.cfg.Retention))
	}

	// The sample belongs to the minute being closed: the one that just
	// ended, or the current one when flushing everything.
	sampleMinute := cur - 60
	if all {
		sampleMinute = cur
	}
	var sample int64
	sampled := false
	if r.cfg.Backlog != nil {
		n, err := r.cfg.Backlog(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("sampling the task backlog failed", "err", err)
			}
		} else {
			sample, sampled = n, true
		}
	}

	r.mu.Lock()
	if sampled {
		r.backlog[sampleMinute] = sample
	}
	if r.monotonic {
		r.rebase(now)
	}
	if all || r.cur < cur {
		r.foldCurrent()
	}
	type entry struct {
		key
		agg
	}
	var tasks []entry
	for k, a := range r.older {
		if all || k.minute < cur {
			tasks = append(tasks, entry{k, a})
			delete(r.older, k)
		}
	}
	backlog := r.backlog
	r.backlog = make(map[int64]int64)
	r.mu.Unlock()

	if len(tasks) == 0 && len(backlog) == 0 && cutoff == 0 {
		return nil
	}
	rows := make([]snappea.StatsRow, 0, len(tasks)+len(backlog))
	for _, e := range tasks {
		rows = append(rows, snappea.StatsRow{Minute: time.Unix(e.minute, 0), Task: e.task, Count: e.finished,
			Failures: e.failures, Total: e.total, Max: e.max})
	}
	for m, n := range backlog {
		rows = append(rows, snappea.StatsRow{Minute: time.Unix(m, 0), Backlog: n})
	}
	var before time.Time // zero: prune nothing
	if cutoff != 0 {
		before = time.Unix(cutoff, 0)
	}
	err := r.cfg.Store.AddStats(ctx, rows, before)
	if err == nil {
		r.log.Debug("task statistics written", "rows", len(tasks), "backlog_samples", len(backlog))
		return nil
	}

	// Keep what was not written for the next try, except what the next
	// write would prune anyway.
	r.mu.Lock()
	for _, e := range tasks {
		if e.minute < cutoff {
			continue
		}
		r.addOlder(e.key, e.agg)
	}
	for m, n := range backlog {
		// A sample taken meanwhile is newer: keep it.
		if _, ok := r.backlog[m]; !ok && m >= cutoff {
			r.backlog[m] = n
		}
	}
	r.mu.Unlock()
	return err
}

// Row is one minute's statistics for one task name: the domain's
// StatsRow. Its JSON form names the durations' unit: total_ns, max_ns.
type Row = snappea.StatsRow

// Read returns the rows of the minutes from the one containing since
// onwards, ordered by minute, then task name.
func Read(ctx context.Context, store Store, since time.Time) ([]Row, error) {
	return store.ReadStats(ctx, since)
}

// TaskSummary is one task name's statistics over a span of minutes. Its
// JSON form names the durations' unit, like Row's.
type TaskSummary struct {
	Task     string        `json:"task"`
	Count    int64         `json:"count"`    // tasks that finished
	Failures int64         `json:"failures"` // of those, the failures (see IsFailure)
	Total    time.Duration `json:"total_ns"` // the sum of their run times
	Mean     time.Duration `json:"mean_ns"`  // Total / Count
	Max      time.Duration `json:"max_ns"`   // the longest run time
}

// Summarize adds up rows per task name, ordered by task name. Rows without
// a task (backlog samples only) are skipped.
func Summarize(rows []Row) []TaskSummary {
	idx := make(map[string]int)
	var out []TaskSummary
	for _, r := range rows {
		if r.Task == "" {
			continue
		}
		i, ok := idx[r.Task]
		if !ok {
			i = len(out)
			idx[r.Task] = i
			out = append(out, TaskSummary{Task: r.Task})
		}
		s := &out[i]
		s.Count += r.Count
		s.Failures += r.Failures
		s.Total += r.Total
		s.Max = max(s.Max, r.Max)
	}
	for i := range out {
		if out[i].Count > 0 {
			out[i].Mean = out[i].Total / time.Duration(out[i].Count)
		}
	}
	slices.SortFunc(out, func(a, b TaskSummary) int { return cmp.Compare(a.Task, b.Task) })
	return out
}

package schedule

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// CatchUpLimit is the most tasks a CatchUp schedule enqueues at once for
// the ticks it missed; the older missed ticks beyond it are dropped, with
// a warning.
const CatchUpLimit = 100

// walkLimit bounds how many missed ticks of a cron spec are stepped
// through to find the latest. Beyond it (more than two months of a
// once-a-minute spec) the tick recorded as the last one is an older one;
// the next due time is right all the same.
const walkLimit = 100_000

// Backoff before retrying a tick that could not be taken.
const (
	retryMin = time.Second
	retryMax = time.Minute
)

// maxSleep caps one sleep of Run. Ticks are wall-clock times and timers
// run on the monotonic clock, so a step of the wall clock delays a tick by
// at most this.
const maxSleep = time.Minute

// never is the next_run of a schedule that will not fire again.
const never = math.MaxInt64

// ErrBadSchedule is matched by the errors for a schedule that cannot run
// as written: no name, a spec that does not parse or never fires, no
// task, arguments that are not JSON, a name used twice.
var ErrBadSchedule = errors.New("bad schedule")

// badError is an error matching ErrBadSchedule that says only what is wrong.
type badError struct{ msg string }

func (e *badError) Error() string        { return e.msg }
func (e *badError) Is(target error) bool { return target == ErrBadSchedule }

func bad(format string, a ...any) error { return &badError{fmt.Sprintf(format, a...)} }

// errTaken: another scheduler changed the row first.
var errTaken = errors.New("tick taken by another scheduler")

// Schedule is a periodic task: each tick of Spec enqueues Task with Args
// and Options.
type Schedule struct {
	// Name identifies the schedule; its state in the database is kept
	// under it, so renaming a schedule starts it over. Required, unique.
	Name string
	// Spec says when it fires: five cron fields (minute, hour, day of
	// month, month, day of week: "*/5 * * * *"), a descriptor (@yearly,
	// @monthly, @weekly, @daily, @hourly), or "@every DURATION" ("@every
	// 30s"; whole seconds, at least 1s). Cron fields are read in the local
	// time zone, unless the spec starts with CRON_TZ=Zone ("CRON_TZ=UTC
	// 0 6 * * *"). @every ticks keep their phase across restarts: they
	// fall on the first tick plus whole intervals.
	Spec string
	// Task is the registered task name to enqueue. Required.
	Task string
	// Args are the task's JSON arguments, the same for every tick.
	// Default null: the handler gets its argument type's zero value.
	Args json.RawMessage
	// Options are each enqueue's options, merged over the task
	// definition's defaults when the Queue has a Registry. RunAt cannot
	// be set; Delay can. With a Key, a tick whose previous task is still
	// pending enqueues nothing: the ticks do not pile up behind a slow or
	// stopped daemon (with OnDuplicate Replace the tick refreshes that
	// task instead). Debounce cannot be set: every tick would push the
	// pending task back.
	Options registry.Options
	// CatchUp makes the ticks missed while no scheduler ran (or while the
	// database could not be written) enqueue one task each, at most
	// CatchUpLimit, instead of one for them all.
	CatchUp bool
}

// parseSpec parses a Spec with the cron parser. The parser panics on some
// malformed time zone prefixes; that is an error here.
func parseSpec(spec string) (sched cron.Schedule, err error) {
	const want = `want five cron fields such as "*/5 * * * *", a descriptor such as "@hourly", or "@every 30s"`
	if strings.TrimSpace(spec) == "" {
		return nil, bad("spec is empty; %s", want)
	}
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, bad("spec %q does not parse; %s", spec, want)
		}
	}()
	sched, err = cron.ParseStandard(spec)
	if err != nil {
		return nil, bad("spec %q: %v; %s", spec, err, want)
	}
	if _, ok := sched.(cron.ConstantDelaySchedule); ok {
		// The parser rounds the interval up to 1s and truncates it to whole
		// seconds; refuse rather than run at another rate than written.
		_, after, _ := strings.Cut(spec, "@every ")
		d, err := time.ParseDuration(strings.TrimSpace(after))
		if err != nil || d < time.Second || d%time.Second != 0 {
			return nil, bad("spec %q: want an interval of whole seconds, at least 1s", spec)
		}
	}
	return sched, nil
}

// check validates s as of now, without its name, and returns its parsed
// spec. Errors say what is wrong, not which schedule: callers add that.
func (s *Schedule) check(now time.Time) (cron.Schedule, error) {
	if s.Task == "" {
		return nil, bad("task is empty")
	}
	sched, err := parseSpec(s.Spec)
	if err != nil {
		return nil, err
	}
	if sched.Next(now).IsZero() {
		return nil, bad("spec %q never fires (no tick within five years)", s.Spec)
	}
	if len(s.Args) > 0 && !json.Valid(s.Args) {
		return nil, bad("args are not valid JSON")
	}
	if err := s.Options.Validate(); err != nil {
		return nil, err
	}
	if err := noDebounce(s.Options); err != nil {
		return nil, err
	}
	if !s.Options.RunAt.IsZero() {
		return nil, bad("options: RunAt is set, but a periodic task has no fixed run time (Delay can be set)")
	}
	return sched, nil
}

// noDebounce refuses a Debounce: each tick's replace would push the
// pending task back again, and with a Debounce as long as the interval it
// would never run.
func noDebounce(o registry.Options) error {
	if o.Debounce > 0 {
		return fmt.Errorf("%w: Debounce is set, but each tick would push the pending task back again (OnDuplicate Replace without Debounce refreshes it)",
			registry.ErrBadOptions)
	}
	return nil
}

// Validate checks schedules as New does, without a queue: each has a
// name, used once, a task, a spec that parses and fires, JSON arguments
// and options that can be honoured; and with reg, a task reg knows whose
// handler accepts the arguments. It is for configuration checks such as
// 'snappea run --check'. The error lists every problem, each naming its
// schedule; it matches ErrBadSchedule, registry.ErrUnknownTask,
// registry.ErrBadArgs or registry.ErrBadOptions as the problems do.
func Validate(schedules []Schedule, reg *registry.Registry) error {
	_, err := compile(schedules, reg, time.Now())
	return err
}

// compile validates schedules and returns them ready to run.
func compile(schedules []Schedule, reg *registry.Registry, now time.Time) ([]*entry, error) {
	var errs []error
	seen := make(map[string]bool, len(schedules))
	entries := make([]*entry, 0, len(schedules))
	for i := range schedules {
		s := schedules[i]
		if s.Name == "" {
			errs = append(errs, bad("schedules[%d] (task %q): name is empty", i, s.Task))
			continue
		}
		if seen[s.Name] {
			errs = append(errs, bad("schedule %q: the name is used twice", s.Name))
			continue
		}
		seen[s.Name] = true
		sched, err := s.check(now)
		if err != nil {
			errs = append(errs, fmt.Errorf("schedule %q: %w", s.Name, err))
			continue
		}
		e := &entry{Schedule: s, sched: sched, args: s.Args}
		if len(e.args) == 0 {
			e.args = json.RawMessage("null")
		}
		if reg != nil {
			if err := reg.Check(s.Task, e.args); err != nil {
				errs = append(errs, fmt.Errorf("schedule %q: %w", s.Name, err))
				continue
			}
			// As each tick's enqueue will merge them: found now, not at
			// every tick.
			opts := reg.Options(s.Task).Merge(s.Options)
			if err := opts.ValidateEnqueue(); err != nil {
				errs = append(errs, fmt.Errorf("schedule %q: %w", s.Name, err))
				continue
			}
			if err := noDebounce(opts); err != nil {
				errs = append(errs, fmt.Errorf("schedule %q: %w", s.Name, err))
				continue
			}
		}
		entries = append(entries, e)
	}
	return entries, errors.Join(errs...)
}

// Config configures a Scheduler. Queue is required.
type Config struct {
	// Queue is what ticks enqueue their tasks through; its database
	// keeps each schedule's next due time. Required.
	Queue *queue.Queue
	// Schedules are the periodic tasks to run. None: Run only waits for
	// its context to end.
	Schedules []Schedule
	// Registry, if set, makes New check each schedule's task name and
	// arguments against it, so that a typo fails at start rather than at
	// the first tick. Optional.
	Registry *registry.Registry
	// Logger receives lifecycle records and skipped or missed ticks at
	// info, failures at warn and error, and a "schedule fired" record per
	// enqueued task at debug. Arguments are never logged. Default
	// slog.Default().
	Logger *slog.Logger
	// Now tells the time; cron fields are read in the location of the
	// times it returns. Default time.Now. Run sleeps on real timers, so a
	// test with a Now of its own does not call Run (List does not sleep),
	// or runs under testing/synctest, which fakes time.Now and timers
	// alike and needs no Now.
	Now func() time.Time
}

// Scheduler enqueues the tasks of its schedules at their ticks; see the
// package documentation. Create it with New and run it with Run.
type Scheduler struct {
	q       *queue.Queue
	log     *slog.Logger
	now     func() time.Time
	entries []*entry

	runMu sync.Mutex // one Run at a time
}

// entry is a Schedule as a running scheduler sees it. Only Run's
// goroutine changes next and the fields after it.
type entry struct {
	Schedule
	sched cron.Schedule
	args  json.RawMessage // Args, or null

	next    time.Time     // the stored next_run as last seen: the tick to take
	retryAt time.Time     // zero, or when to retry a tick that failed
	backoff time.Duration // the wait before the next retry
}

// dueAt is when the entry wants attention.
func (e *entry) dueAt() time.Time {
	if !e.retryAt.IsZero() {
		return e.retryAt
	}
	return e.next
}

// New checks cfg (see Validate) and returns a Scheduler. It does not touch
// the database: Run brings the stored state in line with the schedules.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Queue == nil {
		return nil, errors.New("schedule config: Queue is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	entries, err := compile(cfg.Schedules, cfg.Registry, cfg.Now())
	if err != nil {
		return nil, err
	}
	return &Scheduler{q: cfg.Queue, log: cfg.Logger, now: cfg.Now, entries: entries}, nil
}

// Run takes the schedules' ticks as they come due until ctx ends, then
// returns nil. It sleeps on a timer until the earliest due tick (at most a
// minute at a time, to notice steps of the wall clock).
//
// At its start it records each schedule in the database: a new one is due
// at its first tick after now (it does not fire at once), one whose spec
// changed is due at the new spec's first tick after now, and the others
// keep their stored due time, which may have passed: the missed ticks
// fire at once (see Schedule.CatchUp).
//
// Database errors are logged, not returned, and the failed step retried
// after a backoff (1s, doubling to 1m) while the other schedules go on: a
// busy or full queue delays a tick rather than stopping the scheduler, and
// the tick, still stored as due, is taken once it goes through. So Run
// always returns nil, and a foreman.Service running it is never restarted
// for a database hiccup. Calls to Run do not overlap: a second waits for
// the first to return.
func (s *Scheduler) Run(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	t := time.NewTimer(maxSleep)
	t.Stop()
	defer t.Stop()
	sleep := func(d time.Duration) bool {
		t.Reset(min(max(d, 0), maxSleep))
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}

	backoff := retryMin
	for {
		err := s.sync(ctx, s.entries)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("scheduler could not read its schedules from the database; will retry",
			"err", err, "retry_in", backoff)
		if !sleep(backoff) {
			return nil
		}
		backoff = min(2*backoff, retryMax)
	}
	s.log.Info("scheduler started", "schedules", len(s.entries))
	for {
		next := s.step(ctx)
		if ctx.Err() != nil || !sleep(next.Sub(s.now())) {
			s.log.Info("scheduler stopped")
			return nil
		}
	}
}

// step takes the ticks due now and returns when the next one is due
// (the zero time without schedules: then the caller sleeps its longest).
func (s *Scheduler) step(ctx context.Context) time.Time {
	now := s.now()
	var earliest time.Time
	for _, e := range s.entries {
		if ctx.Err() != nil {
			return earliest
		}
		if !e.dueAt().After(now) {
			s.take(ctx, e, now)
		}
		if at := e.dueAt(); earliest.IsZero() || at.Before(earliest) {
			earliest = at
		}
	}
	if earliest.IsZero() {
		earliest = now.Add(maxSleep)
	}
	return earliest
}

// Store holds the schedules' state: a storage.Backend.
type Store interface {
	// Schedules lists the stored schedules by name, in tx if it is not
	// nil (see storage.Backend).
	Schedules(ctx context.Context, tx *sql.Tx) ([]snappea.ScheduleState, error)
}

// readStates returns every stored schedule by name, and the names in
// order.
func readStates(ctx context.Context, st Store, tx *sql.Tx) (map[string]snappea.ScheduleState, []string, error) {
	states, err := st.Schedules(ctx, tx)
	if err != nil {
		return nil, nil, err
	}
	byName := make(map[string]snappea.ScheduleState, len(states))
	names := make([]string, 0, len(states))
	for _, r := range states {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	return byName, names, nil
}

// sync brings the stored rows of entries in line with them, in one
// transaction, and loads their due times: a missing row is created due at
// the first tick after now, a row with another spec is reset to the first
// tick after now, and a row with the same spec keeps its due time.
func (s *Scheduler) sync(ctx context.Context, entries []*entry) error {
	now := s.now()
	next := make([]time.Time, len(entries))
	was := make([]string, len(entries)) // the stored spec, if it changed
	added := make([]bool, len(entries))
	b := s.q.Backend()
	// WriteTx: the writers' turn, and no wakeup (nothing is enqueued). The
	// rows are read in the transaction, which keeps them from changing
	// until it ends: a rename writes back the due time it read, and must
	// not write over a tick another scheduler took meanwhile.
	err := s.q.WriteTx(ctx, func(tx *sql.Tx) error {
		rows, _, err := readStates(ctx, b, tx)
		if err != nil {
			return err
		}
		for i, e := range entries {
			r, ok := rows[e.Name]
			was[i], added[i] = "", !ok
			switch {
			case !ok:
				next[i] = e.after(now)
				if err := b.SaveSchedule(ctx, tx, snappea.ScheduleState{Name: e.Name, Spec: e.Spec, Task: e.Task,
					Next: next[i]}); err != nil {
					return fmt.Errorf("add schedule %s: %w", e.Name, err)
				}
			case r.Spec != e.Spec:
				next[i], was[i] = e.after(now), r.Spec
				if err := b.SaveSchedule(ctx, tx, snappea.ScheduleState{Name: e.Name, Spec: e.Spec, Task: e.Task,
					Next: next[i], Last: r.Last}); err != nil {
					return fmt.Errorf("update schedule %s: %w", e.Name, err)
				}
			default:
				next[i] = r.Next.In(now.Location())
				if r.Task != e.Task {
					r.Task = e.Task
					if err := b.SaveSchedule(ctx, tx, r); err != nil {
						return fmt.Errorf("update schedule %s: %w", e.Name, err)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, e := range entries {
		e.next = next[i]
		switch {
		case added[i]:
			s.log.Info("schedule added", "schedule", e.Name, "spec", e.Spec, "task", e.Task, "next", e.next)
		case was[i] != "":
			s.log.Info("schedule spec changed; next run counted from now", "schedule", e.Name,
				"spec", e.Spec, "was", was[i], "next", e.next)
		}
	}
	return nil
}

// after is the first tick after now, or the never time.
func (e *entry) after(now time.Time) time.Time {
	if t := e.sched.Next(now); !t.IsZero() {
		return t
	}
	return time.Unix(0, never)
}

// plan is what taking an entry's due ticks at a moment does.
type plan struct {
	ticks  []time.Time // a task for each, oldest first
	missed int64       // due ticks without a task: folded into one, or beyond CatchUpLimit
	last   time.Time   // the latest due tick: the new last_run
	next   time.Time   // the first tick after the moment: the new next_run
}

// plan works out the ticks due at now, from the stored due tick e.next
// (at or before now): the latest of them, or with CatchUp the latest
// CatchUpLimit, get a task.
func (e *entry) plan(now time.Time) plan {
	keep := 1
	if e.CatchUp {
		keep = CatchUpLimit
	}
	var p plan
	if d, ok := e.sched.(cron.ConstantDelaySchedule); ok {
		// Ticks fall on e.next plus whole intervals: count them instead
		// of stepping through them.
		n := int64(now.Sub(e.next)/d.Delay) + 1
		p.last = e.next.Add(time.Duration(n-1) * d.Delay)
		k := min(n, int64(keep))
		for i := k - 1; i >= 0; i-- {
			p.ticks = append(p.ticks, p.last.Add(-time.Duration(i)*d.Delay))
		}
		p.missed = n - k
		p.next = p.last.Add(d.Delay)
		return p
	}
	var n int64
	t := e.next
	for !t.After(now) && n < walkLimit {
		p.ticks = append(p.ticks, t)
		if len(p.ticks) > keep {
			p.ticks = p.ticks[1:]
		}
		n++
		t = e.sched.Next(t)
		if t.IsZero() {
			break
		}
	}
	p.last = p.ticks[len(p.ticks)-1]
	p.missed = n - int64(len(p.ticks))
	p.next = e.after(now)
	return p
}

// take takes the ticks of e due at now: in one transaction, it moves the
// stored due time on, if it is still the one e saw (else another
// scheduler took the ticks and e learns the new due time), and enqueues
// the planned tasks. On failure nothing is written and e retries later.
func (s *Scheduler) take(ctx context.Context, e *entry, now time.Time) {
	if e.next.After(now) {
		e.retryAt = time.Time{} // nothing due yet
		return
	}
	p := e.plan(now)
	results := make([]registry.Result, 0, len(p.ticks))
	err := s.q.InTx(ctx, func(tx *sql.Tx) error {
		results = results[:0]
		// The compare-and-set: it changes the row only if its next tick
		// is still the one this scheduler saw due.
		took, err := s.q.Backend().TakeTick(ctx, tx, e.Name, e.next, p.next, p.last)
		if err != nil {
			return err
		}
		if !took {
			return errTaken
		}
		for range p.ticks {
			r, err := s.q.EnqueueWithTx(ctx, tx, e.Task, e.args, e.Options)
			if err != nil {
				return fmt.Errorf("schedule %s: %w", e.Name, err)
			}
			results = append(results, r)
		}
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errTaken):
		s.log.Debug("schedule tick already taken by another scheduler", "schedule", e.Name, "tick", e.next)
		if err := s.sync(ctx, []*entry{e}); err != nil {
			s.failed(ctx, e, now, err)
			return
		}
		e.retryAt, e.backoff = time.Time{}, 0
		return
	default:
		s.failed(ctx, e, now, err)
		return
	}

	due := e.next
	e.next, e.retryAt, e.backoff = p.next, time.Time{}, 0
	debug := s.log.Enabled(ctx, slog.LevelDebug)
	dups, holder := 0, int64(0)
	for i, r := range results {
		if r.Duplicate {
			dups, holder = dups+1, r.ID
			continue
		}
		if debug {
			s.log.Debug("schedule fired", "schedule", e.Name, "task", e.Task, "task_id", r.ID, "tick", p.ticks[i])
		}
	}
	if dups > 0 {
		s.log.Info("schedule tick skipped: a task with its key is still pending", "schedule", e.Name,
			"task", e.Task, "task_id", holder, "skipped", dups, "tick", p.last)
	}
	switch {
	case p.missed > 0 && e.CatchUp:
		s.log.Warn("schedule missed more ticks than it catches up on; the oldest were dropped",
			"schedule", e.Name, "dropped", p.missed, "enqueued", len(p.ticks), "since", due)
	case p.missed > 0:
		s.log.Info("schedule missed ticks; enqueued one task for them", "schedule", e.Name,
			"ticks", p.missed+1, "since", due, "tick", p.last)
	case len(p.ticks) > 1:
		s.log.Info("schedule caught up on missed ticks", "schedule", e.Name, "enqueued", len(p.ticks), "since", due)
	}
	if p.next.UnixNano() == never {
		s.log.Warn("schedule has no further tick within five years", "schedule", e.Name, "spec", e.Spec)
	}
}

// failed logs a tick that could not be taken and sets its retry.
func (s *Scheduler) failed(ctx context.Context, e *entry, now time.Time, err error) {
	if ctx.Err() != nil {
		return // stopping: the tick stays due for the next start
	}
	e.backoff = min(max(2*e.backoff, retryMin), retryMax)
	e.retryAt = now.Add(e.backoff)
	level := slog.LevelError
	if errors.Is(err, queue.ErrBusy) || errors.Is(err, queue.ErrBacklogFull) {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, "schedule tick failed; will retry", "schedule", e.Name, "task", e.Task,
		"tick", e.next, "err", err, "retry_in", e.backoff)
}

// Entry is a schedule and its stored state, as List and Read report it.
type Entry struct {
	Name, Spec, Task string
	Next             time.Time // when it fires next; zero: never (no tick within five years)
	Last             time.Time // the latest tick taken; zero: none yet
}

// List returns the scheduler's schedules in the order configured, with
// their next and last run as stored in the database: another scheduler on
// the same database may have taken the latest ticks. A schedule whose row
// is missing or holds another spec (Run has not started yet) shows the
// next run Run would give it.
func (s *Scheduler) List(ctx context.Context) ([]Entry, error) {
	rows, _, err := readStates(ctx, s.q.Backend(), nil)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]Entry, 0, len(s.entries))
	for _, e := range s.entries {
		en := Entry{Name: e.Name, Spec: e.Spec, Task: e.Task}
		r, ok := rows[e.Name]
		if ok && r.Spec == e.Spec {
			en.Next = r.Next.In(now.Location())
		} else {
			en.Next = e.after(now)
		}
		en.Next = entryTime(en.Next)
		if ok && !r.Last.IsZero() {
			en.Last = r.Last.In(now.Location())
		}
		out = append(out, en)
	}
	return out, nil
}

// Read returns every schedule stored in st (a storage.Backend, such as a
// Queue's Backend), sorted by name, configured or not: what a scheduler
// last recorded, without its configuration.
func Read(ctx context.Context, st Store) ([]Entry, error) {
	states, err := st.Schedules(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(states))
	for _, r := range states {
		en := Entry{Name: r.Name, Spec: r.Spec, Task: r.Task, Next: entryTime(r.Next.In(time.Local))}
		if !r.Last.IsZero() {
			en.Last = r.Last.In(time.Local)
		}
		out = append(out, en)
	}
	return out, nil
}

// entryTime is a stored time as an Entry shows it: never is zero.
func entryTime(t time.Time) time.Time {
	if t.UnixNano() == never {
		return time.Time{}
	}
	return t
}

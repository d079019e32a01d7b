package foreman

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/registry"
)

// Source hands out queued tasks; *queue.Queue is one. Claim removes up to n
// ready tasks from the queue for good before returning them. Promote makes
// the delayed tasks due at or before now ready and returns when the next
// one is due (the zero time when none is waiting).
type Source interface {
	Claim(ctx context.Context, n int) ([]snappea.Task, error)
	Promote(ctx context.Context, now time.Time) (next time.Time, err error)
}

// spaceReclaimer is a Source that can give disk space back after a claim
// failed because the disk was full; *queue.Queue is one. Before claiming
// again, the foreman has it reclaim the space first: claims that succeed
// as soon as a little room is freed could otherwise use it all up before
// anything gives back the space the database's log took, and the daemon
// would be stuck again.
type spaceReclaimer interface {
	ReclaimSpace(ctx context.Context) error
}

// Ledger is a Source that records the tasks it hands out as in flight
// (the daemon's; see package daemon). It is told when each claimed task is
// settled: its outcome known and its retry or failed record, if any,
// written, so that the in-flight record may go. A task Interrupted by the
// hard stop is settled too, and one abandoned then never is: the ledger
// keeps their records, for the daemon to record them lost. Settled is
// called from the task's goroutine and must not block.
//
// Held reports whether the last claim left ready tasks queued because of
// a limit (a task name's MaxRunning, a serial key): the foreman then
// claims again whenever a task ends, without waiting for a wakeup.
type Ledger interface {
	Settled(t *snappea.Task, o Outcome)
	Held() bool
}

// Waker tells the foreman that tasks may have been queued; *wakeup.Watcher
// is one. The channel is never closed.
type Waker interface {
	Wakes() <-chan struct{}
}

// Runner runs a task by name with its JSON arguments; *registry.Registry is
// one. Errors matching registry.ErrUnknownTask or registry.ErrBadArgs mean
// the handler never started. Options returns a task definition's defaults,
// which fill in the options a task was enqueued without.
type Runner interface {
	Run(ctx context.Context, name string, args []byte) error
	Options(name string) registry.Options
}

// ProcessRunner runs a task in a child process; the daemon's process pool
// (package prefork, through package daemon) is one. Its error is the
// task's: nil for success, a *PanicError for a panic in the child, the
// handler's error (matching registry.ErrUnknownTask or ErrBadArgs when it
// never started), or an error naming how the child ended when it died or
// was killed ("worker process died: killed by SIGKILL"). ctx carries the
// task's timeout and cancel: a child whose handler ignores them is
// killed, and RunProcess returns.
type ProcessRunner interface {
	RunProcess(ctx context.Context, t ProcessTask) error
}

// ProcessTask is what a ProcessRunner gets of a task.
type ProcessTask struct {
	ID          int64
	Name        string
	Attempt     int           // 1 for the first run
	MaxAttempts int           // the attempt budget, as resolved from the task and its definition
	Timeout     time.Duration // 0: none; also on ctx
	Args        []byte
	EnqueuedAt  time.Time
	// Started is called with the child's pid once a child has the task,
	// for Snapshot's ActiveTask.PID.
	Started func(pid int)
}

// Reporter receives the errors the foreman does not handle itself: a task
// that failed for good, panicked or was discarded (task is set), or a
// failure of the loop or a service (task is nil). It is called once per
// error, from the goroutine where it happened; a panic's error is a
// *PanicError carrying the stack.
type Reporter interface {
	Report(err error, task *snappea.Task)
}

// Store keeps what becomes of failed tasks; *queue.Queue is one. Retry
// enqueues a task again as a new row with its attempt number increased, due
// at at; Fail records a task that failed for good.
type Store interface {
	Retry(ctx context.Context, t *snappea.Task, at time.Time) (int64, error)
	Fail(ctx context.Context, t *snappea.Task, cause error) error
}

// Observer is told of every finished task, from the task's goroutine, once
// its outcome is known; stats and metrics are observers. It runs on the hot
// path, so it must return quickly and never block.
type Observer interface {
	Finished(t *snappea.Task, o Outcome, d time.Duration)
}

// MaxWorkers is the largest pool a Foreman runs: Config.Workers and
// SetWorkers refuse more. Each worker slot costs memory up front (the
// results channel, a claim's batch), so a mistyped size must fail, not
// exhaust memory.
const MaxWorkers = 10000

// claimDelay is the longest a free slot waits for more slots to free up
// before a claim while other tasks run; see Run.
const claimDelay = time.Millisecond

// Errors the foreman returns or sets as the cause of a task's context.
var (
	// ErrAlreadyRunning is returned by Run when called a second time.
	ErrAlreadyRunning = errors.New("foreman: Run called twice")
	// ErrNotRunning is returned by Ping when Run is not running.
	ErrNotRunning = errors.New("foreman is not running")
	// ErrHardStop is the cause of a task context cancelled because the
	// graceful deadline passed.
	ErrHardStop = errors.New("snappea is stopping: graceful timeout reached")
	// ErrCancelled is the cause of a task context cancelled by Cancel.
	ErrCancelled = errors.New("task cancelled by the operator")
	// ErrTimeout is the cause of a task context whose timeout passed.
	ErrTimeout = errors.New("task timeout reached")
)

// Config configures a Foreman. Source, Waker and Runner are required;
// everything else has a default.
type Config struct {
	Source   Source   // where tasks come from; required
	Waker    Waker    // wakes the loop when tasks are queued; required
	Runner   Runner   // runs tasks; required
	Reporter Reporter // optional: receives task failures and loop errors
	// Store, if set, enqueues retries of failed tasks that have attempts
	// left and records tasks that failed for good. Without it a failed
	// task is only logged and reported.
	Store Store
	// Observers are told of every finished task; optional.
	Observers []Observer
	// Processes runs in child processes the tasks whose definition says
	// Isolated (registry.Options), or every task with IsolateAll; the
	// others run on goroutines. Both kinds share the Workers slots, and
	// their options (timeout, retries, cancel) work the same. Nil: no
	// child processes; a task whose definition says Isolated then fails
	// rather than run unprotected.
	Processes ProcessRunner
	// IsolateAll runs every task through Processes (required then).
	IsolateAll bool
	// Services are long-running functions started with Run, restarted
	// with backoff when they fail, and stopped with the workers; optional.
	Services []Service

	// Workers is the number of tasks that run at once, at most
	// MaxWorkers. Default 16. SetWorkers changes it while running.
	Workers int
	// Batch caps how many tasks one claim takes. Claims never take more
	// than the free worker slots. Default: Workers (and following
	// SetWorkers).
	Batch int
	// PollInterval is how often the foreman claims without a wakeup, so
	// that queued work is found even if a wakeup is lost. Default 3s.
	PollInterval time.Duration
	// GracefulTimeout is how long running tasks may go on after Run's
	// context is cancelled before their contexts are cancelled. Default 10s;
	// negative means cancel at once.
	GracefulTimeout time.Duration
	// HardStopWait is how long the foreman waits for handlers to return
	// after cancelling their contexts; handlers still running then are
	// abandoned and counted interrupted. It is also how long a handler may
	// run past its timeout before it counts as overdue. Default 1s.
	HardStopWait time.Duration
	// RetryBackoff is about how long the first retry of a failed task
	// waits; each further retry waits twice as long, with jitter (a random
	// half of the wait), up to RetryBackoffMax. Default 1s.
	RetryBackoff time.Duration
	// RetryBackoffMax caps the wait before a retry. Default 10m.
	RetryBackoffMax time.Duration
	// StartPaused starts the foreman paused: it claims nothing until
	// Resume. A reload uses it to keep an operator's pause.
	StartPaused bool
	// Logger receives lifecycle records at info, problems at warn and
	// error, and "task started" and "task done" records per task at debug. Default
	// slog.Default(). Task arguments are never logged.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Source == nil {
		return errors.New("foreman config: Source is required")
	}
	if c.Waker == nil {
		return errors.New("foreman config: Waker is required")
	}
	if c.Runner == nil {
		return errors.New("foreman config: Runner is required")
	}
	if c.IsolateAll && c.Processes == nil {
		return errors.New("foreman config: IsolateAll needs Processes")
	}
	if c.Workers < 0 {
		return fmt.Errorf("foreman config: Workers is %d, want at least 1 (0 for the default)", c.Workers)
	}
	if c.Workers > MaxWorkers {
		return fmt.Errorf("foreman config: Workers is %d, more than the limit of %d (foreman.MaxWorkers)", c.Workers, MaxWorkers)
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.Batch < 0 {
		return fmt.Errorf("foreman config: Batch is %d, want at least 1 (0 for the default)", c.Batch)
	}
	if c.PollInterval < 0 {
		return fmt.Errorf("foreman config: PollInterval is %v, want a positive duration (0 for the default)", c.PollInterval)
	}
	if c.PollInterval == 0 {
		c.PollInterval = 3 * time.Second
	}
	if c.GracefulTimeout == 0 {
		c.GracefulTimeout = 10 * time.Second
	}
	if c.HardStopWait <= 0 {
		c.HardStopWait = time.Second
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = time.Second
	}
	if c.RetryBackoffMax <= 0 {
		c.RetryBackoffMax = 10 * time.Minute
	}
	for i, s := range c.Services {
		if s.Name == "" || s.Run == nil {
			return fmt.Errorf("foreman config: Services[%d] needs a Name and a Run func", i)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Outcome is how a task ended.
type Outcome int

// The outcomes the foreman counts.
const (
	Done        Outcome = iota // the handler returned nil
	Failed                     // the handler returned an error (also after its timeout)
	Panicked                   // the handler panicked
	Discarded                  // unknown task name or undecodable arguments: never started
	Interrupted                // still running at the graceful deadline
	Cancelled                  // its context was cancelled by Cancel
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"done", "failed", "panicked", "discarded", "interrupted", "cancelled"}

func (o Outcome) String() string {
	if o < 0 || o >= numOutcomes {
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// Counters counts finished tasks by outcome since the foreman started, and
// two events besides: Retried counts failed attempts enqueued again (they
// are also counted Failed), Overdue counts handlers still running
// HardStopWait past their timeout.
type Counters struct {
	Done, Failed, Panicked, Discarded, Interrupted, Cancelled int64
	Retried, Overdue                                          int64
}

// State is what the foreman is doing as a whole.
type State int

// The foreman's states.
const (
	Running  State = iota // claiming and running tasks
	Paused                // not claiming; running tasks go on
	Stopping              // intake stopped for good; waiting for running tasks
)

func (s State) String() string {
	switch s {
	case Running:
		return "running"
	case Paused:
		return "paused"
	case Stopping:
		return "stopping"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Snapshot is the foreman's state at one moment, for status pages.
type Snapshot struct {
	State     State
	StartedAt time.Time // when Run started; zero before
	Workers   int       // the pool size
	Busy      int       // tasks claimed and not finished
	// IdleSince is when the last running task finished; zero while tasks
	// run. With Busy 0 and ready tasks waiting, it says how long the
	// foreman has looked away from them.
	IdleSince time.Time
	Active    []ActiveTask // the running tasks, oldest first
	Counters  Counters
	Services  []ServiceStatus
}

// ActiveTask is a running task.
type ActiveTask struct {
	ID        int64
	Name      string
	Attempt   int // 1 for a first run
	StartedAt time.Time
	Deadline  time.Time // zero without a timeout
	Overdue   bool      // still running HardStopWait past its deadline
	PID       int       // the child process running it; 0 on a goroutine
}

// PanicError is the error of a task whose handler panicked.
type PanicError struct {
	Value any       // what was passed to panic
	Stack []byte    // the panicking goroutine's stack, as debug.Stack prints it
	PCs   []uintptr // the same stack as program counters, for error reporters
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Foreman is the daemon's loop and worker pool. Create it with New, start it
// with Run.
type Foreman struct {
	cfg Config
	log *slog.Logger

	started  atomic.Bool
	stopOnce sync.Once
	stopCh   chan struct{} // closed: stop intake
	hardOnce sync.Once
	hardCh   chan struct{} // closed: cancel running tasks
	runDone  chan struct{} // closed when Run returns
	kick     chan struct{} // wakes the loop after Resume or SetWorkers
	pings    chan chan struct{}

	// taskCtx is the parent of every task's context: cancelled at the hard stop.
	taskCtx     context.Context
	cancelTasks context.CancelCauseFunc
	hardStopped atomic.Bool

	paused    atomic.Bool
	workers   atomic.Int64
	busy      atomic.Int64
	idleSince atomic.Int64 // unix ns; 0 while busy
	startedAt atomic.Int64 // unix ns

	results chan Outcome
	counts  [numOutcomes]atomic.Int64
	retried atomic.Int64
	overdue atomic.Int64

	mu     sync.Mutex
	active map[int64]*activeTask

	services []*supervised
	ledger   Ledger // Source's, if it is one
}

type activeTask struct {
	id       int64
	name     string
	attempt  int
	pid      atomic.Int64 // the child process running it; 0 on a goroutine
	started  time.Time
	deadline time.Time
	overdue  atomic.Bool
	cancel   context.CancelCauseFunc
}

// New checks cfg and returns a Foreman ready to Run.
func New(cfg Config) (*Foreman, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	f := &Foreman{
		cfg:     cfg,
		log:     cfg.Logger,
		stopCh:  make(chan struct{}),
		hardCh:  make(chan struct{}),
		runDone: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		pings:   make(chan chan struct{}),
		results: make(chan Outcome, max(cfg.Workers, 64)),
		active:  make(map[int64]*activeTask),
	}
	f.workers.Store(int64(cfg.Workers))
	f.paused.Store(cfg.StartPaused)
	f.ledger, _ = cfg.Source.(Ledger)
	for _, s := range cfg.Services {
		f.services = append(f.services, &supervised{Service: s, state: ServiceStarting})
	}
	f.taskCtx, f.cancelTasks = context.WithCancelCause(context.Background())
	return f, nil
}

// Counters returns how many tasks have finished, by outcome.
func (f *Foreman) Counters() Counters {
	return Counters{
		Done:        f.counts[Done].Load(),
		Failed:      f.counts[Failed].Load(),
		Panicked:    f.counts[Panicked].Load(),
		Discarded:   f.counts[Discarded].Load(),
		Interrupted: f.counts[Interrupted].Load(),
		Cancelled:   f.counts[Cancelled].Load(),
		Retried:     f.retried.Load(),
		Overdue:     f.overdue.Load(),
	}
}

// State says whether the foreman is running, paused or stopping.
func (f *Foreman) State() State {
	select {
	case <-f.stopCh:
		return Stopping
	default:
	}
	if f.paused.Load() {
		return Paused
	}
	return Running
}

// Snapshot returns the foreman's state, its running tasks and its services.
func (f *Foreman) Snapshot() Snapshot {
	s := Snapshot{
		State:    f.State(),
		Workers:  int(f.workers.Load()),
		Busy:     int(f.busy.Load()),
		Services: f.serviceStatus(),
	}
	if ns := f.startedAt.Load(); ns != 0 {
		s.StartedAt = time.Unix(0, ns)
	}
	if ns := f.idleSince.Load(); ns != 0 {
		s.IdleSince = time.Unix(0, ns)
	}
	f.mu.Lock()
	s.Active = make([]ActiveTask, 0, len(f.active))
	for _, a := range f.active {
		s.Active = append(s.Active, ActiveTask{ID: a.id, Name: a.name, Attempt: a.attempt,
			StartedAt: a.started, Deadline: a.deadline, Overdue: a.overdue.Load(), PID: int(a.pid.Load())})
	}
	f.mu.Unlock()
	// After the tasks' overdue flags, which are set after the count: a
	// task shown overdue is also counted.
	s.Counters = f.Counters()
	slices.SortFunc(s.Active, func(a, b ActiveTask) int { return cmp.Compare(a.ID, b.ID) })
	return s
}

// Paused reports whether the foreman is paused, also while it stops: a
// reload passes the pause on to the next program.
func (f *Foreman) Paused() bool { return f.paused.Load() }

// Pause stops claiming until Resume; running tasks go on. It returns false
// if the foreman was already paused.
func (f *Foreman) Pause() bool {
	if f.paused.Swap(true) {
		return false
	}
	f.log.Info("paused: claiming no tasks until resumed", "running", f.busy.Load())
	return true
}

// Resume undoes Pause. It returns false if the foreman was not paused.
func (f *Foreman) Resume() bool {
	if !f.paused.Swap(false) {
		return false
	}
	f.log.Info("resumed")
	f.nudge()
	return true
}

// SetWorkers changes the pool size, from 1 to MaxWorkers. Growing takes
// effect at once; shrinking lets running tasks finish and claims again only
// below the new size.
func (f *Foreman) SetWorkers(n int) error {
	if n < 1 || n > MaxWorkers {
		return fmt.Errorf("set workers: %d: want 1 to %d (foreman.MaxWorkers)", n, MaxWorkers)
	}
	if old := f.workers.Swap(int64(n)); old != int64(n) {
		f.log.Info("workers changed", "from", old, "to", n)
	}
	f.nudge()
	return nil
}

func (f *Foreman) nudge() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Cancel cancels the context of the running task with the given id and
// reports whether such a task was running. The handler decides when to
// return; the task counts as cancelled and is neither retried nor recorded
// as failed.
func (f *Foreman) Cancel(id int64) bool {
	f.mu.Lock()
	a := f.active[id]
	f.mu.Unlock()
	if a == nil {
		return false
	}
	a.cancel(ErrCancelled)
	f.log.Info("task cancelled by request", "task", a.name, "task_id", id)
	return true
}

// Ping returns nil once the foreman's loop has answered, so a health check
// can tell a live loop from a stuck one; ErrNotRunning if Run is not
// running, or ctx's error if the loop does not answer in time.
func (f *Foreman) Ping(ctx context.Context) error {
	if !f.started.Load() {
		return ErrNotRunning
	}
	c := make(chan struct{})
	select {
	case f.pings <- c:
	case <-f.runDone:
		return ErrNotRunning
	case <-ctx.Done():
		return fmt.Errorf("ping foreman loop: %w", ctx.Err())
	}
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ping foreman loop: %w", ctx.Err())
	}
}

func (f *Foreman) requestStop() { f.stopOnce.Do(func() { close(f.stopCh) }) }
func (f *Foreman) requestHard() { f.hardOnce.Do(func() { close(f.hardCh) }) }

// Shutdown stops intake at once and waits for running tasks to finish. If
// ctx ends first, it cancels the tasks' contexts, waits for Run to return
// (at most Config.HardStopWait more) and returns ctx's error. Calling it
// again, or cancelling Run's context too, never extends the first deadline;
// a later call with an earlier deadline (or one already past) cuts it short.
func (f *Foreman) Shutdown(ctx context.Context) error {
	f.requestStop()
	if !f.started.Load() {
		return nil
	}
	select {
	case <-f.runDone:
		return nil
	case <-ctx.Done():
		f.requestHard()
		<-f.runDone
		return ctx.Err()
	}
}

// Run claims and runs tasks until ctx is cancelled or Shutdown is called,
// then stops as the package documentation describes. It returns nil after
// a clean stop, including one cut short by the graceful timeout.
func (f *Foreman) Run(ctx context.Context) error {
	if f.started.Swap(true) {
		return ErrAlreadyRunning
	}
	defer close(f.runDone)
	cfg := f.cfg
	now := time.Now()
	f.startedAt.Store(now.UnixNano())
	f.idleSince.Store(now.UnixNano())
	// The batch in effect: --batch, never more than the workers.
	batch := int(f.workers.Load())
	if cfg.Batch > 0 {
		batch = min(cfg.Batch, batch)
	}
	f.log.Info("foreman started", "workers", f.workers.Load(), "batch", batch, "poll_interval", cfg.PollInterval,
		"paused", f.paused.Load(), "services", len(f.services))

	// claimCtx ends with intake, so that a claim waiting on a locked
	// database does not hold up a stop. The loop itself waits inside that
	// claim, so the stop cancels it from here, not from the loop. A claim
	// cancelled before its DELETE commits takes nothing; one that committed
	// returns its tasks, and the loop runs them like any others (they get
	// the graceful timeout): claimed tasks are never dropped.
	claimCtx, cancelClaims := context.WithCancel(context.Background())
	defer cancelClaims()
	go func() {
		select {
		case <-ctx.Done():
		case <-f.stopCh:
		case <-claimCtx.Done():
		}
		cancelClaims()
	}()
	svcCtx, stopServices := context.WithCancel(context.Background())
	defer stopServices()
	servicesDone := f.startServices(svcCtx)

	var (
		busy        int
		stopping    bool
		mayHaveWork = true // drain the backlog before the first sleep
		promote     = true // look for due delayed tasks before claiming
		ctxDone     = ctx.Done()
		stopCh      = (<-chan struct{})(f.stopCh)
		hardCh      = (<-chan struct{})(f.hardCh)
		graceful    <-chan time.Time
		hardWait    <-chan time.Time
		retry       <-chan time.Time
		retryDelay  time.Duration
		reclaim     bool // the last claim or promote failed for a full disk
		nextDue     time.Time
	)
	poll := time.NewTicker(cfg.PollInterval)
	defer poll.Stop()
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	var coalesceC <-chan time.Time
	delayed := false
	// due fires when the earliest delayed task becomes due.
	due := time.NewTimer(time.Hour)
	due.Stop()
	var dueC <-chan time.Time

	setBusy := func(n int) {
		if n == 0 && busy != 0 {
			f.idleSince.Store(time.Now().UnixNano())
		} else if n != 0 && busy == 0 {
			f.idleSince.Store(0)
		}
		busy = n
		f.busy.Store(int64(n))
	}
	reclaimer, _ := cfg.Source.(spaceReclaimer)
	claimFailed := func(err error) {
		retryDelay = min(max(2*retryDelay, 100*time.Millisecond), cfg.PollInterval)
		f.log.Error("claiming tasks failed; will retry", "err", err, "retry_in", retryDelay)
		f.report(err, nil)
		retry = time.After(retryDelay)
		if reclaimer != nil && errors.Is(err, snappea.ErrFull) {
			reclaim = true
		}
	}

loop:
	for {
		if reclaim && !stopping && retry == nil {
			if err := reclaimer.ReclaimSpace(claimCtx); err != nil {
				if claimCtx.Err() == nil {
					claimFailed(err)
				}
			} else {
				reclaim = false
				f.log.Info("disk space reclaimed; claiming again")
			}
		}

		// Promote delayed tasks that have come due, then re-arm the timer
		// for the next one. This is a read when nothing is due, and runs
		// once per wake, poll or timer, not per claim.
		if promote && !stopping && retry == nil && !f.paused.Load() {
			promote = false
			next, err := cfg.Source.Promote(claimCtx, time.Now())
			switch {
			case err != nil && claimCtx.Err() != nil:
			case err != nil:
				promote = true
				claimFailed(err)
			default:
				if !next.Equal(nextDue) || dueC == nil {
					nextDue = next
					due.Stop()
					dueC = nil
					if !next.IsZero() {
						due.Reset(max(time.Until(next), 0))
						dueC = due.C
					}
				}
			}
		}

		// Claim while there may be work and a slot is free. Finished tasks
		// are collected first, so that a claim fills every free slot. With
		// tasks running, a claim waits for half a batch of free slots or
		// for claimDelay, whichever comes first: a claim costs about as
		// much for one task as for a batch, so fast tasks are claimed in
		// full batches, while a slot freed among slow tasks idles at most
		// claimDelay. An idle foreman claims at once.
		workers := int(f.workers.Load())
		batch := workers
		if cfg.Batch > 0 {
			batch = min(cfg.Batch, workers)
		}
		threshold := max(1, batch/2)
		for !stopping && mayHaveWork && retry == nil && busy < workers && !f.paused.Load() {
			n := min(workers-busy, batch)
			if busy > 0 && n < threshold && !delayed {
				if coalesceC == nil {
					coalesce.Reset(claimDelay)
					coalesceC = coalesce.C
				}
				break
			}
			delayed = false
			if coalesceC != nil {
				coalesce.Stop()
				coalesceC = nil
			}
			if busy > 0 && n < batch {
				// Handlers that end together finish their bookkeeping a
				// moment apart: let the others hand in their slots too,
				// so that the claim is a full one.
				runtime.Gosched()
				if c := f.collect(); c > 0 {
					setBusy(busy - c)
					n = min(workers-busy, batch)
				}
			}
			tasks, err := cfg.Source.Claim(claimCtx, n)
			if err != nil {
				if claimCtx.Err() != nil {
					break
				}
				claimFailed(err)
				break
			}
			retryDelay = 0
			if len(tasks) > 0 {
				setBusy(busy + len(tasks))
			}
			for i := range tasks {
				go f.run(tasks[i])
			}
			if len(tasks) < n {
				mayHaveWork = false
			}
			if c := f.collect(); c > 0 {
				setBusy(busy - c)
			}
		}

		if stopping && busy == 0 && servicesDone == nil {
			break loop
		}

		select {
		case <-f.cfg.Waker.Wakes():
			mayHaveWork, promote = true, true
		case <-poll.C:
			mayHaveWork, promote = true, true
		case <-dueC:
			dueC = nil
			mayHaveWork, promote = true, true
		case <-f.kick:
			mayHaveWork = true
		case <-retry:
			retry = nil
		case <-coalesceC:
			coalesceC = nil
			delayed = true
		case c := <-f.pings:
			close(c)
		case o := <-f.results:
			f.counts[o].Add(1)
			setBusy(busy - 1 - f.collect())
			if f.ledger != nil && f.ledger.Held() {
				mayHaveWork = true
			}
		case <-servicesDone:
			servicesDone = nil
		case <-ctxDone:
			ctxDone = nil
			f.requestStop()
			if cfg.GracefulTimeout < 0 {
				f.requestHard()
			} else {
				graceful = time.After(cfg.GracefulTimeout)
			}
		case <-stopCh:
			stopCh = nil
			stopping = true
			cancelClaims()
			stopServices()
			f.log.Info("stopping: intake stopped, waiting for running tasks", "running", busy)
		case <-graceful:
			graceful = nil
			f.requestHard()
		case <-hardCh:
			hardCh = nil
			f.requestStop()
			if busy > 0 {
				f.log.Warn("graceful timeout reached: cancelling running tasks", "running", busy)
			}
			f.hardStopped.Store(true)
			f.cancelTasks(ErrHardStop)
			hardWait = time.After(cfg.HardStopWait)
		case <-hardWait:
			// Handlers that ignore their context are abandoned here; the
			// process is about to exit. They count as interrupted.
			if busy > 0 {
				f.log.Warn("tasks did not return after their contexts were cancelled; abandoning them", "running", busy)
				f.counts[Interrupted].Add(int64(busy))
			}
			if servicesDone != nil {
				f.log.Warn("services did not return after their contexts were cancelled; abandoning them")
			}
			break loop
		}
	}
	due.Stop()
	c := f.Counters()
	f.log.Info("stopped", "done", c.Done, "failed", c.Failed, "panicked", c.Panicked,
		"discarded", c.Discarded, "interrupted", c.Interrupted, "cancelled", c.Cancelled)
	return nil
}

// collect counts the tasks that finished since the last look, without
// waiting, and returns how many.
func (f *Foreman) collect() int {
	n := 0
	for {
		select {
		case o := <-f.results:
			f.counts[o].Add(1)
			n++
		default:
			return n
		}
	}
}

func (f *Foreman) report(err error, t *snappea.Task) {
	if f.cfg.Reporter != nil {
		f.cfg.Reporter.Report(err, t)
	}
}

// run runs one claimed task in its own goroutine, logs and reports how it
// ended, retries or records it if it failed, and hands the outcome to the
// loop.
func (f *Foreman) run(t snappea.Task) {
	if t.Err != nil {
		f.discardRow(&t)
		return
	}
	start := time.Now()
	debug := f.log.Enabled(context.Background(), slog.LevelDebug)
	if debug {
		f.log.Debug("task started", "task", t.Name, "task_id", t.ID)
	}
	opts := f.cfg.Runner.Options(t.Name)
	timeout := cmp.Or(t.Timeout, opts.Timeout)
	maxAttempts := cmp.Or(t.MaxAttempts, opts.MaxAttempts)
	attempt := max(t.Attempt, 1)

	ctx, cancel := context.WithCancelCause(f.taskCtx)
	a := &activeTask{id: t.ID, name: t.Name, attempt: attempt, started: start, cancel: cancel}
	var overdue *time.Timer
	if timeout > 0 {
		a.deadline = start.Add(timeout)
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithDeadlineCause(ctx, a.deadline, ErrTimeout)
		defer cancelT()
		overdue = time.AfterFunc(timeout+f.cfg.HardStopWait, func() {
			// Counted first: a Snapshot that sees the task overdue also
			// sees it counted.
			f.overdue.Add(1)
			a.overdue.Store(true)
			f.log.Warn("task overdue: still running after its timeout; it keeps its worker slot until it returns",
				"task", t.Name, "task_id", t.ID, "timeout", timeout)
		})
	}
	f.mu.Lock()
	f.active[t.ID] = a
	f.mu.Unlock()

	ctx = registry.WithInfo(ctx, registry.Info{
		ID: t.ID, Name: t.Name, EnqueuedAt: t.EnqueuedAt, Logger: f.log,
		Attempt: attempt, MaxAttempts: maxAttempts,
	})
	var err error
	if opts.Isolated || f.cfg.IsolateAll {
		err = f.callProcess(ctx, &t, a, attempt, maxAttempts, timeout)
	} else {
		err = f.call(ctx, &t)
	}
	d := time.Since(start)
	cause := context.Cause(ctx)
	if overdue != nil {
		overdue.Stop()
	}
	cancel(nil)
	f.mu.Lock()
	delete(f.active, t.ID)
	f.mu.Unlock()

	o := Done
	switch {
	case f.hardStopped.Load():
		o = Interrupted
	case err == nil:
	case errors.Is(cause, ErrCancelled):
		o = Cancelled
	case errors.Is(err, registry.ErrUnknownTask), errors.Is(err, registry.ErrBadArgs):
		o = Discarded
	default:
		var pe *PanicError
		if errors.As(err, &pe) {
			o = Panicked
		} else {
			o = Failed
			if errors.Is(cause, ErrTimeout) {
				err = fmt.Errorf("timed out after %v: %w", timeout, err)
			}
		}
	}

	if debug {
		f.log.Debug("task done", "task", t.Name, "task_id", t.ID, "duration", d, "outcome", o.String())
	}
	for _, ob := range f.cfg.Observers {
		ob.Finished(&t, o, d)
	}
	if err != nil {
		t.Attempt = attempt
		t.MaxAttempts = maxAttempts
		t.Timeout = timeout
		f.settle(&t, o, err, d)
	}
	if f.ledger != nil {
		f.ledger.Settled(&t, o)
	}
	f.results <- o
}

// discardRow ends a claimed row that cannot be run as a task (t.Err, see
// snappea.Task): it is never started, and is logged, recorded as failed and
// reported like a task whose arguments do not decode. Retries are not
// tried: the row would be as bad again.
func (f *Foreman) discardRow(t *snappea.Task) {
	t.Attempt = max(t.Attempt, 1)
	if f.log.Enabled(context.Background(), slog.LevelDebug) {
		f.log.Debug("task done", "task", t.Name, "task_id", t.ID, "duration", time.Duration(0), "outcome", Discarded.String())
	}
	for _, ob := range f.cfg.Observers {
		ob.Finished(t, Discarded, 0)
	}
	f.settle(t, Discarded, t.Err, 0)
	if f.ledger != nil {
		f.ledger.Settled(t, Discarded)
	}
	f.results <- Discarded
}

// settle logs a task that did not succeed and decides what becomes of it:
// a failed attempt with attempts left is enqueued again after a backoff;
// a task that failed for good is recorded and reported. A stop or a cancel
// is neither: it is expected, like a crash it loses the attempt.
func (f *Foreman) settle(t *snappea.Task, o Outcome, err error, d time.Duration) {
	attrs := []any{"task", t.Name, "task_id", t.ID, "duration", d, "err", err}
	if t.MaxAttempts > 1 {
		attrs = append(attrs, "attempt", t.Attempt, "max_attempts", t.MaxAttempts)
	}
	switch o {
	case Interrupted:
		f.log.Warn("task interrupted by stop", attrs...)
		return
	case Cancelled:
		f.log.Info("task cancelled", attrs...)
		return
	}
	if o == Failed && f.cfg.Store != nil && t.Attempt < t.MaxAttempts {
		wait := f.backoff(t.Attempt)
		id, rerr := f.cfg.Store.Retry(context.Background(), t, time.Now().Add(wait))
		if rerr == nil {
			f.retried.Add(1)
			f.log.Warn("task failed; will retry", append(attrs, "retry_in", wait, "retry_id", id)...)
			return
		}
		f.log.Error("task failed and its retry could not be enqueued", append(attrs, "retry_err", rerr)...)
	}
	switch o {
	case Discarded:
		f.log.Error("task discarded", attrs...)
	case Panicked:
		var pe *PanicError
		errors.As(err, &pe)
		f.log.Error("task panicked", append(attrs, "stack", string(pe.Stack))...)
	case Failed:
		if t.MaxAttempts > 1 && t.Attempt >= t.MaxAttempts {
			f.log.Error("task failed; no attempts left", attrs...)
		} else {
			f.log.Error("task failed", attrs...)
		}
	default:
		f.log.Error("task failed", attrs...)
	}
	if f.cfg.Store != nil {
		if ferr := f.cfg.Store.Fail(context.Background(), t, err); ferr != nil {
			f.log.Error("could not record the failed task", "task", t.Name, "task_id", t.ID, "err", ferr)
		}
	}
	f.report(err, t)
}

// backoff is the wait before retrying after the given failed attempt:
// RetryBackoff doubled per attempt, capped at RetryBackoffMax, of which a
// random half is taken off so that retries of tasks that failed together
// spread out.
func (f *Foreman) backoff(attempt int) time.Duration {
	d := f.cfg.RetryBackoff
	for i := 1; i < attempt && d < f.cfg.RetryBackoffMax; i++ {
		d *= 2
	}
	d = min(d, f.cfg.RetryBackoffMax)
	return d/2 + rand.N(d/2+1)
}

// call runs the handler, turning a panic into a *PanicError so that one bad
// task never takes the daemon down.
func (f *Foreman) call(ctx context.Context, t *snappea.Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	return f.cfg.Runner.Run(ctx, t.Name, t.Args)
}

// errNoProcesses fails an isolated task when the foreman has no
// ProcessRunner.
var errNoProcesses = errors.New("the task's definition says Isolated, but the foreman has no process runner (Config.Processes)")

// callProcess runs the task in a child process through Config.Processes,
// noting the child's pid for Snapshot while it runs.
func (f *Foreman) callProcess(ctx context.Context, t *snappea.Task, a *activeTask, attempt, maxAttempts int, timeout time.Duration) error {
	if f.cfg.Processes == nil {
		return errNoProcesses
	}
	return f.cfg.Processes.RunProcess(ctx, ProcessTask{
		ID: t.ID, Name: t.Name, Attempt: attempt, MaxAttempts: maxAttempts, Timeout: timeout, Args: t.Args,
		EnqueuedAt: t.EnqueuedAt, Started: func(pid int) { a.pid.Store(int64(pid)) },
	})
}

// panicError captures the stack of a recovered panic; call it from the
// deferred function that recovered.
func panicError(r any) *PanicError {
	pcs := make([]uintptr, 64)
	pcs = pcs[:runtime.Callers(4, pcs)]
	return &PanicError{Value: r, Stack: debug.Stack(), PCs: pcs}
}

package foreman

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// Source hands out queued tasks; *queue.Queue is one. Claim removes up to n
// tasks from the queue for good before returning them.
type Source interface {
	Claim(ctx context.Context, n int) ([]queue.Task, error)
}

// Waker tells the foreman that tasks may have been queued; *wakeup.Watcher
// is one. The channel is never closed.
type Waker interface {
	Wakes() <-chan struct{}
}

// Runner runs a task by name with its JSON arguments; *registry.Registry is
// one. Errors matching registry.ErrUnknownTask or registry.ErrBadArgs mean
// the handler never started.
type Runner interface {
	Run(ctx context.Context, name string, args []byte) error
}

// Reporter receives the errors the foreman does not handle itself: a task
// that failed, panicked or was discarded (task is set), or a failure of the
// loop such as a claim that failed (task is nil). It is called once per
// error, from the goroutine where it happened; a panic's error is a
// *PanicError carrying the stack.
type Reporter interface {
	Report(err error, task *queue.Task)
}

// Observer is told of every finished task, from the task's goroutine, once
// its outcome is known; stats and metrics are observers. It runs on the hot
// path, so it must return quickly and never block.
type Observer interface {
	Finished(t *queue.Task, o Outcome, d time.Duration)
}

// claimDelay is the longest a free slot waits for more slots to free up
// before a claim while other tasks run; see Run.
const claimDelay = time.Millisecond

// ErrAlreadyRunning is returned by Run when called a second time.
var ErrAlreadyRunning = errors.New("foreman: Run called twice")

// Config configures a Foreman. Source, Waker and Runner are required;
// everything else has a default.
type Config struct {
	Source   Source   // where tasks come from; required
	Waker    Waker    // wakes the loop when tasks are queued; required
	Runner   Runner   // runs tasks; required
	Reporter Reporter // optional: receives task failures and loop errors
	// Observers are told of every finished task; optional.
	Observers []Observer

	// Workers is the number of tasks that run at once. Default 16.
	Workers int
	// Batch caps how many tasks one claim takes. Claims never take more
	// than the free worker slots. Default: Workers.
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
	// abandoned and counted interrupted. Default 1s.
	HardStopWait time.Duration
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
	if c.Workers < 0 {
		return fmt.Errorf("foreman config: Workers is %d, want at least 1 (0 for the default)", c.Workers)
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.Batch < 0 {
		return fmt.Errorf("foreman config: Batch is %d, want at least 1 (0 for the default)", c.Batch)
	}
	if c.Batch == 0 {
		c.Batch = c.Workers
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
	Failed                     // the handler returned an error
	Panicked                   // the handler panicked
	Discarded                  // unknown task name or undecodable arguments: never started
	Interrupted                // still running at the graceful deadline
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"done", "failed", "panicked", "discarded", "interrupted"}

func (o Outcome) String() string {
	if o < 0 || o >= numOutcomes {
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// Counters counts finished tasks by outcome since the foreman started.
type Counters struct {
	Done, Failed, Panicked, Discarded, Interrupted int64
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

	// taskCtx is the parent of every task's context: cancelled at the hard stop.
	taskCtx     context.Context
	cancelTasks context.CancelCauseFunc
	hardStopped atomic.Bool

	results chan Outcome

	counts [numOutcomes]atomic.Int64
}

// ErrHardStop is the cause of a task context cancelled because the graceful
// deadline passed.
var ErrHardStop = errors.New("snappea is stopping: graceful timeout reached")

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
		results: make(chan Outcome, cfg.Workers),
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
	}
}

func (f *Foreman) requestStop() { f.stopOnce.Do(func() { close(f.stopCh) }) }
func (f *Foreman) requestHard() { f.hardOnce.Do(func() { close(f.hardCh) }) }

// Shutdown stops intake at once and waits for running tasks to finish. If
// ctx ends first, it cancels the tasks' contexts, waits for Run to return
// (at most Config.HardStopWait more) and returns ctx's error. Calling it
// again, or cancelling Run's context too, never extends the first deadline.
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
	f.log.Info("foreman started", "workers", cfg.Workers, "batch", cfg.Batch, "poll_interval", cfg.PollInterval)

	// claimCtx ends with intake, so that a claim waiting on a locked
	// database does not hold up a stop.
	claimCtx, cancelClaims := context.WithCancel(context.Background())
	defer cancelClaims()

	var (
		busy        int
		stopping    bool
		mayHaveWork = true // drain the backlog before the first sleep
		ctxDone     = ctx.Done()
		stopCh      = (<-chan struct{})(f.stopCh)
		hardCh      = (<-chan struct{})(f.hardCh)
		graceful    <-chan time.Time
		hardWait    <-chan time.Time
		retry       <-chan time.Time
		retryDelay  time.Duration
	)
	poll := time.NewTicker(cfg.PollInterval)
	defer poll.Stop()
	threshold := max(1, min(cfg.Batch, cfg.Workers)/2)
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	var coalesceC <-chan time.Time
	delayed := false

loop:
	for {
		// Claim while there may be work and a slot is free. Finished tasks
		// are collected first, so that a claim fills every free slot. With
		// tasks running, a claim waits for half a batch of free slots or
		// for claimDelay, whichever comes first: a claim costs about as
		// much for one task as for a batch, so fast tasks are claimed in
		// full batches, while a slot freed among slow tasks idles at most
		// claimDelay. An idle foreman claims at once.
		for !stopping && mayHaveWork && retry == nil && busy < cfg.Workers {
			n := min(cfg.Workers-busy, cfg.Batch)
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
			tasks, err := cfg.Source.Claim(claimCtx, n)
			if err != nil {
				if claimCtx.Err() != nil {
					break
				}
				retryDelay = min(max(2*retryDelay, 100*time.Millisecond), cfg.PollInterval)
				f.log.Error("claiming tasks failed; will retry", "err", err, "retry_in", retryDelay)
				f.report(err, nil)
				retry = time.After(retryDelay)
				break
			}
			retryDelay = 0
			for i := range tasks {
				busy++
				go f.run(tasks[i])
			}
			if len(tasks) < n {
				mayHaveWork = false
			}
			busy -= f.collect()
		}

		if stopping && busy == 0 {
			break loop
		}

		select {
		case <-f.cfg.Waker.Wakes():
			mayHaveWork = true
		case <-poll.C:
			mayHaveWork = true
		case <-retry:
			retry = nil
		case <-coalesceC:
			coalesceC = nil
			delayed = true
		case o := <-f.results:
			f.counts[o].Add(1)
			busy -= 1 + f.collect()
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
			f.log.Warn("tasks did not return after their contexts were cancelled; abandoning them", "running", busy)
			f.counts[Interrupted].Add(int64(busy))
			break loop
		}
	}
	c := f.Counters()
	f.log.Info("stopped", "done", c.Done, "failed", c.Failed, "panicked", c.Panicked,
		"discarded", c.Discarded, "interrupted", c.Interrupted)
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

func (f *Foreman) report(err error, t *queue.Task) {
	if f.cfg.Reporter != nil {
		f.cfg.Reporter.Report(err, t)
	}
}

// run runs one claimed task in its own goroutine, logs and reports how it
// ended, and hands the outcome to the loop.
func (f *Foreman) run(t queue.Task) {
	start := time.Now()
	debug := f.log.Enabled(context.Background(), slog.LevelDebug)
	if debug {
		f.log.Debug("task started", "task", t.Name, "task_id", t.ID)
	}
	ctx := registry.WithInfo(f.taskCtx, registry.Info{
		ID: t.ID, Name: t.Name, EnqueuedAt: t.EnqueuedAt, Logger: f.log,
	})
	err := f.call(ctx, &t)
	d := time.Since(start)

	o := Done
	switch {
	case f.hardStopped.Load():
		o = Interrupted
	case err == nil:
	case errors.Is(err, registry.ErrUnknownTask), errors.Is(err, registry.ErrBadArgs):
		o = Discarded
	default:
		var pe *PanicError
		if errors.As(err, &pe) {
			o = Panicked
		} else {
			o = Failed
		}
	}

	if debug {
		f.log.Debug("task done", "task", t.Name, "task_id", t.ID, "duration", d, "outcome", o.String())
	}
	for _, ob := range f.cfg.Observers {
		ob.Finished(&t, o, d)
	}
	if err != nil {
		f.logFailure(&t, o, err, d)
		// A task cut off by a stop is expected, not a bug to report.
		if o != Interrupted {
			f.report(err, &t)
		}
	}
	f.results <- o
}

// call runs the handler, turning a panic into a *PanicError so that one bad
// task never takes the daemon down.
func (f *Foreman) call(ctx context.Context, t *queue.Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			pcs := make([]uintptr, 64)
			pcs = pcs[:runtime.Callers(3, pcs)]
			err = &PanicError{Value: r, Stack: debug.Stack(), PCs: pcs}
		}
	}()
	return f.cfg.Runner.Run(ctx, t.Name, t.Args)
}

func (f *Foreman) logFailure(t *queue.Task, o Outcome, err error, d time.Duration) {
	attrs := []any{"task", t.Name, "task_id", t.ID, "duration", d, "err", err}
	switch o {
	case Interrupted:
		f.log.Warn("task interrupted by stop", attrs...)
	case Discarded:
		f.log.Error("task discarded", attrs...)
	case Panicked:
		var pe *PanicError
		errors.As(err, &pe)
		f.log.Error("task panicked", append(attrs, "stack", string(pe.Stack))...)
	default:
		f.log.Error("task failed", attrs...)
	}
}

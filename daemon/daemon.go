package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/metrics"
	"github.com/snappea/snappea/pidfile"
	"github.com/snappea/snappea/prefork"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/schedule"
	"github.com/snappea/snappea/stats"
	"github.com/snappea/snappea/storage"
	"github.com/snappea/snappea/storage/sqlite"
	"github.com/snappea/snappea/wakeup"
)

// File names inside the data directory (queue.Config.Dir), beside the
// database and the wakeup directory (queue.DBFile, queue.WakeupDirName).
const (
	LockFile = "snappea.lock" // the single-instance lock (package pidfile)
	PIDFile  = "snappea.pid"  // the daemon's pid, for tools that want one
)

// The defaults of Config, the same as those of 'snappea run'.
const (
	DefaultCheckpointInterval = 200 * time.Millisecond
	DefaultStatsRetention     = 7 * 24 * time.Hour
	DefaultFailedRetention    = 30 * 24 * time.Hour
	DefaultFailedMax          = 10000
)

// finalFlushMin is the least time the last statistics write after the
// foreman stops is given, even when the graceful timeout is used up: long
// enough for a write on an unlocked database, short enough that a locked
// one does not hold up the stop.
const finalFlushMin = 500 * time.Millisecond

// reporterFlushTimeout bounds the wait for a Reporter's queued reports at
// the end of Run.
const reporterFlushTimeout = 5 * time.Second

// wakerTimeout bounds New's connection of the backend's Waker (PostgreSQL's
// listening connection).
const wakerTimeout = 30 * time.Second

var (
	// ErrInvalidConfig is matched by the errors New returns for a Config
	// that cannot work (a missing Queue, a negative interval, a schedule
	// with a bad spec, ...), as opposed to a failure to start (the lock
	// held, the metrics address in use).
	ErrInvalidConfig = errors.New("invalid daemon config")
	// ErrDataDirGone is matched by the error Run returns when the daemon
	// stopped because its database, lock file or a Config.WatchFiles file
	// left its path while it ran (the data directory was deleted or its
	// files replaced). Start a new Daemon, on a newly opened Queue, to use
	// the new files.
	ErrDataDirGone = errors.New("no longer at its path")
	// ErrClosed is returned by Run when it was called before, or after
	// Shutdown: a Daemon runs once.
	ErrClosed = errors.New("daemon: already run or shut down")
)

// Config configures a Daemon. Queue and Registry are required; the zero
// value of every other field means the default of the matching flag of
// 'snappea run', named in brackets.
type Config struct {
	// Queue is where tasks come from, where retries and failed tasks go,
	// and whose database is checkpointed and holds the statistics and the
	// schedules' state. Required. On SQLite the daemon watches its
	// wakeup directory (queue.Config.WakeupDir) and checkpoints it; on
	// another backend (PostgreSQL) it takes its wakeups and cancel
	// requests from the backend's Waker, runs its Maintenance, and keeps
	// its row in the table of live daemons fresh with a heartbeat every
	// HeartbeatInterval (removed at a clean stop). The caller opens it
	// before New and closes it after Run has returned.
	Queue *queue.Queue
	// Registry runs the tasks; the schedules are checked against it.
	// Required. Add registry.RegisterBuiltins for the snappea.* tasks.
	Registry *registry.Registry

	// Workers is the number of tasks run at once, 1 to foreman.MaxWorkers.
	// Default 16 [--workers].
	Workers int
	// Batch caps the tasks one claim takes; never more than the free
	// workers. Default: Workers [--batch].
	Batch int
	// PollInterval is how often to look for tasks without a wakeup.
	// Default 3s [--poll-interval].
	PollInterval time.Duration
	// GracefulTimeout is how long running tasks may finish after Run's
	// context ends before their contexts are cancelled. Default 10s;
	// negative: cancel them at once [--graceful-timeout].
	GracefulTimeout time.Duration
	// RetryBackoff is about how long the first retry of a failed task
	// waits, doubling with each further attempt up to RetryBackoffMax (see
	// foreman.Config). Defaults 1s and 10m.
	RetryBackoff, RetryBackoffMax time.Duration

	// CheckpointInterval is how often the write-ahead log is checkpointed
	// into the database file while it changes, so that producers' commits
	// never have to (queue.Queue.RunCheckpoints). Default 200ms; negative
	// is an error.
	CheckpointInterval time.Duration
	// StatsRetention is how long the per-minute task statistics are kept
	// (package stats). Default 7 days; negative: no statistics
	// [--stats-retention, where 0 is off].
	StatsRetention time.Duration
	// FailedRetention is how long the record of failed tasks keeps them.
	// Default 30 days; negative: no age limit [--failed-retention, where 0
	// is no limit].
	FailedRetention time.Duration
	// FailedMax is how many failed tasks the record keeps, the newest.
	// Default 10000; negative: no limit [--failed-max, where 0 is no
	// limit].
	FailedMax int

	// Schedules are periodic tasks to enqueue (package schedule) [the
	// --schedules file and cli.Schedules]. None: no scheduler.
	Schedules []schedule.Schedule
	// Reporter receives tasks that failed for good, panicked or were
	// discarded, and failures of the loop and the services; nil: none
	// [--sentry-dsn]. A *report.Sentry is one. One with a method
	// Flush(time.Duration) bool, as report.Sentry has, is flushed for up
	// to 5s at the end of Run.
	Reporter foreman.Reporter
	// MetricsAddr, if set, serves Prometheus metrics at /metrics on this
	// HOST:PORT (port 0 picks a free one; Daemon.MetricsAddr says which)
	// [--metrics-addr]. Default: off.
	MetricsAddr string
	// Services run beside the workers, before the daemon's own (see
	// foreman.Service) [cli.Program.Services].
	Services []foreman.Service
	// Observers are told of every finished task, after the statistics and
	// the metrics (see foreman.Observer).
	Observers []foreman.Observer

	// Processes, if set, starts a pool of child processes (package
	// prefork) that runs the tasks whose definition says Isolated, or every
	// task with IsolateAll [--isolation, --procs-min, --procs-max, ...].
	// Its Command is required: a command that runs prefork.ServeChild
	// with the same Registry (cli's hidden subcommand); Logger defaults to
	// the daemon's. The pool starts with Run and stops after the foreman:
	// children finish their tasks within the graceful timeout, then all
	// get SIGTERM at once, SIGKILL soon after, and are reaped before Run
	// returns. Nil: every task runs on a goroutine, and a task whose
	// definition says Isolated fails.
	Processes *prefork.Config
	// IsolateAll runs every task in a child process [--isolation
	// process]; it needs Processes.
	IsolateAll bool

	// Lock is a single-instance lock the caller already holds for this
	// data directory: the daemon watches its file but neither takes nor
	// releases it. Nil: New takes the lock on DIR/snappea.lock and writes
	// the pid to DIR/snappea.pid, as 'snappea run' does (DIR is
	// queue.Config.Dir), so that a second daemon on the directory, embedded
	// or not, is refused; Run releases it when it returns.
	Lock *pidfile.Lock
	// NoLock runs without the single-instance lock. Two daemons on one
	// queue are safe for delivery (a claim deletes the rows it takes) but
	// not what 'snappea status', 'stop' and the rest expect.
	NoLock bool
	// WatchFiles are further files by whose paths other processes find
	// this daemon (cli adds its control socket). Like the database and the
	// lock file, they are looked at about once a second; when one is
	// removed or replaced, the daemon stops (see ErrDataDirGone). One
	// missing when Run starts is not watched.
	WatchFiles []WatchFile
	// DataDirGone, if set, is called once, when the daemon found its
	// files gone and before it starts to stop; cli uses it to tell systemd
	// and to refuse a reload.
	DataDirGone func(err error)

	// MaxRunning limits the tasks of a name that run at once, across every
	// daemon of the database, over the task definitions' MaxRunning
	// (registry.Options); 0 removes a definition's limit [--max-running
	// TASK=N].
	MaxRunning map[string]int
	// RetryLost names tasks treated as defined with registry.Options.
	// RetryLost: lost, they are enqueued again instead of recorded failed
	// [--retry-lost TASK].
	RetryLost []string

	// StartPaused starts the daemon paused: it claims nothing until
	// Foreman().Resume. A reload uses it to keep an operator's pause.
	StartPaused bool
	// Reloads is reported as the metrics' reload count: how many times
	// this daemon was reloaded in place before this start (cli's
	// generation).
	Reloads int
	// Logger receives the daemon's records. Default slog.Default(). Task
	// arguments are never logged above debug.
	Logger *slog.Logger
}

// WatchFile is a file of the data directory by whose path other processes
// find the daemon.
type WatchFile struct {
	What string // what it is, for the log and the error: "control socket"
	Path string
}

func (c *Config) setDefaults() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Queue == nil:
		return bad("Queue is required")
	case c.Registry == nil:
		return bad("Registry is required")
	case c.CheckpointInterval < 0:
		return bad("CheckpointInterval is %v, want a positive duration (0 for the default, %v)", c.CheckpointInterval, DefaultCheckpointInterval)
	case c.Lock != nil && c.NoLock:
		return bad("Lock is set and NoLock is true: want one or the other")
	case c.IsolateAll && c.Processes == nil:
		return bad("IsolateAll needs Processes: the child processes to run the tasks in")
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.GracefulTimeout == 0 {
		c.GracefulTimeout = 10 * time.Second // foreman's default, resolved here for the stop deadline
	}
	c.StatsRetention = orDefault(c.StatsRetention, DefaultStatsRetention)
	c.FailedRetention = orDefault(c.FailedRetention, DefaultFailedRetention)
	c.FailedMax = orDefault(c.FailedMax, DefaultFailedMax)
	for name, n := range c.MaxRunning {
		if !c.Registry.Has(name) {
			return bad("MaxRunning names task %q, which is not registered ('snappea tasks' lists them)", name)
		}
		if n < 0 {
			return bad("MaxRunning of %s is %d: want 1 or more (0: no limit)", name, n)
		}
	}
	for _, name := range c.RetryLost {
		if !c.Registry.Has(name) {
			return bad("RetryLost names task %q, which is not registered ('snappea tasks' lists them)", name)
		}
	}
	for i, f := range c.WatchFiles {
		if f.What == "" || f.Path == "" {
			return bad("WatchFiles[%d] needs a What and a Path", i)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// orDefault resolves a limit: zero is def, negative is 0 (none), as the
// callees (stats, queue.PruneFailures) take it.
func orDefault[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Daemon is everything 'snappea run' runs, without the command line: the
// foreman claiming from the queue and woken by its wakeup directory,
// retries and the failed record, checkpoints, statistics, the failed
// record's retention, schedules, metrics, the data directory's watch and
// the single-instance lock. Create it with New, run it with Run, stop it
// by cancelling Run's context or with Shutdown.
type Daemon struct {
	cfg  Config
	log  *slog.Logger
	q    *queue.Queue
	lock *pidfile.Lock
	own  bool            // the lock was taken by New: Run releases it
	w    *wakeup.Watcher // the wakeup directory's watch, on SQLite
	bw   storage.Waker   // the backend's waker elsewhere (PostgreSQL: LISTEN)
	lite bool            // the queue is on SQLite: one daemon, local files
	fm   *foreman.Foreman
	pool *prefork.Pool // nil without Config.Processes
	led  *ledger       // the foreman's Source: claims recorded in flight

	rec       *stats.Recorder     // nil without statistics
	sched     *schedule.Scheduler // nil without schedules
	metricsLn net.Listener        // nil without metrics

	started     atomic.Bool
	runDone     chan struct{} // closed when Run returns
	releaseOnce sync.Once
	stopBy      atomic.Int64 // unix ns: the earliest deadline of a stop under way; 0 before

	files []watched // as found when Run started; read by the watch service

	mu        sync.Mutex
	cancelRun context.CancelFunc // starts the graceful stop; nil outside Run
	gone      error              // the files left their paths
}

// New checks cfg and readies the daemon: it takes the single-instance lock
// (unless Config.Lock or Config.NoLock), clears and watches the wakeup
// directory, and listens on the metrics address, so that everything that
// can stop a start fails here. A lock another daemon holds is an error
// matching pidfile.ErrLocked; a bad Config one matching ErrInvalidConfig.
// Run the Daemon, or call Shutdown, to release what New took.
func New(cfg Config) (*Daemon, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, q: cfg.Queue, lock: cfg.Lock, runDone: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			d.release()
		}
	}()
	qcfg := d.q.Config()
	if d.lock == nil && !cfg.NoLock {
		lock, err := pidfile.Acquire(filepath.Join(qcfg.Dir, LockFile), filepath.Join(qcfg.Dir, PIDFile))
		if err != nil {
			return nil, fmt.Errorf("take the single-instance lock: %w", err)
		}
		d.lock, d.own = lock, true
	}
	_, d.lite = d.q.Backend().(*sqlite.Backend)
	var waker foreman.Waker
	if d.lite {
		w, err := wakeup.New(wakeup.Config{Dir: qcfg.WakeupDir, Logger: d.log})
		if err != nil {
			return nil, err
		}
		d.w, waker = w, w
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), wakerTimeout)
		w, err := d.q.Backend().Waker(ctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("listen for wakeups: %w", err)
		}
		d.bw, waker = w, w
	}
	services, observers, err := d.services()
	if err != nil {
		return nil, err
	}
	var procs foreman.ProcessRunner
	if cfg.Processes != nil {
		pc := *cfg.Processes
		if pc.Logger == nil {
			pc.Logger = d.log
		}
		if d.pool, err = prefork.New(pc); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		procs = poolRunner{d.pool}
	}
	d.led = d.newLedger()
	d.fm, err = foreman.New(foreman.Config{
		Source: d.led, Waker: waker, Runner: cfg.Registry, Reporter: cfg.Reporter, Store: d.q,
		Observers: observers, Services: services,
		Processes: procs, IsolateAll: cfg.IsolateAll,
		Workers: cfg.Workers, Batch: cfg.Batch,
		PollInterval: cfg.PollInterval, GracefulTimeout: cfg.GracefulTimeout,
		RetryBackoff: cfg.RetryBackoff, RetryBackoffMax: cfg.RetryBackoffMax,
		StartPaused: cfg.StartPaused,
		Logger:      d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	ok = true
	return d, nil
}

// services builds the long-running parts the foreman manages beside the
// workers, and the observers of finished tasks.
func (d *Daemon) services() ([]foreman.Service, []foreman.Observer, error) {
	cfg := d.cfg
	svcs := append([]foreman.Service(nil), cfg.Services...)
	var obs []foreman.Observer
	svcs = append(svcs, d.watchDataDir())
	// The database's upkeep: SQLite's checkpoints, or the backend's
	// Maintenance (PostgreSQL: VACUUM of the task table, gone daemons
	// removed), which RunCheckpoints runs on a backend other than SQLite.
	upkeep := "checkpoint"
	if !d.lite {
		upkeep = "maintenance"
	}
	svcs = append(svcs, foreman.Service{Name: upkeep, Run: func(ctx context.Context) error {
		return d.q.RunCheckpoints(ctx, cfg.CheckpointInterval)
	}})
	if cfg.StatsRetention > 0 {
		rec, err := stats.New(stats.Config{Store: d.q, Retention: cfg.StatsRetention, Logger: d.log,
			StopFlushTimeout: max(cfg.GracefulTimeout, finalFlushMin),
			Backlog: func(ctx context.Context) (int64, error) {
				st, err := d.q.Stats(ctx)
				return st.Pending, err
			}})
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		d.rec = rec
		obs = append(obs, rec)
		svcs = append(svcs, foreman.Service{Name: "stats", Run: rec.Run})
	}
	if cfg.MetricsAddr != "" {
		m, err := metrics.New(metrics.Config{Snapshot: d.metricsSnapshot, Logger: d.log})
		if err != nil {
			return nil, nil, err
		}
		ln, err := m.Listen(cfg.MetricsAddr)
		if err != nil {
			return nil, nil, err
		}
		d.metricsLn = ln
		obs = append(obs, m)
		d.log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
		svcs = append(svcs, foreman.Service{Name: "metrics", Run: func(ctx context.Context) error {
			return m.Serve(ctx, ln)
		}})
	}
	if cfg.FailedRetention > 0 || cfg.FailedMax > 0 {
		svcs = append(svcs, foreman.Service{Name: "failed-retention", Run: d.pruneFailed})
	}
	if len(cfg.Schedules) > 0 {
		s, err := schedule.New(schedule.Config{Queue: d.q, Schedules: cfg.Schedules, Registry: cfg.Registry, Logger: d.log})
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		d.sched = s
		svcs = append(svcs, foreman.Service{Name: "scheduler", Run: s.Run})
	}
	return svcs, append(obs, cfg.Observers...), nil
}

// pruneFailed applies the failed-task retention once a minute.
func (d *Daemon) pruneFailed(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		n, err := d.q.PruneFailures(ctx, d.cfg.FailedRetention, d.cfg.FailedMax)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if n > 0 {
			d.log.Info("pruned the record of failed tasks", "removed", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *Daemon) metricsSnapshot(ctx context.Context) (metrics.Snapshot, error) {
	s := d.fm.Snapshot()
	m := metrics.Snapshot{WorkersBusy: s.Busy, WorkersTotal: s.Workers, Paused: s.State == foreman.Paused,
		Reloads: d.cfg.Reloads, Lost: d.led.lost.Load(), LostRetried: d.led.retried.Load()}
	if d.pool != nil {
		ps := d.pool.Snapshot()
		p := &metrics.Procs{ByState: map[string]int{}, Starts: ps.Starts, Deaths: ps.Deaths, Kills: ps.Kills,
			SIGKILLs: ps.SIGKILLs, Restarts: ps.Restarts, Retired: ps.Retired}
		for _, c := range ps.Procs {
			p.ByState[c.State.String()]++
			p.RSSBytes += c.RSSBytes
			p.MaxRSSBytes = max(p.MaxRSSBytes, c.RSSBytes)
		}
		m.Procs = p
	}
	st, err := d.q.Stats(ctx)
	if err != nil {
		return m, err
	}
	m.Pending, m.Ready, m.OldestAge = st.Pending, st.Ready, st.OldestAge
	return m, nil
}

// Foreman returns the daemon's loop and worker pool, for operating it
// while it runs: Pause, Resume, SetWorkers, Cancel, Snapshot, Ping.
func (d *Daemon) Foreman() *foreman.Foreman { return d.fm }

// Processes returns the pool of child processes that runs isolated tasks,
// for status (Snapshot) and for changing its limits (SetLimits); nil
// without Config.Processes.
func (d *Daemon) Processes() *prefork.Pool { return d.pool }

// Schedules lists the daemon's schedules with their next and last run, as
// stored in the database; none without Config.Schedules.
func (d *Daemon) Schedules(ctx context.Context) ([]schedule.Entry, error) {
	if d.sched == nil {
		return nil, nil
	}
	entries, err := d.sched.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return entries, nil
}

// MetricsAddr returns the address the metrics are served on, or nil
// without Config.MetricsAddr.
func (d *Daemon) MetricsAddr() net.Addr {
	if d.metricsLn == nil {
		return nil
	}
	return d.metricsLn.Addr()
}

// Run runs the daemon until ctx ends or Shutdown is called, then stops as
// the package documentation describes, and releases what New took. It
// returns nil after a clean stop, including one cut short by the graceful
// timeout; an error matching ErrDataDirGone after a stop because the data
// directory's files left their paths; ErrClosed when called twice or after
// Shutdown.
func (d *Daemon) Run(ctx context.Context) error {
	if d.started.Swap(true) {
		return ErrClosed
	}
	defer close(d.runDone)
	defer d.release()
	files, err := d.dataDirFiles()
	if err != nil {
		return err
	}
	d.files = files // before the foreman starts the watch service

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.mu.Lock()
	d.cancelRun = cancel
	d.mu.Unlock()
	// A cancelled ctx starts the graceful stop: note its deadline for the
	// last statistics.
	finished := make(chan struct{})
	noted := make(chan struct{})
	go func() {
		defer close(noted)
		select {
		case <-ctx.Done():
		case <-finished:
			if ctx.Err() == nil {
				return
			}
		}
		d.noteStop(time.Now().Add(max(d.cfg.GracefulTimeout, 0)))
	}()

	d.reclaimLog(runCtx)
	var members *cluster
	if !d.lite {
		members = d.startCluster(d.bw.Cancels())
		d.led.owner = members.ownerID
	}
	poolDone := d.startPool()
	d.led.recoverDead(runCtx)
	err = d.fm.Run(runCtx)
	// The tasks still running at the graceful deadline recorded lost,
	// while the daemon is still listed live (its records are its own).
	d.led.stop(d.stopDeadline(finalFlushMin))
	d.stopPool(poolDone)
	if members != nil {
		members.stop()
	}
	close(finished)
	<-noted
	d.mu.Lock()
	d.cancelRun = nil
	gone := d.gone
	d.mu.Unlock()
	d.flush()
	if err != nil {
		return err
	}
	return gone
}

// startPool starts the process pool's children; the returned channel is
// closed when its Run has returned. Nil without a pool.
func (d *Daemon) startPool() chan struct{} {
	if d.pool == nil {
		return nil
	}
	s := d.pool.Snapshot()
	d.log.Info("starting worker processes for isolated tasks", "procs_min", s.Min, "procs_max", s.Max, "isolate_all", d.cfg.IsolateAll)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.pool.Run(context.Background()); err != nil {
			d.log.Error("process pool stopped with an error", "err", err)
		}
	}()
	return done
}

// stopPool stops the process pool once the foreman has stopped. Its tasks
// have finished then, unless the graceful deadline passed first (the
// foreman abandons those after HardStopWait): what still runs is given
// what is left of that one deadline, then every child gets SIGTERM at
// once and SIGKILL soon after, and all are reaped before the daemon goes
// on to exit or re-execute (a child outliving its parent's thread would
// be killed by its PR_SET_PDEATHSIG anyway).
func (d *Daemon) stopPool(done chan struct{}) {
	if d.pool == nil {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), d.stopDeadline(0))
	st, err := d.pool.Shutdown(ctx)
	cancel()
	<-done
	c := d.pool.Snapshot().Counters
	attrs := []any{"terminated", st.Terminated, "sigkilled", st.Killed,
		"starts", c.Starts, "deaths", c.Deaths, "kills", c.Kills, "restarts", c.Restarts, "retired", c.Retired}
	if err != nil {
		d.log.Warn("worker processes stopped at the deadline", append(attrs, "err", err)...)
		return
	}
	d.log.Info("worker processes stopped", attrs...)
}

// reclaimLog empties and truncates the write-ahead log before the daemon
// writes anything: a log left large by producers (while no daemon ran) or
// by a disk that filled up gives its space back, and the first claims do
// not use up space just freed before the checkpoint service's first look.
// A failure is only logged: the service retries at every interval.
func (d *Daemon) reclaimLog(ctx context.Context) {
	ok, err := d.q.TruncateCheckpoint(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Warn("could not checkpoint the write-ahead log at start; will retry", "err", err)
	case err == nil && !ok:
		d.log.Info("the write-ahead log is in use by another process; it will be checkpointed later")
	}
}

// flush writes the last statistics, within what is left of the stop's
// deadline (at least finalFlushMin): the stop honours the graceful timeout
// even while another process holds the database's write lock. Then it
// flushes the reporter.
func (d *Daemon) flush() {
	if d.rec != nil {
		ctx, cancel := context.WithDeadline(context.Background(), d.stopDeadline(finalFlushMin))
		if err := d.rec.Flush(ctx); err != nil {
			rows, tasks := d.rec.Unwritten()
			d.log.Warn("could not write the last statistics before the stop deadline; they are lost",
				"err", err, "tasks", tasks, "rows", rows)
		}
		cancel()
	}
	if f, ok := d.cfg.Reporter.(interface{ Flush(time.Duration) bool }); ok && !f.Flush(reporterFlushTimeout) {
		d.log.Warn("some error reports were not sent before the timeout")
	}
}

// Shutdown stops intake at once and waits for running tasks to finish and
// Run to return. If ctx ends first, it cancels the tasks' contexts (an
// already cancelled ctx is a hard stop), waits for Run to return (about a
// second more) and returns ctx's error. Calling it again never extends the
// first deadline; a later call with an earlier one cuts it short. Before
// Run, it releases what New took, and Run then returns ErrClosed.
func (d *Daemon) Shutdown(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		d.noteStop(dl)
	} else if ctx.Err() != nil {
		d.noteStop(time.Now())
	}
	if !d.started.Load() && d.started.CompareAndSwap(false, true) {
		d.fm.Shutdown(ctx)
		if d.pool != nil {
			d.pool.Shutdown(ctx) // never ran: nothing to wait for
		}
		d.release()
		close(d.runDone)
		return nil
	}
	err := d.fm.Shutdown(ctx)
	// The foreman has stopped: Run has only the bounded flushes left.
	<-d.runDone
	return err
}

// noteStop records t as the stop's deadline unless an earlier one is.
func (d *Daemon) noteStop(t time.Time) {
	ns := t.UnixNano()
	for {
		old := d.stopBy.Load()
		if old != 0 && old <= ns {
			return
		}
		if d.stopBy.CompareAndSwap(old, ns) {
			return
		}
	}
}

// stop starts a graceful stop, as a cancelled Run context does.
func (d *Daemon) stop() {
	d.mu.Lock()
	cancel := d.cancelRun
	d.mu.Unlock()
	if cancel != nil {
		d.noteStop(time.Now().Add(max(d.cfg.GracefulTimeout, 0)))
		cancel()
	}
}

// release gives back what New took: the wakeup watch, an unserved metrics
// listener and a lock New acquired.
func (d *Daemon) release() {
	d.releaseOnce.Do(func() {
		if d.w != nil {
			d.w.Close()
		}
		if d.bw != nil {
			d.bw.Close()
		}
		if d.metricsLn != nil {
			d.metricsLn.Close() // Serve closed it already if it ran
		}
		if d.own {
			if err := d.lock.Release(); err != nil {
				d.log.Warn("could not release the single-instance lock", "err", err)
			}
		}
	})
}

// stopDeadline is when the stop's remaining writes must end: the stop's
// deadline, but at least least from now.
func (d *Daemon) stopDeadline(least time.Duration) time.Time {
	t := time.Now().Add(least)
	if ns := d.stopBy.Load(); ns != 0 {
		if by := time.Unix(0, ns); by.After(t) {
			return by
		}
	}
	return t
}

package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/foreman"
)

// durationBuckets are the upper bounds, in seconds, of the
// snappea_task_duration_seconds histogram: 1ms to 5 minutes, for
// background tasks from a cache write to a report.
var durationBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120, 300,
}

// MaxTasks caps the task names that get series of their own; the tasks of
// further names are counted under the task label OtherTask. Registered
// names are few, but a producer can enqueue any name (the daemon discards
// it), and each name costs a series per outcome and per bucket.
const MaxTasks = 1000

// OtherTask is the task label of tasks past MaxTasks names.
const OtherTask = "(other)"

// snapshotTimeout bounds a Snapshot call during a scrape; Prometheus's
// default scrape timeout is 10s.
const snapshotTimeout = 5 * time.Second

// snapshotWarnEvery is the least time between two warnings of a failing
// Snapshot, so a broken database does not log at every scrape.
const snapshotWarnEvery = time.Minute

// shutdownTimeout bounds how long Serve waits for scrapes in progress when
// its context ends.
const shutdownTimeout = 5 * time.Second

// Snapshot is the daemon's state, read at scrape time.
type Snapshot struct {
	Pending      int64         // tasks in the queue, due or not
	Ready        int64         // of those, the ones due to run now
	OldestAge    time.Duration // how long the oldest pending task has waited; 0 when none
	WorkersBusy  int           // tasks running
	WorkersTotal int           // the size of the worker pool
	Paused       bool          // the foreman claims no tasks
	Reloads      int           // configuration reloads since the daemon started
	Lost         int64         // lost tasks this daemon recorded failed (their daemon ended while they ran)
	LostRetried  int64         // lost tasks this daemon enqueued again (RetryLost)
	// Procs is the pool of child processes that run isolated tasks; nil
	// without one, and its series are left out.
	Procs *Procs
}

// Procs is the state of the daemon's pool of child processes (package
// prefork): the children now, and what happened to them since the daemon
// started.
type Procs struct {
	ByState     map[string]int // children by state: starting, idle, busy, retiring
	RSSBytes    int64          // the children's resident sets, added up
	MaxRSSBytes int64          // the largest child's resident set
	Starts      int64          // children started
	Deaths      int64          // children that exited or were killed by someone else
	Kills       int64          // children the pool killed (SIGTERM): hard timeouts, ignored cancels, the stop deadline
	SIGKILLs    int64          // of those and of retired ones, the children that needed SIGKILL
	Restarts    int64          // starts that replaced a dead or killed child
	Retired     int64          // children asked to exit: idle, recycled (tasks or RSS), stopping
}

// Config configures Metrics. Everything is optional.
type Config struct {
	// Snapshot returns the daemon's state. It is called once per scrape,
	// with a context that ends after 5 seconds. If it fails, the scrape
	// still succeeds: snappea_up is 0 and the gauges it feeds are left
	// out, and the error is logged at warn (at most once a minute).
	// Without Snapshot, snappea_up and those gauges are left out.
	Snapshot func(ctx context.Context) (Snapshot, error)
	// Logger receives a failing Snapshot at warn and failures to serve
	// metrics at error. Default slog.Default().
	Logger *slog.Logger
}

// Metrics holds snappea's Prometheus metrics in a registry of its own.
// Create it with New; it is safe for concurrent use.
type Metrics struct {
	log      *slog.Logger
	snapshot func(ctx context.Context) (Snapshot, error)
	reg      *prometheus.Registry
	handler  http.Handler

	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec

	// tasks maps a task name to its series. It is copied on write, so
	// that Finished reads it without a lock; mu serialises the writers.
	tasks atomic.Pointer[map[string]*taskSeries]
	mu    sync.Mutex

	lastWarn atomic.Int64 // Unix nanoseconds of the last Snapshot warning
}

var _ foreman.Observer = (*Metrics)(nil)

// taskSeries are one task name's series, looked up once.
type taskSeries struct {
	finished []prometheus.Counter // by Outcome
	duration prometheus.Observer
}

// outcomes are the names of the foreman's outcomes, indexed by Outcome:
// the values from 0 up that have a name of their own. Every task gets a
// series for each at its first finish, so that the rate of a rare outcome
// reads 0 instead of nothing.
var outcomes = func() []string {
	var names []string
	for o := foreman.Outcome(0); o < 64; o++ {
		name := o.String()
		if name == fmt.Sprintf("Outcome(%d)", int(o)) {
			break
		}
		names = append(names, name)
	}
	return names
}()

// New returns Metrics with snappea's metrics and the Go runtime and process
// collectors registered.
func New(cfg Config) (*Metrics, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Metrics{
		log:      cfg.Logger,
		snapshot: cfg.Snapshot,
		reg:      prometheus.NewRegistry(),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "snappea_tasks_finished_total",
			Help: "Tasks that finished, by task name and outcome (done, failed, panicked, discarded, ...).",
		}, []string{"task", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "snappea_task_duration_seconds",
			Help:    "How long tasks ran, by task name, whatever their outcome.",
			Buckets: durationBuckets,
		}, []string{"task"}),
	}
	m.tasks.Store(&map[string]*taskSeries{})
	cs := []prometheus.Collector{
		m.finished,
		m.duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	if cfg.Snapshot != nil {
		cs = append(cs, snapshotCollector{m})
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{m.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	return m, nil
}

// Registry returns the registry the metrics are in, for adding collectors
// of your own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Finished counts a finished task and observes its run time. It implements
// foreman.Observer: a lock-free map lookup and two atomic updates once the
// task name has been seen.
func (m *Metrics) Finished(t *snappea.Task, o foreman.Outcome, d time.Duration) {
	s := m.series(t.Name)
	if o >= 0 && int(o) < len(s.finished) {
		s.finished[o].Inc()
	} else {
		m.finished.WithLabelValues(t.Name, o.String()).Inc()
	}
	s.duration.Observe(d.Seconds())
}

func (m *Metrics) series(name string) *taskSeries {
	if s := (*m.tasks.Load())[name]; s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.tasks.Load()
	if s := old[name]; s != nil {
		return s
	}
	if len(old) >= MaxTasks {
		name = OtherTask
		if s := old[name]; s != nil {
			return s
		}
	}
	s := &taskSeries{
		finished: make([]prometheus.Counter, len(outcomes)),
		duration: m.duration.WithLabelValues(name),
	}
	for o, outcome := range outcomes {
		s.finished[o] = m.finished.WithLabelValues(name, outcome)
	}
	tasks := make(map[string]*taskSeries, len(old)+1)
	for k, v := range old {
		tasks[k] = v
	}
	tasks[name] = s
	m.tasks.Store(&tasks)
	return s
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Listen listens on addr (host:port; port 0 picks a free one) for Serve.
// Call it before starting the daemon's work, so that a bad or busy address
// stops the start; its error names the address.
func (m *Metrics) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics: %w", err)
	}
	return ln, nil
}

// Serve serves the metrics on ln at /metrics, and a pointer to them at /,
// until ctx ends; then it waits up to 5 seconds for scrapes in progress,
// closes ln and returns nil. It returns an error if serving fails before.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "snappea: metrics are at /metrics")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	}
	return nil
}

// errorLog hands promhttp's errors to the logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Error("serving metrics failed", "err", fmt.Sprint(v...))
}

var (
	upDesc = prometheus.NewDesc("snappea_up",
		"1 if the daemon could read its state (queue and workers) for this scrape, 0 if not; the gauges below are left out then.", nil, nil)
	pendingDesc = prometheus.NewDesc("snappea_tasks_pending",
		"Tasks in the queue, due or not.", nil, nil)
	readyDesc = prometheus.NewDesc("snappea_tasks_ready",
		"Tasks in the queue that are due to run now.", nil, nil)
	oldestDesc = prometheus.NewDesc("snappea_oldest_task_age_seconds",
		"How long the oldest task in the queue has waited; 0 when the queue is empty.", nil, nil)
	busyDesc = prometheus.NewDesc("snappea_workers_busy",
		"Tasks running.", nil, nil)
	workersDesc = prometheus.NewDesc("snappea_workers_total",
		"The size of the worker pool.", nil, nil)
	pausedDesc = prometheus.NewDesc("snappea_paused",
		"1 if the daemon is paused (claims no tasks), 0 if not.", nil, nil)
	reloadsDesc = prometheus.NewDesc("snappea_reloads_total",
		"Configuration reloads since the daemon started.", nil, nil)

	procsDesc = prometheus.NewDesc("snappea_procs",
		"Child processes of the pool that runs isolated tasks, by state (starting, idle, busy, retiring).", []string{"state"}, nil)
	procRSSDesc = prometheus.NewDesc("snappea_procs_rss_bytes",
		"The resident sets of the pool's child processes, added up.", nil, nil)
	procMaxRSSDesc = prometheus.NewDesc("snappea_procs_max_rss_bytes",
		"The largest resident set of one of the pool's child processes.", nil, nil)
	procStartsDesc = prometheus.NewDesc("snappea_proc_starts_total",
		"Child processes started.", nil, nil)
	procDeathsDesc = prometheus.NewDesc("snappea_proc_deaths_total",
		"Child processes that exited or were killed by someone else (their task failed).", nil, nil)
	procKillsDesc = prometheus.NewDesc("snappea_proc_kills_total",
		"Child processes the daemon killed: past a task's timeout, after an ignored cancel, at the stop deadline.", nil, nil)
	procSIGKILLsDesc = prometheus.NewDesc("snappea_proc_sigkills_total",
		"Child processes that needed SIGKILL, not exiting after SIGTERM or after being asked to.", nil, nil)
	procRestartsDesc = prometheus.NewDesc("snappea_proc_restarts_total",
		"Child processes started to replace one that died or was killed.", nil, nil)
	procRetiredDesc = prometheus.NewDesc("snappea_proc_retired_total",
		"Child processes asked to exit: idle above the minimum, recycled (--max-tasks-per-proc, --max-rss-per-proc), stopping.", nil, nil)
	lostDesc = prometheus.NewDesc("snappea_tasks_lost_total",
		"Tasks found lost (their daemon died, or stopped at its graceful deadline, while they ran) by this daemon, by what became of them: failed (recorded in the failed record) or retried (enqueued again, RetryLost).",
		[]string{"outcome"}, nil)
)

// procStates are the label values of snappea_procs, all sent at each
// scrape so that a state with no child reads 0.
var procStates = []string{"starting", "idle", "busy", "retiring"}

// snapshotCollector turns a Snapshot into metrics at scrape time.
type snapshotCollector struct{ m *Metrics }

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, pendingDesc, readyDesc, oldestDesc, busyDesc, workersDesc, pausedDesc, reloadsDesc,
		procsDesc, procRSSDesc, procMaxRSSDesc, procStartsDesc, procDeathsDesc, procKillsDesc, procSIGKILLsDesc, procRestartsDesc, procRetiredDesc, lostDesc} {
		ch <- d
	}
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	s, err := c.m.snapshot(ctx)
	if err != nil {
		c.m.warnSnapshot(err)
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(upDesc, 1)
	gauge(pendingDesc, float64(s.Pending))
	gauge(readyDesc, float64(s.Ready))
	gauge(oldestDesc, s.OldestAge.Seconds())
	gauge(busyDesc, float64(s.WorkersBusy))
	gauge(workersDesc, float64(s.WorkersTotal))
	gauge(pausedDesc, b2f(s.Paused))
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(s.Reloads))
	if p := s.Procs; p != nil {
		for _, st := range procStates {
			ch <- prometheus.MustNewConstMetric(procsDesc, prometheus.GaugeValue, float64(p.ByState[st]), st)
		}
		gauge(procRSSDesc, float64(p.RSSBytes))
		gauge(procMaxRSSDesc, float64(p.MaxRSSBytes))
		counter := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
		}
		counter(procStartsDesc, p.Starts)
		counter(procDeathsDesc, p.Deaths)
		counter(procKillsDesc, p.Kills)
		counter(procSIGKILLsDesc, p.SIGKILLs)
		counter(procRestartsDesc, p.Restarts)
		counter(procRetiredDesc, p.Retired)
	}
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(s.Lost), "failed")
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(s.LostRetried), "retried")
}

func (m *Metrics) warnSnapshot(err error) {
	now := time.Now().UnixNano()
	last := m.lastWarn.Load()
	if now-last < int64(snapshotWarnEvery) || !m.lastWarn.CompareAndSwap(last, now) {
		m.log.Debug("metrics: reading the daemon's state failed", "err", err)
		return
	}
	m.log.Warn("metrics: reading the daemon's state failed; its gauges are left out of the scrape", "err", err)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Mode is one kind of measurement.
type Mode string

// The modes, in the order Run makes them.
const (
	Enqueue   Mode = "enqueue"   // enqueues/s, one task per transaction and batched
	BurnDown  Mode = "burndown"  // tasks/s draining a backlog, by worker count
	Latency   Mode = "latency"   // pickup latency idle, at Config.Rate, and the rate sweep
	Resources Mode = "resources" // the daemon's peak RSS and CPU time, busy and idle
	// Sustained paces single-task enqueues at Config.SustainedRate for
	// Config.SustainedDuration beside a running daemon and reports the
	// producer's slowest commits and the largest write-ahead log seen: the
	// case where a checkpoint inside a producer's commit would show.
	Sustained Mode = "sustained"
)

// AllModes are the modes Run makes by default. Sustained, a minute per run
// by default, is made only when asked for.
var AllModes = []Mode{Enqueue, BurnDown, Latency, Resources}

// KnownModes are every mode, in the order Run makes them.
var KnownModes = []Mode{Enqueue, BurnDown, Latency, Resources, Sustained}

// ParseModes parses a comma-separated list of modes; "all" or "" is
// AllModes.
func ParseModes(s string) ([]Mode, error) {
	if s == "" || s == "all" {
		return slices.Clone(AllModes), nil
	}
	var modes []Mode
	for _, f := range strings.Split(s, ",") {
		m := Mode(strings.TrimSpace(f))
		if !slices.Contains(KnownModes, m) {
			return nil, fmt.Errorf("unknown mode %q: want all or a list of enqueue, burndown, latency, resources, sustained", f)
		}
		if !slices.Contains(modes, m) {
			modes = append(modes, m)
		}
	}
	return modes, nil
}

// idleGap is the spacing of the tasks of the idle latency measurement:
// long enough for each to be picked up before the next is enqueued.
const idleGap = 5 * time.Millisecond

// Config says what to measure and how hard. The zero value of every field
// but Executable means its default.
type Config struct {
	// Executable is the path of the snappea binary to measure: any binary
	// built with cli.Main, which has the built-in tasks and the producer
	// role. Required; the command line passes os.Executable().
	Executable string
	// Modes are the measurements to make. Default: AllModes.
	Modes []Mode
	// Tasks is how many tasks each enqueue measurement writes and each
	// burn-down drains. Default 20000.
	Tasks int
	// Workers is the daemon's --workers for the burn-down (burndown_per_s)
	// and the latency measurements. Default 16.
	Workers int
	// WorkerSweep are the worker counts of further burn-downs in BurnDown
	// mode, for the throughput-against-workers chart. Default
	// 1, 2, 4, 8, 16, 32; an empty non-nil slice means none.
	WorkerSweep []int
	// Producers is the number of producer processes of the multi-producer
	// enqueue measurements; each writes Tasks/Producers. Default 4.
	Producers int
	// BatchSize is how many tasks one transaction holds in the batched
	// enqueue measurements and when the burn-down's backlog is written.
	// Default 1000.
	BatchSize int
	// Rate is the paced enqueue rate of the loaded latency measurement, in
	// tasks per second. Default 2000.
	Rate float64
	// Duration is how long the loaded latency measurement paces tasks at
	// Rate; the idle one sends Duration/5ms tasks, 5ms apart. Default 3s.
	Duration time.Duration
	// SweepStep is how long each rate of the latency sweep other than Rate
	// is paced. Default 1s.
	SweepStep time.Duration
	// MaxRate is the highest rate, in tasks per second, the latency sweep
	// tries. The sweep starts at Rate/4 and doubles; above Rate it stops at
	// the first rate not kept up. Default 64000; negative: no sweep, Rate
	// only.
	MaxRate float64
	// SweepP99 is the p99 pickup latency above which a rate counts as not
	// kept up. Default 10ms.
	SweepP99 time.Duration
	// IdlePeriod is how long the idle daemon's CPU time is measured, in
	// Resources mode. Default 5s.
	IdlePeriod time.Duration
	// SustainedRate is the paced rate of the Sustained measurement, in
	// single-task enqueues per second. Default 5000.
	SustainedRate float64
	// SustainedDuration is how long the Sustained measurement paces
	// enqueues. Default 60s.
	SustainedDuration time.Duration
	// Runs is how many times every measurement is made; Result holds the
	// medians. Default 3.
	Runs int
	// TempDir is where the temporary data directory is created (and
	// removed at the end). Default os.TempDir().
	TempDir string
	// DatabaseURL, if set, runs every measurement on this PostgreSQL
	// database instead of an SQLite file: the daemons and producers get it
	// (and Schema) in their environment, as SNAPPEA_DATABASE_URL and
	// SNAPPEA_SCHEMA, never on a command line. Each measurement starts on
	// an empty Schema and drops it at its end; Run drops it at its own
	// end too, also when cancelled. The data directories still hold the
	// daemons' locks, pidfiles and sockets.
	DatabaseURL string
	// Schema is the PostgreSQL schema the measurements use, with
	// DatabaseURL. It must not exist: Run creates and drops it. Default: a
	// fresh snappea_bench_ and random hex digits.
	Schema string
	// Isolation is the daemons' --isolation: "goroutine" (the default) or
	// "process", where every task runs in one of Procs child processes,
	// which measures the process pool's cost per task.
	Isolation string
	// Procs is the daemons' --procs-min and --procs-max with Isolation
	// "process". Default 2.
	Procs int
	// ProfileDir, if set, receives a CPU profile of every daemon and of
	// every paced producer, named after the measurement, for go tool pprof.
	ProfileDir string
	// Progress, if set, is called before each step with the step's number
	// (from 0), the number of steps and what the step measures, and once
	// more with step == steps at the end. Steps a sweep skips are counted
	// as done.
	Progress func(step, steps int, what string)
}

func (c *Config) setDefaults() error {
	if c.Executable == "" {
		return errors.New("bench config: Executable is required")
	}
	if len(c.Modes) == 0 {
		c.Modes = slices.Clone(AllModes)
	}
	for _, m := range c.Modes {
		if !slices.Contains(KnownModes, m) {
			return fmt.Errorf("bench config: Modes: unknown mode %q", m)
		}
	}
	type intField struct {
		name string
		v    *int
		def  int
	}
	for _, f := range []intField{
		{"Tasks", &c.Tasks, 20000}, {"Workers", &c.Workers, 16}, {"Producers", &c.Producers, 4},
		{"BatchSize", &c.BatchSize, 1000}, {"Runs", &c.Runs, 3},
	} {
		if *f.v < 0 {
			return fmt.Errorf("bench config: %s is %d, want at least 1 (0 for the default)", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.WorkerSweep == nil {
		c.WorkerSweep = []int{1, 2, 4, 8, 16, 32}
	}
	for _, w := range c.WorkerSweep {
		if w < 1 {
			return fmt.Errorf("bench config: WorkerSweep holds %d, want worker counts of at least 1", w)
		}
	}
	if c.Rate < 0 {
		return fmt.Errorf("bench config: Rate is %g, want a positive rate (0 for the default)", c.Rate)
	}
	if c.Rate == 0 {
		c.Rate = 2000
	}
	if c.MaxRate == 0 {
		c.MaxRate = 64000
	}
	if c.SustainedRate < 0 {
		return fmt.Errorf("bench config: SustainedRate is %g, want a positive rate (0 for the default)", c.SustainedRate)
	}
	if c.SustainedRate == 0 {
		c.SustainedRate = 5000
	}
	type durField struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, f := range []durField{
		{"Duration", &c.Duration, 3 * time.Second}, {"SweepStep", &c.SweepStep, time.Second},
		{"SweepP99", &c.SweepP99, 10 * time.Millisecond}, {"IdlePeriod", &c.IdlePeriod, 5 * time.Second},
		{"SustainedDuration", &c.SustainedDuration, time.Minute},
	} {
		if *f.v < 0 {
			return fmt.Errorf("bench config: %s is %v, want a positive duration (0 for the default)", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	switch c.Isolation {
	case "":
		c.Isolation = "goroutine"
	case "goroutine", "process":
	default:
		return fmt.Errorf("bench config: Isolation is %q, want goroutine or process", c.Isolation)
	}
	if c.Procs < 0 {
		return fmt.Errorf("bench config: Procs is %d, want at least 1 (0 for the default)", c.Procs)
	}
	if c.Procs == 0 {
		c.Procs = 2
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.DatabaseURL == "" && c.Schema != "" {
		return errors.New("bench config: Schema is set without DatabaseURL: a schema is PostgreSQL's")
	}
	if c.DatabaseURL != "" && c.Schema == "" {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("bench config: name a schema: %w", err)
		}
		c.Schema = "snappea_bench_" + hex.EncodeToString(b[:])
	}
	return nil
}

func (c *Config) has(m Mode) bool { return slices.Contains(c.Modes, m) }

// burnDownWorkers are the worker counts to burn down at, ascending.
func (c *Config) burnDownWorkers() []int {
	var ws []int
	if c.has(BurnDown) {
		ws = append(ws, c.WorkerSweep...)
	}
	if c.has(BurnDown) || c.has(Resources) {
		ws = append(ws, c.Workers)
	}
	slices.Sort(ws)
	return slices.Compact(ws)
}

// sweepRates are the paced rates of the latency measurement, ascending;
// Rate is always one of them.
func (c *Config) sweepRates() []float64 {
	if c.MaxRate < 0 {
		return []float64{c.Rate}
	}
	rates := []float64{c.Rate / 4, c.Rate / 2, c.Rate}
	for r := 2 * c.Rate; r <= c.MaxRate; r *= 2 {
		rates = append(rates, r)
	}
	return rates
}

// Percentiles summarise pickup latencies, in milliseconds.
type Percentiles struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"` // tasks measured (in one run)
}

// WorkerPoint is the burn-down throughput at one worker count.
type WorkerPoint struct {
	Workers int     `json:"workers"`
	PerS    float64 `json:"per_s"`
}

// RatePoint is the pickup latency at one paced rate of the sweep.
type RatePoint struct {
	RatePerS     float64     `json:"rate_per_s"`     // the rate asked for
	AchievedPerS float64     `json:"achieved_per_s"` // the rate the producer achieved
	LatencyMS    Percentiles `json:"latency_ms"`
	// KeptUp: p99 within Config.SweepP99 and at least 90% of the rate
	// achieved, in most runs.
	KeptUp bool `json:"kept_up"`
	Runs   int  `json:"runs"` // how many runs reached this rate
}

// Result is what Run measured: medians over the runs. Rates are per second,
// latencies in milliseconds, memory in MiB (2^20 bytes), CPU time in
// seconds. Measurements of modes not made are zero. The JSON keys are
// stable.
type Result struct {
	// Enqueue: no daemon running, Tasks per measurement.
	EnqueueSinglePerS      float64 `json:"enqueue_single_per_s"`       // one task per transaction, one producer
	EnqueueSingleMultiPerS float64 `json:"enqueue_single_multi_per_s"` // the same, Producers processes together
	EnqueueBatchPerS       float64 `json:"enqueue_batch_per_s"`        // BatchSize tasks per transaction, one producer
	EnqueueBatchMultiPerS  float64 `json:"enqueue_batch_multi_per_s"`  // the same, Producers processes together

	// BurnDownPerS is the drain rate of a backlog of Tasks no-ops with
	// Workers workers, from "foreman started" to the last task.
	BurnDownPerS float64 `json:"burndown_per_s"`
	// BurnDownByWorkers is the same at each worker count measured.
	BurnDownByWorkers []WorkerPoint `json:"burndown_by_workers"`

	// Pickup latency, enqueue call to handler start, across processes.
	LatencyIdleMS        Percentiles `json:"latency_idle_ms"`          // one task every 5ms
	LatencyLoadedMS      Percentiles `json:"latency_loaded_ms"`        // paced at LoadedRatePerS
	LoadedRatePerS       float64     `json:"loaded_rate_per_s"`        // Config.Rate
	LoadedAchievedPerS   float64     `json:"loaded_achieved_per_s"`    // what the producer achieved
	MaxSustainedRatePerS float64     `json:"max_sustained_rate_per_s"` // highest rate of the sweep kept up
	// The producer's side of the same tasks: how long its Enqueue calls
	// took (insert, commit, any WAL checkpoint the commit ran, wakeup). A
	// tail here is the producer's; the rest of the latency is the daemon's.
	EnqueueCallIdleMS   Percentiles `json:"enqueue_call_idle_ms"`
	EnqueueCallLoadedMS Percentiles `json:"enqueue_call_loaded_ms"`
	// SustainLimit says why the sweep stopped: "latency" (p99 above
	// SweepP99), "rate" (the producer fell below 90% of the rate: the
	// limit may be the producer's), or "max_rate" (never stopped).
	SustainLimit string      `json:"sustain_limit"`
	LatencySweep []RatePoint `json:"latency_sweep"`
	SweepP99MS   float64     `json:"sweep_p99_ms"`

	// Sustained: one producer paces single-task enqueues at
	// SustainedRatePerS for SustainedSeconds while the daemon runs them.
	// The percentiles are of the producer's Enqueue calls (insert, commit,
	// any checkpoint the commit ran, wakeup); the WAL size is the largest
	// the database's -wal file was seen at, sampled every 10ms.
	SustainedRatePerS     float64 `json:"sustained_rate_per_s"`
	SustainedAchievedPerS float64 `json:"sustained_achieved_per_s"`
	SustainedSeconds      float64 `json:"sustained_seconds"`
	SustainedEnqueueP50MS float64 `json:"sustained_enqueue_p50_ms"`
	SustainedEnqueueP99MS float64 `json:"sustained_enqueue_p99_ms"`
	SustainedEnqueueMaxMS float64 `json:"sustained_enqueue_max_ms"`
	// SustainedWALMaxBytes is 0 on PostgreSQL, whose write-ahead log is
	// the server's.
	SustainedWALMaxBytes int64 `json:"sustained_wal_max_bytes"`

	// RSSPeakMB is the highest peak RSS of any daemon of a run.
	RSSPeakMB float64 `json:"rss_peak_mb"`
	// CPUSeconds is the burn-down daemon's CPU time (user and system),
	// start-up and stop included, with Workers workers.
	CPUSeconds       float64 `json:"cpu_seconds"`
	CPUMicrosPerTask float64 `json:"cpu_us_per_task"`
	// IdleCPUSeconds is the CPU time of a daemon with nothing queued over
	// IdlePeriodSeconds.
	IdleCPUSeconds    float64 `json:"idle_cpu_seconds"`
	IdlePeriodSeconds float64 `json:"idle_period_seconds"`

	// What was run, and where. Backend is "sqlite" or "postgresql".
	Backend   string     `json:"backend"`
	Isolation string     `json:"isolation"`       // goroutine or process
	Procs     int        `json:"procs,omitempty"` // the daemons' child processes, with process isolation
	Modes     []Mode     `json:"modes"`
	Tasks     int        `json:"tasks"`
	Workers   int        `json:"workers"`
	Producers int        `json:"producers"`
	BatchSize int        `json:"batch_size"`
	Runs      int        `json:"runs"`
	GoVersion string     `json:"go_version"`
	CPUs      int        `json:"cpus"`
	LoadAvg   [3]float64 `json:"load_avg"` // 1, 5 and 15 minute load averages at the start
	Elapsed   float64    `json:"elapsed_seconds"`
}

// Run makes the measurements cfg selects, Runs times over, and returns
// their medians. It blocks until done; cancelling ctx stops the daemon and
// the producers, removes the data directory (and drops the PostgreSQL
// schema) and returns ctx's error.
func Run(ctx context.Context, cfg Config) (_ *Result, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.Executable); err != nil {
		return nil, fmt.Errorf("snappea executable: %w", err)
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("profile directory: %w", err)
		}
	}
	root, err := os.MkdirTemp(cfg.TempDir, "snappea-bench-")
	if err != nil {
		return nil, fmt.Errorf("create temporary directory: %w", err)
	}
	start := time.Now()
	r := &runner{cfg: cfg, root: root, steps: cfg.steps()}
	defer func() {
		if cerr := r.cleanup(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if cfg.DatabaseURL != "" {
		if err := r.openPostgres(ctx); err != nil {
			return nil, err
		}
	}
	load := loadAvg()
	runs := make([]runResult, 0, cfg.Runs)
	for i := range cfg.Runs {
		rr, err := r.runOnce(ctx, i)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		runs = append(runs, rr)
	}
	r.progress(r.steps, "done")
	res := aggregate(&cfg, runs)
	res.Backend = "sqlite"
	if cfg.DatabaseURL != "" {
		res.Backend = "postgresql"
	}
	res.Isolation = cfg.Isolation
	if cfg.Isolation == "process" {
		res.Procs = cfg.Procs
	}
	res.LoadAvg = load
	res.GoVersion = runtime.Version()
	res.CPUs = runtime.NumCPU()
	res.Elapsed = time.Since(start).Seconds()
	return res, nil
}

// steps counts the steps of Run for Progress.
func (c *Config) steps() int {
	n := 0
	if c.has(Enqueue) {
		n += 4
	}
	n += len(c.burnDownWorkers())
	if c.has(Latency) {
		n += 1 + len(c.sweepRates())
	}
	if c.has(Resources) {
		n++
	}
	if c.has(Sustained) {
		n++
	}
	return n * c.Runs
}

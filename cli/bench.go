package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/snappea/snappea/bench"
)

type benchFlags struct {
	mode, workerSweep string
	tasks, workers    int
	producers, batch  int
	runs              int
	rate, maxRate     float64
	duration          time.Duration
	sustainedRate     float64
	sustainedDuration time.Duration
	sweepStep         time.Duration
	sweepP99          time.Duration
	idlePeriod        time.Duration
	asJSON            bool
	plot              string
	tmpDir            string
	profileDir        string
	databaseURL       string
	schema            string
	isolation         string
	procs             int
}

func (c *cmdEnv) benchCommand() command {
	var f benchFlags
	var fs *flag.FlagSet
	return command{
		name: "bench", summary: "measure throughput, latency and resources on a temporary data directory",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("bench", "",
					"Measures this binary on this machine: the daemon ('run') and producers as subprocesses, on\n"+
						"snappea.noop tasks, in a temporary data directory removed at the end. Prints a table of the\n"+
						"medians over --runs (or JSON with --json); --plot also charts them. The default run takes\n"+
						"about a minute and a half.")
				fs.StringVar(&f.mode, "mode", "all", withEnv("mode", "what to measure: all (every mode but sustained), or a comma-separated list of enqueue, burndown, latency, resources, sustained"))
				fs.IntVar(&f.tasks, "tasks", 20000, withEnv("tasks", "tasks per enqueue measurement, and the backlog of each burn-down"))
				fs.IntVar(&f.workers, "workers", 16, withEnv("workers", "the daemon's workers for the main burn-down and for latency"))
				fs.StringVar(&f.workerSweep, "worker-sweep", "1,2,4,8,16,32", withEnv("worker-sweep", "further worker counts to burn down at, comma-separated (none: empty)"))
				fs.IntVar(&f.producers, "producers", 4, withEnv("producers", "producer processes of the multi-producer enqueue measurements"))
				fs.IntVar(&f.batch, "batch-size", 1000, withEnv("batch-size", "tasks per transaction when enqueueing in batches"))
				fs.Float64Var(&f.rate, "rate", 2000, withEnv("rate", "paced rate (tasks/s) of the loaded latency measurement"))
				fs.DurationVar(&f.duration, "duration", 3*time.Second, withEnv("duration", "how long the loaded latency measurement runs; the idle one sends one task per 5ms for as long"))
				fs.Float64Var(&f.sustainedRate, "sustained-rate", 5000, withEnv("sustained-rate", "paced rate (single-task enqueues/s) of --mode sustained"))
				fs.DurationVar(&f.sustainedDuration, "sustained-duration", time.Minute, withEnv("sustained-duration", "how long --mode sustained paces enqueues beside the daemon"))
				fs.Float64Var(&f.maxRate, "max-rate", 64000, withEnv("max-rate", "highest rate (tasks/s) the latency sweep tries, doubling from --rate/4 (0: no sweep)"))
				fs.DurationVar(&f.sweepStep, "sweep-step", time.Second, withEnv("sweep-step", "how long each rate of the sweep other than --rate runs"))
				fs.DurationVar(&f.sweepP99, "sweep-p99", 10*time.Millisecond, withEnv("sweep-p99", "p99 pickup latency above which a rate is not kept up"))
				fs.DurationVar(&f.idlePeriod, "idle-period", 5*time.Second, withEnv("idle-period", "how long an idle daemon's CPU time is measured"))
				fs.IntVar(&f.runs, "runs", 3, withEnv("runs", "how many times to repeat every measurement; medians are reported"))
				fs.BoolVar(&f.asJSON, "json", false, withEnv("json", "print one JSON object instead of the table"))
				fs.StringVar(&f.plot, "plot", "", withEnv("plot", "also write a chart to this .png or .svg file: throughput against workers, latency against rate"))
				fs.StringVar(&f.tmpDir, "tmpdir", "", withEnv("tmpdir", "where to create the temporary data directory (default: the system's)"))
				fs.StringVar(&f.databaseURL, "database-url", "", withEnv("database-url", "measure on this PostgreSQL database instead of SQLite files (postgres://user@host:port/dbname)"))
				// No environment twin: SNAPPEA_SCHEMA names a real queue,
				// which bench would refuse (it drops its schema at the end).
				fs.StringVar(&f.schema, "schema", "", "PostgreSQL schema to measure in, with --database-url; it must not exist, and is dropped at the end (default: a fresh snappea_bench_ and random hex digits)")
				f.isolation = isolationGoroutine
				// No environment twins: SNAPPEA_ISOLATION is the daemon's.
				fs.Var(&choiceFlag{&f.isolation, []string{isolationGoroutine, isolationProcess}}, "isolation",
					"the daemons' --isolation: goroutine, or process to run every task in a child process and measure the pool's cost per task")
				fs.Lookup("isolation").DefValue = isolationGoroutine
				fs.IntVar(&f.procs, "procs", 2, "with --isolation process, the daemons' child processes (their --procs-min and --procs-max)")
				fs.StringVar(&f.profileDir, "profile", "", withEnv("profile", "write CPU profiles of every daemon and paced producer into this directory"))
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) > 0 && args[0] == bench.ProducerRole {
				return c.benchProducer(ctx, args[1:])
			}
			if len(args) > 0 {
				fmt.Fprintf(c.Stderr, "snappea bench: unexpected arguments %q\n", args)
				return ExitUsage
			}
			return c.bench(ctx, &f)
		},
	}
}

func (c *cmdEnv) bench(ctx context.Context, f *benchFlags) int {
	cfg, err := f.config()
	if err != nil {
		fmt.Fprintf(c.Stderr, "snappea bench: %v\n", err)
		return ExitUsage
	}
	if cfg.Executable, err = os.Executable(); err != nil {
		fmt.Fprintf(c.Stderr, "snappea bench: cannot find this binary to run it: %v\n", err)
		return ExitError
	}
	if f.schema != "" && f.databaseURL == "" {
		fmt.Fprintf(c.Stderr, "snappea bench: --schema %s: want --database-url too; a schema is PostgreSQL's\n", f.schema)
		return ExitUsage
	}
	if f.plot != "" {
		// Fail before a long run, not after it.
		if c.prog.Chart == nil {
			fmt.Fprintf(c.Stderr, "snappea bench: --plot: this program draws no charts; the stock snappea binary (cmd/snappea) does\n")
			return ExitUsage
		}
		if ext := strings.ToLower(f.plot); !strings.HasSuffix(ext, ".png") && !strings.HasSuffix(ext, ".svg") {
			fmt.Fprintf(c.Stderr, "snappea bench: --plot %s: want a .png or .svg file\n", f.plot)
			return ExitUsage
		}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	bar := c.progressBar()
	cfg.Progress = bar.update
	res, err := bench.Run(ctx, cfg)
	bar.finish()
	if err != nil {
		if ctx.Err() != nil {
			what := "its data directory removed"
			if cfg.DatabaseURL != "" {
				what += " and its PostgreSQL schema dropped"
			}
			fmt.Fprintf(c.Stderr, "snappea bench: interrupted; its daemon and producers are stopped and %s\n", what)
			return ExitError
		}
		fmt.Fprintf(c.Stderr, "snappea bench: %v\n", err)
		return ExitError
	}
	if f.asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(c.Stderr, "snappea bench: %v\n", err)
			return ExitError
		}
	} else if err := res.WriteTable(c.Stdout); err != nil {
		fmt.Fprintf(c.Stderr, "snappea bench: %v\n", err)
		return ExitError
	}
	if f.plot != "" {
		if err := c.prog.Chart(res, f.plot); err != nil {
			fmt.Fprintf(c.Stderr, "snappea bench: %v\n", err)
			return ExitError
		}
		fmt.Fprintf(c.Stderr, "chart written to %s\n", f.plot)
	}
	return ExitOK
}

// config checks the flags and turns them into a bench.Config.
func (f *benchFlags) config() (bench.Config, error) {
	modes, err := bench.ParseModes(f.mode)
	if err != nil {
		return bench.Config{}, fmt.Errorf("--mode: %w", err)
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"tasks", f.tasks}, {"workers", f.workers}, {"producers", f.producers}, {"batch-size", f.batch}, {"runs", f.runs}, {"procs", f.procs}} {
		if v.n < 1 {
			return bench.Config{}, fmt.Errorf("--%s %d: want at least 1", v.name, v.n)
		}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"duration", f.duration}, {"sustained-duration", f.sustainedDuration}, {"sweep-step", f.sweepStep}, {"sweep-p99", f.sweepP99}, {"idle-period", f.idlePeriod}} {
		if v.d <= 0 {
			return bench.Config{}, fmt.Errorf("--%s %v: want a positive duration", v.name, v.d)
		}
	}
	if f.rate <= 0 {
		return bench.Config{}, fmt.Errorf("--rate %g: want a positive rate", f.rate)
	}
	if f.sustainedRate <= 0 {
		return bench.Config{}, fmt.Errorf("--sustained-rate %g: want a positive rate", f.sustainedRate)
	}
	if f.maxRate < 0 {
		return bench.Config{}, fmt.Errorf("--max-rate %g: want a rate, or 0 for no sweep", f.maxRate)
	}
	sweep := []int{} // none, unless listed
	for _, s := range strings.Split(f.workerSweep, ",") {
		if s = strings.TrimSpace(s); s == "" || s == "none" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return bench.Config{}, fmt.Errorf("--worker-sweep %q: want worker counts of at least 1, comma-separated", f.workerSweep)
		}
		sweep = append(sweep, n)
	}
	maxRate := f.maxRate
	if maxRate == 0 {
		maxRate = -1
	}
	return bench.Config{
		Modes: modes, Tasks: f.tasks, Workers: f.workers, WorkerSweep: sweep, Isolation: f.isolation, Procs: f.procs,
		Producers: f.producers, BatchSize: f.batch, Rate: f.rate, Duration: f.duration,
		SweepStep: f.sweepStep, MaxRate: maxRate, SweepP99: f.sweepP99, IdlePeriod: f.idlePeriod,
		SustainedRate: f.sustainedRate, SustainedDuration: f.sustainedDuration,
		Runs: f.runs, TempDir: f.tmpDir, ProfileDir: f.profileDir,
		DatabaseURL: f.databaseURL, Schema: f.schema,
	}, nil
}

// benchProducer is the hidden producer role of `snappea bench`, run by
// bench.Run in its producer subprocesses: one argument, the JSON of a
// bench.ProducerConfig.
func (c *cmdEnv) benchProducer(ctx context.Context, args []string) int {
	if len(args) != 1 {
		fmt.Fprintf(c.Stderr, "snappea bench %s: want one JSON argument\n", bench.ProducerRole)
		return ExitUsage
	}
	var pc bench.ProducerConfig
	if err := json.Unmarshal([]byte(args[0]), &pc); err != nil {
		fmt.Fprintf(c.Stderr, "snappea bench %s: %v\n", bench.ProducerRole, err)
		return ExitUsage
	}
	pc.DatabaseURL, pc.Schema = c.Getenv(bench.DatabaseURLEnv), c.Getenv(bench.SchemaEnv)
	if pc.CPUProfile != "" {
		stop, err := startCPUProfile(pc.CPUProfile)
		if err != nil {
			fmt.Fprintf(c.Stderr, "snappea bench %s: %v\n", bench.ProducerRole, err)
			return ExitError
		}
		defer stop()
	}
	if err := bench.Produce(ctx, pc, os.Stdin, c.Stdout, quietLogger(c.Stderr)); err != nil {
		fmt.Fprintf(c.Stderr, "snappea bench %s: %v\n", bench.ProducerRole, err)
		return ExitError
	}
	return ExitOK
}

// benchProgress draws a progress bar on stderr when stderr is a terminal
// and the run has lasted a few seconds; otherwise it is silent.
type benchProgress struct {
	enabled bool
	start   time.Time

	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	done chan struct{}
}

// progressAfter is how long a run goes before it shows a progress bar:
// short runs stay quiet.
const progressAfter = 2 * time.Second

func (c *cmdEnv) progressBar() *benchProgress {
	f, ok := c.Stderr.(*os.File)
	return &benchProgress{enabled: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

func (p *benchProgress) update(step, steps int, what string) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil {
		if time.Since(p.start) < progressAfter || step >= steps {
			return
		}
		p.bar = progressbar.NewOptions(steps,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionClearOnFinish(),
		)
		// Keep the elapsed time moving during a long step.
		p.done = make(chan struct{})
		go func(bar *progressbar.ProgressBar, done chan struct{}) {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					p.mu.Lock()
					bar.Add(0)
					p.mu.Unlock()
				case <-done:
					return
				}
			}
		}(p.bar, p.done)
	}
	p.bar.Describe(what)
	p.bar.Set(step)
}

func (p *benchProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		close(p.done)
		p.bar.Finish()
		p.bar.Clear()
		p.bar = nil
	}
}

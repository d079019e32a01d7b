package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	core "github.com/snappea/snappea/daemon"
	"github.com/snappea/snappea/foreman"
)

type runFlags struct {
	data            dataFlags
	log             logFlags
	workers, batch  int
	gracefulTimeout time.Duration
	pollInterval    time.Duration
	stuckAfter      time.Duration
	sentryDSN       string
	metricsAddr     string
	dashboard       dashboardFlags
	statsRetention  time.Duration
	failedRetention time.Duration
	failedMax       int
	schedules       string
	cpuProfile      string
	check           bool
	procs           procFlags
	maxRunning      taskLimits
	retryLost       taskNames
}

func (c *cmdEnv) runCommand() command {
	var f runFlags
	var fs *flag.FlagSet
	return command{
		name: "run", summary: "run the daemon in the foreground until TERM or INT",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("run", "", "Runs the daemon in the foreground: claims queued tasks and runs them.\nSee 'snappea help' for the signals it answers.")
				f.data.registerQueue(fs)
				f.data.registerArgsSize(fs)
				f.log.register(fs)
				fs.IntVar(&f.workers, "workers", 16, withEnv("workers", "number of tasks run at once, at most 10000 ('snappea workers N' changes it while running)"))
				fs.IntVar(&f.batch, "batch", 0, withEnv("batch", "most tasks taken per claim; never more than the free workers (default: --workers)"))
				fs.DurationVar(&f.gracefulTimeout, "graceful-timeout", 10*time.Second, withEnv("graceful-timeout", "on stop or reload, how long running tasks may finish before their contexts are cancelled"))
				fs.DurationVar(&f.pollInterval, "poll-interval", 3*time.Second, withEnv("poll-interval", "how often to look for tasks without a wakeup (a fallback; wakeups are immediate)"))
				fs.DurationVar(&f.stuckAfter, "stuck-after", time.Minute, withEnv("stuck-after", "'snappea health' fails when ready tasks have waited this long with no worker busy and the daemon not paused"))
				fs.StringVar(&f.sentryDSN, "sentry-dsn", "", withEnv("sentry-dsn", "report failed and panicking tasks to this Sentry DSN"))
				fs.StringVar(&f.metricsAddr, "metrics-addr", "", withEnv("metrics-addr", "serve Prometheus metrics on this HOST:PORT at /metrics, e.g. 127.0.0.1:9090 (default: off)"))
				fs.StringVar(&f.dashboard.addr, "dashboard-addr", "", withEnv("dashboard-addr", "serve the web dashboard on this HOST:PORT; a bare port (:8080) is on 127.0.0.1; any other host requires --dashboard-auth-file or --dashboard-token (default: off)"))
				fs.StringVar(&f.dashboard.authFile, "dashboard-auth-file", "", withEnv("dashboard-auth-file", "file whose first line is USER:PASSWORD (basic authentication) or a token (bearer) for the dashboard"))
				fs.StringVar(&f.dashboard.token, "dashboard-token", "", withEnv("dashboard-token", "bearer token for the dashboard (also its basic-auth password); prefer the environment variable, which ps does not show"))
				fs.BoolVar(&f.dashboard.showArgs, "dashboard-show-args", false, withEnv("dashboard-show-args", "show the failed tasks' arguments in the dashboard (they can hold secrets)"))
				fs.BoolVar(&f.dashboard.readOnly, "dashboard-read-only", false, withEnv("dashboard-read-only", "the dashboard shows and changes nothing: no pause, retry, cancel or purge"))
				fs.DurationVar(&f.statsRetention, "stats-retention", core.DefaultStatsRetention, withEnv("stats-retention", "keep per-minute task statistics this long ('snappea stats'); 0 disables them"))
				fs.DurationVar(&f.failedRetention, "failed-retention", core.DefaultFailedRetention, withEnv("failed-retention", "keep the record of failed tasks this long ('snappea failed'); 0: no age limit"))
				fs.IntVar(&f.failedMax, "failed-max", core.DefaultFailedMax, withEnv("failed-max", "keep at most this many failed tasks, the newest; 0: no limit"))
				fs.StringVar(&f.schedules, "schedules", "", withEnv("schedules", "JSON file of periodic tasks to enqueue (see 'snappea help schedules')"))
				f.procs.register(fs)
				fs.StringVar(&f.cpuProfile, "cpuprofile", "", withEnv("cpuprofile", "write a CPU profile of the whole run to this file (for go tool pprof)"))
				fs.Var(&f.maxRunning, "max-running", "TASK=N: run at most N tasks of that name at once, across every daemon of the database (repeatable; over the task definition's MaxRunning)")
				fs.Var(&f.retryLost, "retry-lost", "TASK: enqueue that task again, its attempt counted, when its daemon dies or stops at its graceful deadline while it runs, instead of recording it lost (repeatable; for idempotent tasks, as the definition's RetryLost)")
				fs.BoolVar(&f.check, "check", false, "check the configuration and open the database, then exit without running (a reload runs this first)")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) > 0 {
				return c.usagef("run", "unexpected arguments %q", args)
			}
			if err := f.validate(func(name string) string { return c.given(fs, name) }); err != nil {
				return c.usagef("run", "%v", err)
			}
			return c.runDaemon(ctx, &f)
		},
	}
}

// validate checks the flags that need more than their type. given names a
// flag with its value as the user set it (see cmdEnv.given); nil: as a
// flag.
func (f *runFlags) validate(given ...func(name string) string) error {
	name := func(n string, v any) string { return fmt.Sprintf("--%s %v", n, v) }
	if len(given) > 0 && given[0] != nil {
		name = func(n string, _ any) string { return given[0](n) }
	}
	switch {
	case f.workers < 1 || f.workers > foreman.MaxWorkers:
		return fmt.Errorf("%s: want 1 to %d", name("workers", f.workers), foreman.MaxWorkers)
	case f.batch < 0:
		return fmt.Errorf("%s: want at least 1 (0 means --workers)", name("batch", f.batch))
	case f.pollInterval <= 0:
		return fmt.Errorf("%s: want a positive duration", name("poll-interval", f.pollInterval))
	case f.gracefulTimeout < 0:
		return fmt.Errorf("%s: want zero or more", name("graceful-timeout", f.gracefulTimeout))
	case f.stuckAfter <= 0:
		return fmt.Errorf("%s: want a positive duration", name("stuck-after", f.stuckAfter))
	case f.statsRetention < 0:
		return fmt.Errorf("%s: want zero (off) or more", name("stats-retention", f.statsRetention))
	case f.failedRetention < 0:
		return fmt.Errorf("%s: want zero (no limit) or more", name("failed-retention", f.failedRetention))
	case f.failedMax < 0:
		return fmt.Errorf("%s: want zero (no limit) or more", name("failed-max", f.failedMax))
	}
	if _, _, err := f.dashboard.check(); err != nil {
		return err
	}
	return f.procs.validate(f.workers, name)
}

// startCPUProfile profiles the process into path until the returned func
// is called.
func startCPUProfile(path string) (stop func(), err error) {
	pf, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		pf.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		pf.Close()
	}, nil
}

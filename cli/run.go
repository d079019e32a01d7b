package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/pidfile"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/report"
	"github.com/snappea/snappea/wakeup"
)

type runFlags struct {
	data            dataFlags
	log             logFlags
	workers, batch  int
	gracefulTimeout time.Duration
	pollInterval    time.Duration
	sentryDSN       string
	cpuProfile      string
}

func (c *cmdEnv) runCommand() command {
	var f runFlags
	var fs *flag.FlagSet
	return command{
		name: "run", summary: "run the daemon in the foreground until TERM or INT",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("run", "", "Runs the daemon in the foreground: claims queued tasks and runs them.")
				f.data.registerQueue(fs)
				f.log.register(fs)
				fs.IntVar(&f.workers, "workers", 16, withEnv("workers", "number of tasks run at once"))
				fs.IntVar(&f.batch, "batch", 0, withEnv("batch", "most tasks taken per claim; never more than the free workers (default: --workers)"))
				fs.DurationVar(&f.gracefulTimeout, "graceful-timeout", 10*time.Second, withEnv("graceful-timeout", "on stop, how long running tasks may finish before their contexts are cancelled"))
				fs.DurationVar(&f.pollInterval, "poll-interval", 3*time.Second, withEnv("poll-interval", "how often to look for tasks without a wakeup (a fallback; wakeups are immediate)"))
				fs.StringVar(&f.sentryDSN, "sentry-dsn", "", withEnv("sentry-dsn", "report failed and panicking tasks to this Sentry DSN"))
				fs.StringVar(&f.cpuProfile, "cpuprofile", "", withEnv("cpuprofile", "write a CPU profile of the whole run to this file (for go tool pprof)"))
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) > 0 {
				fmt.Fprintf(c.Stderr, "snappea run: unexpected arguments %q\n", args)
				return ExitUsage
			}
			return c.runDaemon(ctx, &f)
		},
	}
}

func (c *cmdEnv) runDaemon(ctx context.Context, f *runFlags) int {
	log, err := f.log.logger(c.Stderr)
	if err != nil {
		fmt.Fprintf(c.Stderr, "snappea run: %v\n", err)
		return ExitUsage
	}
	switch {
	case f.workers < 1:
		err = fmt.Errorf("--workers %d: want at least 1", f.workers)
	case f.batch < 0:
		err = fmt.Errorf("--batch %d: want at least 1 (0 means --workers)", f.batch)
	case f.pollInterval <= 0:
		err = fmt.Errorf("--poll-interval %v: want a positive duration", f.pollInterval)
	case f.gracefulTimeout < 0:
		err = fmt.Errorf("--graceful-timeout %v: want zero or more", f.gracefulTimeout)
	}
	if err != nil {
		fmt.Fprintf(c.Stderr, "snappea run: %v\n", err)
		return ExitUsage
	}
	var reporter foreman.Reporter
	var sentry *report.Sentry
	if f.sentryDSN != "" {
		sentry, err = report.NewSentry(report.Config{DSN: f.sentryDSN, Release: Version(), Logger: log})
		if err != nil {
			fmt.Fprintf(c.Stderr, "snappea run: --sentry-dsn: %v\n", err)
			return ExitUsage
		}
		reporter = sentry
	}

	// Start-up order: the lock (so nothing below races another daemon),
	// the pid, migrations, the wakeup directory cleared and watched, and
	// only then the foreman, which drains the backlog before it sleeps.
	lock, err := pidfile.Acquire(f.data.lockPath(), f.data.pidPath())
	if err != nil {
		var le *pidfile.LockedError
		if errors.As(err, &le) {
			log.Error("not starting: " + le.Error())
			return ExitLocked
		}
		log.Error("not starting: cannot take the lock", "err", err)
		return ExitError
	}
	defer lock.Release()

	qcfg := f.data.queueConfig()
	qcfg.Logger = log
	q, err := queue.Open(ctx, qcfg)
	if err != nil {
		log.Error("not starting", "err", err)
		return ExitError
	}
	defer q.Close()
	qcfg = q.Config()

	w, err := wakeup.New(wakeup.Config{Dir: qcfg.WakeupDir, Logger: log})
	if err != nil {
		log.Error("not starting", "err", err)
		return ExitError
	}
	defer w.Close()

	fm, err := foreman.New(foreman.Config{
		Source: q, Waker: w, Runner: c.reg, Reporter: reporter,
		Workers: f.workers, Batch: f.batch,
		PollInterval: f.pollInterval, GracefulTimeout: f.gracefulTimeout,
		Logger: log,
	})
	if err != nil {
		log.Error("not starting", "err", err)
		return ExitUsage
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		// The first signal starts the stop; later ones must not move its
		// deadline, so they are only logged.
		select {
		case s := <-sigs:
			log.Info("received signal, stopping", "signal", s.String(), "graceful_timeout", f.gracefulTimeout)
			cancel()
		case <-done:
			return
		}
		for {
			select {
			case s := <-sigs:
				log.Info("already stopping; the graceful deadline is unchanged", "signal", s.String())
			case <-done:
				return
			}
		}
	}()

	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			log.Error("not starting", "err", err)
			return ExitError
		}
		defer stop()
	}

	log.Info("snappea started", "pid", os.Getpid(), "version", Version(), "db", qcfg.DBPath,
		"wakeup_dir", qcfg.WakeupDir, "tasks", len(c.reg.Names()))
	err = fm.Run(ctx)
	if sentry != nil && !sentry.Flush(5*time.Second) {
		log.Warn("some error reports were not sent before the timeout")
	}
	if err != nil {
		log.Error("foreman stopped with an error", "err", err)
		return ExitError
	}
	return ExitOK
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

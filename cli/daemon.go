package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snappea/snappea/control"
	core "github.com/snappea/snappea/daemon" // the daemon's assembly; this file adds the command line
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/pidfile"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/report"
	"github.com/snappea/snappea/storage/postgres"
)

// Environment variables a reloading daemon passes to the program it
// re-executes. They are internal: not flags, and stripped from the
// environment of the processes the daemon starts.
const (
	envInternal   = "SNAPPEA_INTERNAL_"
	envLockFD     = envInternal + "LOCK_FD"
	envControlFD  = envInternal + "CONTROL_FD"
	envGeneration = envInternal + "GENERATION"
	envPaused     = envInternal + "PAUSED"
	envStartedAt  = envInternal + "STARTED_AT"
)

// reloadCheckTimeout bounds the --check run a reload starts first.
const reloadCheckTimeout = 30 * time.Second

// daemon is one run of 'snappea run': the daemon package's Daemon, which
// assembles everything that runs, and what the command line adds around it:
// the lock handed across a reload, the control socket, systemd's notify
// protocol, and the operator's actions, which come from signals and from
// the control socket.
type daemon struct {
	c       *cmdEnv
	f       *runFlags
	log     *slog.Logger
	logFile *logFile
	exe     string

	generation int
	startedAt  time.Time

	lock   *pidfile.Lock
	q      *queue.Queue
	dm     *core.Daemon
	fm     *foreman.Foreman // dm's
	ctl    *control.Server
	sentry *report.Sentry
	notify *notifier // systemd's notify protocol (see notify.go)

	cancelRun context.CancelFunc // starts the graceful stop

	mu        sync.Mutex
	stopping  bool // a stop was asked for; it wins over a reload
	reloading bool // drain, then re-execute
	checking  bool // a reload's check is running
	hardStop  bool // running tasks were cancelled on request
	// cancelCheck ends the running check's process: a stop wins over the
	// reload it was for. checks is waited for before the daemon exits, so
	// that no check outlives it, still using the data directory.
	cancelCheck context.CancelFunc
	checks      sync.WaitGroup
}

func (c *cmdEnv) runDaemon(ctx context.Context, f *runFlags) int {
	log, logFile, err := f.log.logger(c.Stderr)
	if err != nil {
		fmt.Fprintf(c.Stderr, "snappea run: %v\n", err)
		return ExitUsage
	}
	if logFile != nil {
		defer logFile.Close()
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(c.Stderr, "snappea run: %v\n", err)
		return ExitUsage
	}
	d := &daemon{c: c, f: f, log: log, logFile: logFile, generation: 0, startedAt: time.Now()}
	if d.exe, err = os.Executable(); err != nil {
		log.Warn("cannot find this program's path; reload will not work", "err", err)
	}
	if f.check {
		return d.check(ctx)
	}
	return d.run(ctx)
}

// check is 'snappea run --check': everything start-up does short of taking
// the lock and running, so that a reload finds a broken binary or
// configuration before it stops the working one.
func (d *daemon) check(ctx context.Context) int {
	f := d.f
	if f.sentryDSN != "" {
		if _, err := report.NewSentry(report.Config{DSN: f.sentryDSN, Release: Version(), Logger: d.log}); err != nil {
			fmt.Fprintf(d.c.Stderr, "snappea run --check: --sentry-dsn: %v\n", err)
			return ExitUsage
		}
	}
	if f.metricsAddr != "" {
		if _, _, err := splitHostPort(f.metricsAddr); err != nil {
			fmt.Fprintf(d.c.Stderr, "snappea run --check: --metrics-addr: %v\n", err)
			return ExitUsage
		}
	}
	if _, err := d.loadSchedules(); err != nil {
		fmt.Fprintf(d.c.Stderr, "snappea run --check: %v\n", err)
		return ExitUsage
	}
	qcfg := f.data.queueConfig()
	qcfg.Logger = d.log
	q, err := queue.Open(ctx, qcfg)
	if err != nil {
		fmt.Fprintf(d.c.Stderr, "snappea run --check: %v\n", err)
		return ExitError
	}
	defer q.Close()
	if _, err := q.Stats(ctx); err != nil {
		fmt.Fprintf(d.c.Stderr, "snappea run --check: %v\n", err)
		return ExitError
	}
	fmt.Fprintf(d.c.Stdout, "configuration OK; database %s\n", f.data.where())
	return ExitOK
}

func (d *daemon) run(ctx context.Context) int {
	f, log := d.f, d.log
	d.notify = newNotifier(d.c.Getenv, log)
	inherited := d.c.Getenv(envLockFD) != ""
	if inherited {
		d.generation, _ = strconv.Atoi(d.c.Getenv(envGeneration))
		if ns, err := strconv.ParseInt(d.c.Getenv(envStartedAt), 10, 64); err == nil {
			d.startedAt = time.Unix(0, ns)
		}
	}

	if f.sentryDSN != "" {
		var err error
		d.sentry, err = report.NewSentry(report.Config{DSN: f.sentryDSN, Release: Version(), Logger: log})
		if err != nil {
			fmt.Fprintf(d.c.Stderr, "snappea run: --sentry-dsn: %v\n", err)
			return ExitUsage
		}
	}
	schedules, err := d.loadSchedules()
	if err != nil {
		fmt.Fprintf(d.c.Stderr, "snappea run: %v\n", err)
		return ExitUsage
	}

	// Start-up order: the lock (so nothing below races another daemon),
	// the pid, migrations, the wakeup directory cleared and watched (by
	// core.New), the control socket, and only then the foreman, which
	// drains the backlog before it sleeps.
	if code := d.takeLock(inherited); code != ExitOK {
		return code
	}
	handedOver := false
	defer func() {
		if !handedOver {
			d.lock.Release()
		}
	}()

	qcfg := f.data.queueConfig()
	qcfg.Logger = log
	if d.q, err = d.openQueue(ctx, qcfg); err != nil {
		if errors.Is(err, errStoppedWaiting) {
			return ExitOK
		}
		log.Error("not starting", "err", err)
		return ExitError
	}
	defer d.q.Close()
	qcfg = d.q.Config()

	var reporter foreman.Reporter
	if d.sentry != nil {
		reporter = d.sentry
	}
	d.dm, err = core.New(core.Config{
		Queue: d.q, Registry: d.c.reg, Lock: d.lock,
		Workers: f.workers, Batch: f.batch,
		PollInterval: f.pollInterval, GracefulTimeout: f.gracefulTimeout,
		StatsRetention:  zeroIsOff(f.statsRetention),
		FailedRetention: zeroIsOff(f.failedRetention),
		FailedMax:       zeroIsOff(f.failedMax),
		Schedules:       schedules, Reporter: reporter, MetricsAddr: f.metricsAddr,
		Services:    d.c.prog.Services,
		WatchFiles:  []core.WatchFile{{What: "control socket", Path: d.socketPath()}},
		DataDirGone: d.dataDirGone,
		StartPaused: d.c.Getenv(envPaused) == "1",
		Reloads:     d.generation,
		Processes:   d.processes(),
		IsolateAll:  f.procs.isolation == isolationProcess,
		MaxRunning:  f.maxRunning,
		RetryLost:   f.retryLost,
		Logger:      log,
	})
	if err != nil {
		log.Error("not starting", "err", err)
		if errors.Is(err, core.ErrInvalidConfig) {
			return ExitUsage
		}
		return ExitError
	}
	defer d.dm.Shutdown(context.Background()) // releases its wakeup watch if Run never ran
	d.fm = d.dm.Foreman()

	if err := d.listenControl(inherited); err != nil {
		log.Error("not starting", "err", err)
		return ExitError
	}
	go func() {
		if err := d.ctl.Run(context.Background()); err != nil {
			log.Error("control socket stopped serving", "err", err)
		}
	}()
	defer func() {
		if !handedOver {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			d.ctl.Shutdown(shutdownCtx)
			cancel()
		}
	}()

	stopDashboard, err := d.startDashboard()
	if err != nil {
		log.Error("not starting", "err", err)
		return ExitError
	}
	defer stopDashboard()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.cancelRun = cancel
	stopSignals := d.handleSignals()
	defer stopSignals()

	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			log.Error("not starting", "err", err)
			return ExitError
		}
		defer stop()
	}

	where := []any{"db", qcfg.DBPath, "wakeup_dir", qcfg.WakeupDir}
	if f.data.postgres() {
		where = []any{"db", f.data.where()}
	}
	log.Info("snappea started", append(append([]any{"pid", os.Getpid(), "version", Version()}, where...), "tasks", len(d.c.reg.Names()), "generation", d.generation,
		"control_socket", d.socketPath())...)
	notifyCtx, stopNotify := context.WithCancel(ctx)
	notifyDone := make(chan struct{})
	go func() {
		defer close(notifyDone)
		d.notify.run(notifyCtx, d.fm)
	}()
	// Run ends with the last statistics and error reports written, within
	// what is left of the graceful timeout.
	err = d.dm.Run(runCtx)
	stopNotify()
	<-notifyDone
	d.checks.Wait() // a check still running was cancelled by the stop
	if errors.Is(err, core.ErrDataDirGone) {
		return ExitDataDirGone
	}
	if err != nil {
		log.Error("foreman stopped with an error", "err", err)
		return ExitError
	}

	d.mu.Lock()
	reload := d.reloading && !d.stopping
	d.mu.Unlock()
	if !reload {
		d.notify.stopping()
		return ExitOK
	}
	// Hand the lock and the control socket over to the new program. From
	// here on this process must not release either.
	handedOver = true
	d.q.Close()
	err = d.reexec()
	// Only a failed exec returns.
	handedOver = false
	log.Error("reload failed: could not execute the new program; exiting", "err", err)
	return ExitError
}

// Backoff of the daemon's start while the PostgreSQL server is out of
// reach.
const (
	startRetryMin = 500 * time.Millisecond
	startRetryMax = 30 * time.Second
)

// errStoppedWaiting: TERM or INT came while the daemon waited for the
// database server at start.
var errStoppedWaiting = errors.New("stopped while waiting for the database server")

// openQueue opens the queue. On PostgreSQL, while the server cannot be
// reached (down, starting, out of connections), it says so and retries
// with a backoff from 0.5s doubling up to 30s, until TERM or INT; other
// errors (wrong credentials, a missing database, a newer schema) end the
// start at once.
func (d *daemon) openQueue(ctx context.Context, qcfg queue.Config) (*queue.Queue, error) {
	q, err := queue.Open(ctx, qcfg)
	if err == nil || !d.f.data.postgres() || !postgres.Unavailable(err) {
		return q, err
	}
	sctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	wait := startRetryMin
	for attempt := 1; ; attempt++ {
		d.log.Warn("cannot reach the PostgreSQL server; retrying", "err", err, "attempt", attempt, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-sctx.Done():
			t.Stop()
			d.log.Info("stopped before the PostgreSQL server could be reached")
			return nil, errStoppedWaiting
		case <-t.C:
		}
		wait = min(2*wait, startRetryMax)
		q, err = queue.Open(sctx, qcfg)
		if err == nil {
			d.log.Info("reached the PostgreSQL server", "attempts", attempt+1)
			return q, nil
		}
		if sctx.Err() != nil {
			return nil, errStoppedWaiting
		}
		if !postgres.Unavailable(err) {
			return nil, err
		}
	}
}

// takeLock acquires the single-instance lock, or adopts the one a
// reloading daemon passed on.
func (d *daemon) takeLock(inherited bool) int {
	f, log := d.f, d.log
	var err error
	if inherited {
		fd, perr := strconv.ParseUint(d.c.Getenv(envLockFD), 10, 31)
		if perr != nil {
			log.Error("not starting: bad "+envLockFD, "err", perr)
			return ExitError
		}
		d.lock, err = pidfile.Inherit(uintptr(fd), f.data.lockPath(), f.data.pidPath())
	} else {
		d.lock, err = pidfile.Acquire(f.data.lockPath(), f.data.pidPath())
	}
	if err != nil {
		var le *pidfile.LockedError
		if errors.As(err, &le) {
			log.Error("not starting: " + le.Error())
			return ExitLocked
		}
		log.Error("not starting: cannot take the lock", "err", err)
		return ExitError
	}
	return ExitOK
}

func (d *daemon) socketPath() string { return filepath.Join(d.f.data.dir, control.SocketFile) }

// listenControl opens the control socket, or adopts the listener a
// reloading daemon passed on.
func (d *daemon) listenControl(inherited bool) error {
	var err error
	if v := d.c.Getenv(envControlFD); inherited && v != "" {
		fd, perr := strconv.ParseUint(v, 10, 31)
		if perr != nil {
			return fmt.Errorf("bad %s: %w", envControlFD, perr)
		}
		unix.CloseOnExec(int(fd))
		d.ctl, err = control.ListenFile(os.NewFile(uintptr(fd), d.socketPath()), d, d.log)
	} else {
		d.ctl, err = control.Listen(d.socketPath(), d, d.log)
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// zeroIsOff maps a limit flag's 0 (off, or no limit) to core.Config's
// negative, whose zero is the default.
func zeroIsOff[T int | time.Duration](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// dataDirGone is told by the daemon that its files left their paths: it
// stops as on a signal, then run exits with ExitDataDirGone.
func (d *daemon) dataDirGone(err error) {
	d.stop(false, "data directory gone")
}

// handleSignals subscribes to the daemon's signals and acts on them in one
// goroutine, in the order they come, so that a burst can neither deadlock
// nor run two reloads; it returns the function that unsubscribes.
func (d *daemon) handleSignals() (stop func()) {
	sigs := make(chan os.Signal, 16)
	wanted := []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGTSTP, syscall.SIGCONT, syscall.SIGUSR1}
	// Under nohup, HUP is ignored at start: keep it that way.
	if !signal.Ignored(syscall.SIGHUP) {
		wanted = append(wanted, syscall.SIGHUP)
	}
	signal.Notify(sigs, wanted...)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ints int
		var lastInt time.Time
		for {
			var s os.Signal
			select {
			case s = <-sigs:
			case <-done:
				return
			}
			switch s {
			case syscall.SIGTERM:
				d.stop(false, "TERM")
			case syscall.SIGINT:
				// A second INT within a second is one keypress bouncing,
				// not an operator insisting.
				if ints > 0 && time.Since(lastInt) < time.Second {
					d.log.Info("INT again within a second; ignored (wait a second to escalate)")
					continue
				}
				ints++
				lastInt = time.Now()
				switch ints {
				case 1:
					d.stop(false, "INT")
				case 2:
					d.log.Warn("second INT: cancelling running tasks now; a third INT exits at once")
					d.stop(true, "INT")
				default:
					d.log.Error("third INT: exiting at once with status 130")
					d.c.exit(130)
				}
			case syscall.SIGHUP:
				go d.reload(context.Background(), "HUP")
			case syscall.SIGTSTP:
				d.fm.Pause()
			case syscall.SIGCONT:
				d.fm.Resume()
			case syscall.SIGUSR1:
				if d.logFile == nil {
					d.log.Info("USR1: not logging to a file (--log-file), nothing to reopen")
				} else if err := d.logFile.Reopen(); err != nil {
					d.log.Error("USR1: could not reopen the log file; still writing to the old one", "err", err)
				} else {
					d.log.Info("USR1: log file reopened", "path", d.logFile.path)
				}
			}
		}
	})
	return func() {
		signal.Stop(sigs)
		close(done)
		wg.Wait()
	}
}

// stop starts a graceful stop, or with now, cancels the running tasks at
// once. A repeated graceful stop changes nothing; a stop during a reload's
// drain turns it into a stop.
func (d *daemon) stop(now bool, why string) {
	d.mu.Lock()
	first := !d.stopping
	wasReloading := d.reloading && !d.stopping
	d.stopping = true
	if d.cancelCheck != nil {
		d.cancelCheck()
	}
	hard := now && !d.hardStop
	if now {
		d.hardStop = true
	}
	d.mu.Unlock()
	if first {
		d.notify.stopping()
	}
	switch {
	case hard:
		if first {
			d.log.Info("stopping now: cancelling running tasks", "signal", why)
		}
		go func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			d.dm.Shutdown(ctx)
		}()
		d.cancelRun()
	case first && wasReloading:
		d.log.Info("stop requested during a reload: stopping instead of re-executing", "signal", why)
	case first:
		d.log.Info("received signal, stopping", "signal", why, "graceful_timeout", d.f.gracefulTimeout)
		d.beginStop()
	default:
		d.log.Info("already stopping; the graceful deadline is unchanged", "signal", why)
	}
}

// beginStop starts the graceful stop: the daemon notes its deadline, the
// graceful timeout from now; a repeated stop never moves it.
func (d *daemon) beginStop() {
	d.cancelRun()
}

// Reload checks that the program on disk starts with this daemon's flags
// and, if it does, stops intake, lets running tasks finish within the
// graceful timeout, and re-executes it in this process (see run). It
// returns once the drain has begun, or with the reason it refused.
func (d *daemon) Reload(ctx context.Context) error {
	return d.reload(ctx, "control socket")
}

// reload is Reload for a request from why (HUP, the control socket),
// which both go through: a refusal is logged the same way whoever asked.
func (d *daemon) reload(ctx context.Context, why string) error {
	err := d.tryReload(ctx)
	if err != nil {
		d.log.Error("reload refused; still running unchanged", "err", err, "signal", why)
	}
	return err
}

func (d *daemon) tryReload(ctx context.Context) error {
	d.mu.Lock()
	switch {
	case d.stopping:
		d.mu.Unlock()
		return fmt.Errorf("%w: the daemon is stopping", control.ErrConflict)
	case d.reloading || d.checking:
		d.mu.Unlock()
		return fmt.Errorf("%w: a reload is already under way", control.ErrConflict)
	}
	d.checking = true
	ctx, d.cancelCheck = context.WithCancel(ctx)
	d.checks.Add(1)
	defer d.checks.Done()
	d.mu.Unlock()
	d.log.Info("reload: checking the program on disk with this daemon's flags", "program", d.exe)
	err := d.checkNewProgram(ctx)
	d.mu.Lock()
	d.checking = false
	d.cancelCheck()
	d.cancelCheck = nil
	if err == nil && d.stopping {
		err = fmt.Errorf("%w: the daemon is stopping", control.ErrConflict)
	}
	if err == nil {
		d.reloading = true
	}
	d.mu.Unlock()
	if err != nil {
		return err
	}
	d.log.Info("reload: check passed; draining running tasks before re-executing",
		"graceful_timeout", d.f.gracefulTimeout)
	d.notify.reloading()
	d.beginStop()
	return nil
}

// checkNewProgram runs 'PROGRAM run --check' with this daemon's command
// line and environment.
func (d *daemon) checkNewProgram(ctx context.Context) error {
	if d.exe == "" {
		return errors.New("reload: this program's path is unknown")
	}
	args := d.runArgs()
	ctx, cancel := context.WithTimeout(ctx, reloadCheckTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.exe, append(append([]string{"run"}, args...), "--check")...)
	cmd.Env = childEnv(externalEnv(os.Environ()))
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return fmt.Errorf("reload check '%s run --check' failed (%v): %s", d.exe, err, msg)
	}
	return nil
}

// runArgs returns the flags this daemon was started with: what follows
// the command name, "run", on its command line.
func (d *daemon) runArgs() []string {
	if len(os.Args) < 2 {
		return nil
	}
	return os.Args[2:]
}

// externalEnv drops the internal hand-over variables from env.
func externalEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, envInternal) {
			out = append(out, kv)
		}
	}
	return out
}

// reexec replaces this process with the program on disk, with the same
// pid, command line and environment, passing on the lock, the control
// socket, the generation and the paused state. It returns only on error.
func (d *daemon) reexec() error {
	lockFD := d.lock.File().Fd()
	ctlFile, err := d.ctl.File()
	if err != nil {
		return fmt.Errorf("pass on the control socket: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	d.ctl.ShutdownForExec(ctx)
	cancel()
	ctlFD := ctlFile.Fd()
	for _, fd := range []uintptr{lockFD, ctlFD} {
		if _, err := unix.FcntlInt(fd, unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("keep descriptor %d open across exec: %w", fd, err)
		}
	}
	paused := "0"
	if d.fm.Paused() {
		paused = "1"
	}
	env := append(externalEnv(os.Environ()),
		envLockFD+"="+strconv.FormatUint(uint64(lockFD), 10),
		envControlFD+"="+strconv.FormatUint(uint64(ctlFD), 10),
		envGeneration+"="+strconv.Itoa(d.generation+1),
		envStartedAt+"="+strconv.FormatInt(d.startedAt.UnixNano(), 10),
		envPaused+"="+paused,
	)
	d.log.Info("reload: re-executing", "program", d.exe, "generation", d.generation+1)
	if d.logFile != nil {
		d.logFile.Close()
	}
	return syscall.Exec(d.exe, os.Args, env)
}

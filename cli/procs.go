package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/snappea/snappea/control"
	core "github.com/snappea/snappea/daemon"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/prefork"
	"github.com/snappea/snappea/registry"
)

// childCommand is the hidden subcommand a worker process of the daemon's
// process pool runs: the same binary, so the same registry. It is not in
// the help: only the pool starts it (prefork.ServeChild refuses to run
// without the socket the pool passes).
const childCommand = "worker-process"

// Isolation modes of 'snappea run --isolation'.
const (
	isolationGoroutine = "goroutine"
	isolationProcess   = "process"
)

// procFlags are the flags of 'snappea run' for the process pool.
type procFlags struct {
	isolation       string
	min, max        optionalInt
	idle            nonNegativeDuration
	maxTasksPerProc nonNegativeInt
	maxRSS          sizeFlag
}

func (p *procFlags) register(fs *flag.FlagSet) {
	p.isolation = isolationGoroutine
	fs.Var(&choiceFlag{&p.isolation, []string{isolationGoroutine, isolationProcess}}, "isolation",
		withEnv("isolation", "where tasks run: goroutine (tasks whose definition says Isolated still run in child processes) or process (every task in a child process)"))
	fs.Lookup("isolation").DefValue = isolationGoroutine
	fs.Var(&p.min, "procs-min", withEnv("procs-min", "child processes kept started and ready for isolated tasks (`N`; default 1 when any task is isolated, else 0: no pool)"))
	fs.Var(&p.max, "procs-max", withEnv("procs-max", "the most child processes at once (`N`; default: --workers)"))
	p.idle = nonNegativeDuration(time.Minute)
	fs.Var(&p.idle, "procs-idle", withEnv("procs-idle", "child processes above --procs-min exit after being idle this long (a `duration`; 0: never)"))
	fs.Var(&p.maxTasksPerProc, "max-tasks-per-proc", withEnv("max-tasks-per-proc", "replace a child process after it has run `N` tasks (0: no limit)"))
	fs.Var(&p.maxRSS, "max-rss-per-proc", withEnv("max-rss-per-proc", "replace a child process after a task when its resident memory is above this `size`, such as 512MiB (0: no limit)"))
}

// validate checks the pool's flags against --workers.
func (p *procFlags) validate(workers int, name func(n string, v any) string) error {
	maxProcs := workers
	if p.max.set {
		maxProcs = p.max.n
	}
	switch {
	case p.max.set && (p.max.n < 1 || p.max.n > foreman.MaxWorkers):
		return fmt.Errorf("%s: want 1 to %d", name("procs-max", p.max.n), foreman.MaxWorkers)
	case p.min.set && p.min.n > maxProcs:
		if !p.max.set {
			return fmt.Errorf("%s: more than --procs-max, whose default is --workers (%d)", name("procs-min", p.min.n), workers)
		}
		return fmt.Errorf("%s: more than %s", name("procs-min", p.min.n), name("procs-max", p.max.n))
	}
	return nil
}

// anyIsolated reports whether some task of reg runs in a child process.
func anyIsolated(reg *registry.Registry) bool {
	for _, name := range reg.Names() {
		if reg.Options(name).Isolated {
			return true
		}
	}
	return false
}

// processes is the daemon's process pool configuration: nil when no task
// is isolated, which starts no pool.
func (d *daemon) processes() *prefork.Config {
	p := &d.f.procs
	if p.isolation != isolationProcess && !anyIsolated(d.c.reg) {
		return nil
	}
	cfg := &prefork.Config{
		Command:         d.childCommand,
		Min:             1,
		Max:             d.f.workers,
		Idle:            time.Duration(p.idle),
		MaxTasksPerProc: int(p.maxTasksPerProc),
		MaxRSS:          int64(p.maxRSS),
		Logger:          d.log,
	}
	if p.min.set {
		cfg.Min = p.min.n
		if cfg.Min == 0 {
			cfg.Min = -1 // prefork's "none": children start on demand
		}
	}
	if p.max.set {
		cfg.Max = p.max.n
	}
	if cfg.Idle == 0 {
		cfg.Idle = -1 // prefork's "never"
	}
	return cfg
}

// childCommand is a new worker process: this very binary (/proc/self/exe,
// not the path, which a deploy may have replaced: the children's registry
// is the parent's until a reload re-executes the parent), with the
// daemon's log format and level. Its records go where the daemon's go;
// what handlers print on stdout goes to the daemon's stdout. The
// environment is the daemon's without the variables of a reload's
// hand-over or of systemd's notify protocol, which belong to the daemon.
func (d *daemon) childCommand() *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", childCommand, "--log-format", d.f.log.format, "--log-level", d.f.log.level)
	if d.exe != "" {
		cmd.Args[0] = d.exe
	}
	cmd.Env = childEnv(externalEnv(os.Environ()))
	cmd.Stdout = d.c.Stdout
	if d.logFile != nil {
		cmd.Stderr = d.logFile
	} else {
		cmd.Stderr = d.c.Stderr
	}
	return cmd
}

// runChild is the hidden subcommand: serve the pool's jobs with the
// registry until the parent closes the socket or sends TERM. The signals
// an operator sends to the daemon's process group (INT from a terminal,
// HUP, TSTP) are the daemon's to act on: the child ignores them and
// finishes its task, and the daemon decides.
func (c *cmdEnv) runChild(ctx context.Context, args []string) int {
	var lf logFlags
	fs := flag.NewFlagSet("snappea "+childCommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lf.register(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(c.Stderr, "snappea %s: started by the daemon's process pool, not by hand (%v %q)\n", childCommand, err, fs.Args())
		return ExitUsage
	}
	lf.file = ""
	log, _, err := lf.logger(c.Stderr)
	if err != nil {
		fmt.Fprintf(c.Stderr, "snappea %s: %v\n", childCommand, err)
		return ExitUsage
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP, syscall.SIGTSTP, syscall.SIGUSR1)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	run := prefork.RunnerFunc(func(ctx context.Context, name string, args []byte) error {
		j, _ := prefork.JobFrom(ctx)
		ctx = registry.WithInfo(ctx, registry.Info{ID: j.ID, Name: j.Name, EnqueuedAt: j.EnqueuedAt, Logger: log,
			Attempt: j.Attempt, MaxAttempts: j.MaxAttempts})
		return c.reg.Run(ctx, name, args)
	})
	if err := prefork.ServeChild(ctx, run); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(c.Stderr, "snappea %s: %v\n", childCommand, err)
		return ExitError
	}
	return ExitOK
}

// procStatus fills in the process pool's part of the status.
func procStatus(dm *core.Daemon, out *control.Status) {
	pool := dm.Processes()
	out.Procs = []control.Proc{}
	if pool == nil {
		return
	}
	s := pool.Snapshot()
	for _, p := range s.Procs {
		out.Procs = append(out.Procs, control.Proc{PID: p.PID, State: p.State.String(), TaskID: p.TaskID, Task: p.Task,
			RSSBytes: p.RSSBytes, TasksDone: p.TasksDone, StartedAt: p.StartedAt})
	}
	out.ProcPool = &control.ProcPool{Min: s.Min, Max: s.Max, Waiting: s.Waiting, Starts: s.Starts, Restarts: s.Restarts,
		Deaths: s.Deaths, Kills: s.Kills, SIGKILLs: s.SIGKILLs, Retired: s.Retired}
}

// SetProcs changes the process pool's limits.
func (d *daemon) SetProcs(ctx context.Context, l control.ProcLimits) error {
	pool := d.dm.Processes()
	if pool == nil {
		return fmt.Errorf("%w: this daemon runs no child processes (no task is isolated; see 'snappea run --isolation')", control.ErrConflict)
	}
	s := pool.Snapshot()
	minProcs, maxProcs := s.Min, s.Max
	if l.Min != nil {
		minProcs = *l.Min
	}
	if l.Max != nil {
		maxProcs = *l.Max
	}
	if maxProcs > foreman.MaxWorkers {
		return fmt.Errorf("%w: max %d is more than the limit of %d", control.ErrInvalid, maxProcs, foreman.MaxWorkers)
	}
	if minProcs > maxProcs {
		return fmt.Errorf("%w: min %d is more than max %d", control.ErrInvalid, minProcs, maxProcs)
	}
	setMin := minProcs
	if setMin == 0 {
		setMin = -1
	}
	if err := pool.SetLimits(setMin, maxProcs); err != nil {
		return fmt.Errorf("%w: %w", control.ErrInvalid, err)
	}
	d.log.Info("worker process limits changed", "from_min", s.Min, "from_max", s.Max, "min", minProcs, "max", maxProcs)
	return nil
}

// optionalInt is a flag of a whole number, zero or more, that knows
// whether it was set, for a default that depends on other flags. Unset,
// it prints as "", so the usage shows the default its text describes.
type optionalInt struct {
	n   int
	set bool
}

func (o *optionalInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.n)
}

func (o *optionalInt) Want() string { return "zero or more, " + wantInt }

func (o *optionalInt) Get() any { return o.n }

func (o *optionalInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return errWant(o.Want())
	}
	o.n, o.set = v, true
	return nil
}

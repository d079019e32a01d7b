package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/pidfile"
	"github.com/snappea/snappea/stats"
)

// daemonCommand is a command that asks the running daemon to do something
// through its control socket, each request bounded by --control-timeout.
func (c *cmdEnv) daemonCommand(name, args, summary, help string, extra func(fs *flag.FlagSet),
	do func(ctx context.Context, call *daemonCall, args []string) int) command {
	var (
		data dataFlags
		ctl  controlFlags
		fs   *flag.FlagSet
	)
	return command{
		name: name, summary: summary,
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet(name, args, help)
				data.register(fs)
				ctl.register(fs)
				if extra != nil {
					extra(fs)
				}
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			pid, err := pidfile.Running(data.lockPath())
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea %s: %v\n", name, err)
				return ExitError
			}
			if pid == 0 {
				fmt.Fprintf(c.Stderr, "snappea %s: no daemon is running on %s\n", name, data.dir)
				return ExitError
			}
			return do(ctx, c.daemonCall(name, &data, &ctl, pid), args)
		},
	}
}

// fail prints a command's error and returns ExitError.
func (c *cmdEnv) fail(name string, err error) int {
	fmt.Fprintf(c.Stderr, "snappea %s: %v\n", name, err)
	return ExitError
}

func (c *cmdEnv) pauseCommand() command {
	return c.daemonCommand("pause", "", "stop claiming tasks (as TSTP); running tasks go on",
		"Pauses the daemon: it claims no tasks until resumed; running tasks go on. Same as TSTP.", nil,
		func(ctx context.Context, call *daemonCall, args []string) int {
			if err := call.do(ctx, (*control.Client).Pause); err != nil {
				return call.fail(err)
			}
			fmt.Fprintf(c.Stderr, "paused pid %d\n", call.pid)
			return ExitOK
		})
}

func (c *cmdEnv) resumeCommand() command {
	return c.daemonCommand("resume", "", "claim tasks again after pause (as CONT)",
		"Resumes a paused daemon. Same as CONT.", nil,
		func(ctx context.Context, call *daemonCall, args []string) int {
			if err := call.do(ctx, (*control.Client).Resume); err != nil {
				return call.fail(err)
			}
			fmt.Fprintf(c.Stderr, "resumed pid %d\n", call.pid)
			return ExitOK
		})
}

func (c *cmdEnv) reloadCommand() command {
	var (
		wait    bool
		timeout time.Duration
	)
	return c.daemonCommand("reload", "", "check the program on disk, drain, and re-execute it in place (as HUP)",
		"Reloads the daemon in place, as HUP does: the program on disk is first run with the\n"+
			"daemon's flags and --check; if that fails, the daemon keeps running unchanged and\n"+
			"this command says why. Otherwise the daemon stops intake, lets running tasks finish\n"+
			"within its graceful timeout and re-executes itself with the same pid, keeping its\n"+
			"lock, its control socket and its paused state. Queued tasks are untouched.",
		func(fs *flag.FlagSet) {
			fs.BoolVar(&wait, "wait", false, "return only when the new program answers")
			fs.DurationVar(&timeout, "timeout", time.Minute, "with --wait, give up after this long")
		},
		func(ctx context.Context, call *daemonCall, args []string) int {
			var before *control.Status
			if err := call.do(ctx, func(cl *control.Client, ctx context.Context) (err error) {
				before, err = cl.Status(ctx)
				return err
			}); err != nil {
				return call.fail(err)
			}
			// The answer comes after the check of the new program, which
			// takes up to reloadCheckTimeout.
			call.timeout = max(call.timeout, reloadCheckTimeout+5*time.Second)
			if err := call.do(ctx, (*control.Client).Reload); err != nil {
				return call.fail(err)
			}
			fmt.Fprintf(c.Stderr, "reload accepted: pid %d is draining and will re-execute\n", call.pid)
			if !wait {
				return ExitOK
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return c.fail("reload", fmt.Errorf("no new generation answered within %s", timeout))
				case <-tick.C:
				}
				var st *control.Status
				err := call.do(ctx, func(cl *control.Client, ctx context.Context) (err error) {
					st, err = cl.Status(ctx)
					return err
				})
				if err == nil && st.Generation > before.Generation {
					fmt.Fprintf(c.Stderr, "reloaded: pid %d, generation %d, %s\n", st.PID, st.Generation, st.State)
					return ExitOK
				}
			}
		})
}

func (c *cmdEnv) workersCommand() command {
	var procsMin, procsMax optionalInt
	cmd := c.daemonCommand("workers", "[N]", "show or change the number of workers while running",
		"Without N, shows how many workers are busy. With N, 1 to 10000, resizes the pool: growing\n"+
			"takes effect at once; shrinking lets running tasks finish and claims again below N.\n"+
			"--procs-min and --procs-max change the limits of the child processes that run isolated\n"+
			"tasks (see 'snappea run --isolation'): more start at once for a higher minimum; idle ones\n"+
			"above a lower maximum exit at once, busy ones after their task.",
		func(fs *flag.FlagSet) {
			fs.Var(&procsMin, "procs-min", "change the child processes kept ready to `N`")
			fs.Var(&procsMax, "procs-max", "change the most child processes at once to `N` (1 or more)")
		},
		func(ctx context.Context, call *daemonCall, args []string) int {
			if procsMin.set || procsMax.set {
				var l control.ProcLimits
				if procsMin.set {
					l.Min = &procsMin.n
				}
				if procsMax.set {
					l.Max = &procsMax.n
				}
				if err := call.do(ctx, func(cl *control.Client, ctx context.Context) error {
					return cl.SetProcs(ctx, l)
				}); err != nil {
					return call.fail(err)
				}
				if len(args) == 0 {
					var st *control.Status
					if err := call.do(ctx, func(cl *control.Client, ctx context.Context) (err error) {
						st, err = cl.Status(ctx)
						return err
					}); err != nil {
						return call.fail(err)
					}
					if pp := st.ProcPool; pp != nil {
						fmt.Fprintf(c.Stderr, "pid %d now keeps %d to %d child processes\n", call.pid, pp.Min, pp.Max)
					}
					return ExitOK
				}
			}
			if len(args) == 0 {
				var st *control.Status
				if err := call.do(ctx, func(cl *control.Client, ctx context.Context) (err error) {
					st, err = cl.Status(ctx)
					return err
				}); err != nil {
					return call.fail(err)
				}
				fmt.Fprintf(c.Stdout, "%d of %d busy\n", st.WorkersBusy, st.WorkersTotal)
				return ExitOK
			}
			n, _ := strconv.Atoi(args[0]) // checked below, before the daemon is looked for
			if err := call.do(ctx, func(cl *control.Client, ctx context.Context) error {
				return cl.SetWorkers(ctx, n)
			}); err != nil {
				return call.fail(err)
			}
			fmt.Fprintf(c.Stderr, "pid %d now has %d workers\n", call.pid, n)
			return ExitOK
		})
	// A bad N is a usage error, daemon or not.
	run := cmd.run
	cmd.run = func(ctx context.Context, args []string) int {
		if len(args) > 0 {
			n, err := strconv.Atoi(args[0])
			if len(args) > 1 || err != nil || n < 1 || n > foreman.MaxWorkers {
				return c.usagef("workers", "want one number of workers, 1 to %d; got %q", foreman.MaxWorkers, args)
			}
		}
		if procsMax.set && (procsMax.n < 1 || procsMax.n > foreman.MaxWorkers) {
			return c.usagef("workers", "--procs-max %d: want 1 to %d", procsMax.n, foreman.MaxWorkers)
		}
		if procsMin.set && procsMax.set && procsMin.n > procsMax.n {
			return c.usagef("workers", "--procs-min %d: more than --procs-max %d", procsMin.n, procsMax.n)
		}
		return run(ctx, args)
	}
	return cmd
}

func (c *cmdEnv) healthCommand() command {
	return c.daemonCommand("health", "", "exit 0 if the daemon is healthy, else 1 with the reason",
		"Exits 0 when the daemon runs, its main loop answers and its queue is not stuck (ready\n"+
			"tasks waiting longer than the daemon's --stuck-after while no worker is busy and it is\n"+
			"not paused). Otherwise prints one line saying why and exits 1. For Docker HEALTHCHECK\n"+
			"and monitoring.", nil,
		func(ctx context.Context, call *daemonCall, args []string) int {
			if err := call.do(ctx, (*control.Client).Health); err != nil {
				if errors.Is(err, control.ErrNoDaemon) {
					err = fmt.Errorf("daemon pid %d is not answering on its control socket: %w", call.pid, err)
				}
				fmt.Fprintf(c.Stdout, "unhealthy: %v\n", err)
				return ExitError
			}
			fmt.Fprintf(c.Stdout, "healthy: pid %d\n", call.pid)
			return ExitOK
		})
}

func (c *cmdEnv) statsCommand() command {
	var (
		data   dataFlags
		since  time.Duration
		asJSON bool
		fs     *flag.FlagSet
	)
	return command{
		name: "stats", summary: "show per-task statistics the daemon keeps per minute",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("stats", "", "Shows what the daemon recorded per minute: per task the count, failures and durations,\nand the backlog. Kept for the daemon's --stats-retention (default 7 days).")
				data.registerQueue(fs)
				fs.DurationVar(&since, "since", time.Hour, "how far back to look")
				fs.BoolVar(&asJSON, "json", false, "print the per-minute rows as JSON")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			q, err := data.openReading(ctx)
			if err != nil {
				return c.fail("stats", err)
			}
			defer q.Close()
			rows, err := stats.Read(ctx, q, time.Now().Add(-since))
			if err != nil {
				return c.fail("stats", err)
			}
			if asJSON {
				if rows == nil {
					rows = []stats.Row{}
				}
				enc := json.NewEncoder(c.Stdout)
				enc.SetIndent("", "  ")
				if enc.Encode(rows) != nil {
					return ExitError
				}
				return ExitOK
			}
			sums := stats.Summarize(rows)
			if len(sums) == 0 {
				fmt.Fprintf(c.Stdout, "no tasks finished in the last %s\n", since)
				return ExitOK
			}
			tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(tw, "TASK\tCOUNT\tFAILURES\tMEAN\tMAX\t\n")
			for _, s := range sums {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t\n", s.Task, s.Count, s.Failures, formatDuration(s.Mean), formatDuration(s.Max))
			}
			tw.Flush()
			return ExitOK
		},
	}
}

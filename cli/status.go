package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/snappea/snappea/pidfile"
	"github.com/snappea/snappea/queue"
)

// Status is what 'snappea status --json' prints. Its keys are stable.
type Status struct {
	Pending          int64   `json:"pending"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	DaemonPID        int     `json:"daemon_pid"` // 0 when no daemon runs
	SchemaVersion    int     `json:"schema_version"`
}

func (c *cmdEnv) statusCommand() command {
	var (
		data   dataFlags
		asJSON bool
		fs     *flag.FlagSet
	)
	return command{
		name: "status", summary: "show pending tasks, the oldest one's age and the daemon's pid",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("status", "", "Shows the queue and whether a daemon is running on it.")
				data.registerQueue(fs)
				fs.BoolVar(&asJSON, "json", false, withEnv("json", "print JSON: pending, oldest_age_seconds, daemon_pid (0 when none), schema_version"))
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			q, err := data.openExisting(ctx)
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea status: %v\n", err)
				return ExitError
			}
			defer q.Close()
			st, err := q.Stats(ctx)
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea status: %v\n", err)
				return ExitError
			}
			pid, err := pidfile.Running(data.lockPath())
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea status: %v\n", err)
				return ExitError
			}
			s := Status{Pending: st.Pending, OldestAgeSeconds: st.OldestAge.Seconds(), DaemonPID: pid,
				SchemaVersion: st.SchemaVersion}
			if asJSON {
				enc := json.NewEncoder(c.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(s); err != nil {
					return ExitError
				}
				return ExitOK
			}
			tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "pending\t%d\n", s.Pending)
			if s.Pending > 0 {
				fmt.Fprintf(tw, "oldest\t%s (task %d)\n", formatDuration(st.OldestAge), st.OldestID)
			}
			if pid != 0 {
				fmt.Fprintf(tw, "daemon\trunning, pid %d\n", pid)
			} else {
				fmt.Fprintf(tw, "daemon\tnot running\n")
			}
			fmt.Fprintf(tw, "database\t%s (schema %d)\n", data.dbPath(), s.SchemaVersion)
			tw.Flush()
			return ExitOK
		},
	}
}

func (c *cmdEnv) stopCommand() command {
	var (
		data    dataFlags
		wait    bool
		timeout time.Duration
		fs      *flag.FlagSet
	)
	return command{
		name: "stop", summary: "send TERM to the daemon of the data directory; --wait until it has exited",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("stop", "", "Sends TERM to the daemon running on the data directory: it stops intake at once and\nlets running tasks finish within its graceful timeout.")
				data.register(fs)
				fs.BoolVar(&wait, "wait", false, withEnv("wait", "return only when the daemon has exited"))
				fs.DurationVar(&timeout, "timeout", 0, withEnv("timeout", "with --wait, give up after this long (0: no limit)"))
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			pid, err := pidfile.Running(data.lockPath())
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea stop: %v\n", err)
				return ExitError
			}
			if pid == 0 {
				fmt.Fprintf(c.Stderr, "snappea stop: no daemon is running on %s\n", data.dir)
				return ExitError
			}
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				fmt.Fprintf(c.Stderr, "snappea stop: signal pid %d: %v\n", pid, err)
				return ExitError
			}
			fmt.Fprintf(c.Stderr, "sent TERM to pid %d\n", pid)
			if !wait {
				return ExitOK
			}
			var deadline <-chan time.Time
			if timeout > 0 {
				deadline = time.After(timeout)
			}
			// The lock is the truth: it is free once the process is gone.
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
				case <-deadline:
					fmt.Fprintf(c.Stderr, "snappea stop: pid %d still running after %s\n", pid, timeout)
					return ExitError
				case <-ctx.Done():
					return ExitError
				}
				if p, err := pidfile.Running(data.lockPath()); err == nil && p == 0 {
					fmt.Fprintf(c.Stderr, "pid %d has exited\n", pid)
					return ExitOK
				}
			}
		},
	}
}

func (c *cmdEnv) migrateCommand() command {
	var (
		data dataFlags
		fs   *flag.FlagSet
	)
	return command{
		name: "migrate", summary: "create or upgrade the database schema, then exit",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("migrate", "", "Applies the schema migrations the database lacks (run and enqueue do this too).")
				data.registerQueue(fs)
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			q, err := queue.Open(ctx, data.queueConfig())
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea migrate: %v\n", err)
				return ExitError
			}
			defer q.Close()
			st, err := q.Stats(ctx)
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea migrate: %v\n", err)
				return ExitError
			}
			fmt.Fprintf(c.Stdout, "%s is at schema version %d\n", data.dbPath(), st.SchemaVersion)
			return ExitOK
		},
	}
}

func (c *cmdEnv) tasksCommand() command {
	var fs *flag.FlagSet
	return command{
		name: "tasks", summary: "list the tasks this binary can run, with their argument types",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("tasks", "", "Lists the registered tasks and the Go type their JSON arguments decode into.")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
			for _, name := range c.reg.Names() {
				t, _ := c.reg.ArgType(name)
				fmt.Fprintf(tw, "%s\t%s\n", name, t)
			}
			tw.Flush()
			return ExitOK
		},
	}
}

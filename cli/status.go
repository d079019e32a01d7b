package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/pidfile"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/schedule"
	"github.com/snappea/snappea/storage"
)

func (c *cmdEnv) statusCommand() command {
	var (
		data   dataFlags
		ctl    controlFlags
		asJSON bool
		fs     *flag.FlagSet
	)
	return command{
		name: "status", summary: "show the daemon (state, workers, running tasks, services) and the queue",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("status", "", "Shows the daemon running on the data directory, asked through its control socket,\n"+
					"and the queue. Without a daemon it shows the queue and says so. When a daemon holds\n"+
					"the lock but does not answer within --control-timeout (stopped, overloaded or wedged),\n"+
					"it shows what the database tells (the queue, schedules), says so, and exits 1.")
				data.registerQueue(fs)
				ctl.register(fs)
				fs.BoolVar(&asJSON, "json", false, "print JSON with stable keys, for scripts")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			code := ExitOK
			st, unknown, silent, err := c.status(ctx, &data, &ctl)
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea status: %v\n", err)
				return ExitError
			}
			if err := c.addDaemons(ctx, &data, st); err != nil {
				fmt.Fprintf(c.Stderr, "snappea status: %v\n", err)
				code = ExitError
			}
			// The lost tasks: a daemon that answered counted them itself.
			if !st.Running {
				if err := addLost(ctx, &data, st); err != nil {
					fmt.Fprintf(c.Stderr, "snappea status: %v\n", err)
					code = ExitError
				}
			}
			// A daemon that holds the lock and does not answer in time is
			// a problem even though the queue could be shown.
			if silent {
				code = ExitError
			}
			if asJSON {
				enc := json.NewEncoder(c.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(st); err != nil {
					return ExitError
				}
				return code
			}
			where := data.where()
			if st.Database != "" {
				where = st.Database // the daemon's: right even when this command was given no URL
			}
			writeStatus(c.Stdout, st, where, unknown)
			return code
		},
	}
}

// status asks the daemon through its control socket and, without a
// daemon or when it does not answer, reads the queue itself. unknown, if
// set, says why it cannot tell whether a daemon runs; silent, that a daemon
// holds the lock and did not answer within the control timeout.
func (c *cmdEnv) status(ctx context.Context, data *dataFlags, ctl *controlFlags) (st *control.Status, unknown string, silent bool, err error) {
	pid, err := pidfile.Running(data.lockPath())
	if errors.Is(err, fs.ErrPermission) {
		// A monitoring account: the queue is still worth showing.
		unknown = fmt.Sprintf("unknown: this user may not read the lock %s that tells", data.lockPath())
		fmt.Fprintf(c.Stderr, "snappea status: cannot tell whether a daemon runs: %v\n", err)
	} else if err != nil {
		return nil, "", false, err
	}
	if pid != 0 {
		var ans *control.Status
		err := c.daemonCall("status", data, ctl, pid).do(ctx, func(cl *control.Client, ctx context.Context) (err error) {
			ans, err = cl.Status(ctx)
			return err
		})
		if err == nil {
			return ans, "", false, nil
		}
		if errors.Is(err, control.ErrPermission) {
			unknown = fmt.Sprintf("pid %d is running; its control socket answers only the daemon's user and root", pid)
			fmt.Fprintf(c.Stderr, "snappea status: %v; showing the queue from the database\n", err)
		} else if errors.Is(err, errNotAnswering) {
			silent = true
			fmt.Fprintf(c.Stderr, "snappea status: %v\nsnappea status: showing what the database tells; the daemon's part (state, workers, running tasks, services) is missing\n", err)
		} else {
			fmt.Fprintf(c.Stderr, "snappea status: daemon pid %d holds the lock but did not answer on its control socket: %v\n", pid, err)
		}
	}
	q, err := data.openReading(ctx)
	if err != nil {
		return nil, "", false, err
	}
	defer q.Close()
	qs, err := q.Stats(ctx)
	if err != nil {
		return nil, "", false, err
	}
	st = &control.Status{PID: pid, DaemonPID: pid, Pending: qs.Pending, Ready: qs.Ready, Delayed: qs.Delayed,
		OldestAgeSeconds: qs.OldestAge.Seconds(), SchemaVersion: qs.SchemaVersion,
		Active: []control.Active{}, Services: []control.Service{}, Schedules: []control.Schedule{}}
	if pid != 0 {
		// A daemon runs but did not answer: its schedules are in the
		// database too.
		entries, err := schedule.Read(ctx, q.Backend())
		if err != nil {
			fmt.Fprintf(c.Stderr, "snappea status: reading the schedules: %v\n", err)
		} else if len(entries) > 0 {
			st.Schedules = controlSchedules(entries)
		}
	}
	return st, unknown, silent, nil
}

// addDaemons fills in st.Daemons: on PostgreSQL the table of daemons,
// read from the database; on SQLite the local daemon, if it answered.
func (c *cmdEnv) addDaemons(ctx context.Context, data *dataFlags, st *control.Status) error {
	if st.Daemons != nil {
		return nil // the daemon (on PostgreSQL) listed them
	}
	if !data.postgres() {
		if st.Running {
			host, _ := os.Hostname()
			st.Daemons = []control.Daemon{{Host: host, PID: st.PID, StartedAt: st.StartedAt,
				Workers: st.WorkersTotal, Busy: st.WorkersBusy, Paused: st.State == "paused",
				Generation: int64(st.Generation), LastSeen: time.Now()}}
		}
		return nil
	}
	q, err := data.openReading(ctx)
	if err != nil {
		return fmt.Errorf("reading the table of daemons: %w", err)
	}
	defer q.Close()
	ds, err := q.Backend().Daemons(ctx)
	if err != nil {
		return fmt.Errorf("reading the table of daemons: %w", err)
	}
	st.Daemons = controlDaemons(ds)
	return nil
}

// addLost fills in st.Lost from the database's failed record.
func addLost(ctx context.Context, data *dataFlags, st *control.Status) error {
	q, err := data.openReading(ctx)
	if err != nil {
		return fmt.Errorf("counting the lost tasks: %w", err)
	}
	defer q.Close()
	if st.Lost, err = q.Backend().CountLost(ctx); err != nil {
		return fmt.Errorf("counting the lost tasks: %w", err)
	}
	return nil
}

// controlDaemons converts the table of daemons for status.
func controlDaemons(ds []storage.Daemon) []control.Daemon {
	out := make([]control.Daemon, 0, len(ds))
	for _, d := range ds {
		out = append(out, control.Daemon{ID: d.ID, Host: d.Host, PID: d.PID, StartedAt: d.Started,
			Workers: d.Workers, Busy: d.Busy, Paused: d.Paused, Generation: d.Generation, LastSeen: d.LastSeen,
			Gone: d.Gone})
	}
	return out
}

// writeStatus prints st as a compact table.
// unknown, if set, says why whether a daemon runs is not known.
func writeStatus(w io.Writer, st *control.Status, dbPath, unknown string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	switch {
	case st.Running:
		fmt.Fprintf(tw, "daemon\t%s, pid %d, up %s, generation %d\n", st.State, st.PID,
			formatDuration(time.Since(st.StartedAt).Round(time.Second)), st.Generation)
		fmt.Fprintf(tw, "workers\t%d of %d busy\n", st.WorkersBusy, st.WorkersTotal)
	case unknown != "":
		fmt.Fprintf(tw, "daemon\t%s\n", unknown)
	case st.PID != 0:
		fmt.Fprintf(tw, "daemon\tpid %d holds the lock but does not answer\n", st.PID)
	default:
		fmt.Fprintf(tw, "daemon\tnot running\n")
	}
	fmt.Fprintf(tw, "pending\t%d", st.Pending)
	if st.Delayed > 0 {
		fmt.Fprintf(tw, " (%d ready, %d delayed)", st.Ready, st.Delayed)
	}
	fmt.Fprintln(tw)
	if st.Ready > 0 {
		fmt.Fprintf(tw, "oldest\t%s waiting\n", formatDuration(time.Duration(st.OldestAgeSeconds*float64(time.Second))))
	}
	if st.Running {
		k := st.Counters
		fmt.Fprintf(tw, "finished\t%d done, %d failed, %d panicked, %d discarded, %d interrupted, %d cancelled; %d retried, %d overdue\n",
			k.Done, k.Failed, k.Panicked, k.Discarded, k.Interrupted, k.Cancelled, k.Retried, k.Overdue)
	}
	if len(st.MaxRunning) > 0 {
		names := slices.Sorted(maps.Keys(st.MaxRunning))
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s at most %d", n, st.MaxRunning[n])
		}
		fmt.Fprintf(tw, "running\t%s at once, across every daemon\n", strings.Join(parts, ", "))
	}
	if len(st.RetryLost) > 0 {
		fmt.Fprintf(tw, "retry lost\t%s\n", strings.Join(st.RetryLost, ", "))
	}
	if st.Lost > 0 {
		fmt.Fprintf(tw, "lost\t%d tasks whose daemon ended while they ran (snappea failed list)\n", st.Lost)
	}
	fmt.Fprintf(tw, "database\t%s (schema %d)\n", dbPath, st.SchemaVersion)
	if len(st.Active) > 0 {
		fmt.Fprintf(tw, "\nRUNNING\tTASK\tELAPSED\tNOTE\n")
		for _, a := range st.Active {
			note := ""
			if a.Overdue {
				note = "overdue"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", a.TaskID, a.Task,
				formatDuration(time.Duration(a.ElapsedSeconds*float64(time.Second))), note)
		}
	}
	if pp := st.ProcPool; pp != nil {
		fmt.Fprintf(tw, "\nPROCESS\tSTATE\tTASK\tRSS\tTASKS DONE\n")
		for _, p := range st.Procs {
			task := "-"
			if p.TaskID != 0 {
				task = fmt.Sprintf("%s (%d)", p.Task, p.TaskID)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f MiB\t%d\n", p.PID, p.State, task, float64(p.RSSBytes)/(1<<20), p.TasksDone)
		}
		fmt.Fprintf(tw, "processes\t%d of min %d, max %d; %d started, %d restarts, %d deaths, %d kills (%d SIGKILL), %d retired\n",
			len(st.Procs), pp.Min, pp.Max, pp.Starts, pp.Restarts, pp.Deaths, pp.Kills, pp.SIGKILLs, pp.Retired)
	}
	if len(st.Services) > 0 {
		fmt.Fprintf(tw, "\nSERVICE\tSTATE\tRESTARTS\tLAST ERROR\n")
		for _, s := range st.Services {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.State, s.Restarts, s.LastError)
		}
	}
	if len(st.Daemons) > 0 {
		fmt.Fprintf(tw, "\nDAEMON\tHOST\tPID\tWORKERS\tBUSY\tSTATE\tLAST SEEN\n")
		for _, d := range st.Daemons {
			state := "running"
			switch {
			case d.Gone:
				state = "gone"
			case d.Paused:
				state = "paused"
			}
			id := "-"
			if d.ID != 0 {
				id = strconv.FormatInt(d.ID, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s ago\n", id, d.Host, d.PID, d.Workers, d.Busy, state,
				formatDuration(max(time.Since(d.LastSeen), 0).Round(time.Second)))
		}
	}
	if len(st.Schedules) > 0 {
		fmt.Fprintf(tw, "\nSCHEDULE\tSPEC\tTASK\tNEXT\n")
		for _, s := range st.Schedules {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Spec, s.Task, s.Next.Local().Format(time.DateTime))
		}
	}
}

func (c *cmdEnv) stopCommand() command {
	var (
		data    dataFlags
		ctl     controlFlags
		wait    bool
		now     bool
		timeout time.Duration
		fs      *flag.FlagSet
	)
	return command{
		name: "stop", summary: "stop the daemon (--now cancels running tasks); --wait until it has exited",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("stop", "", "Stops the daemon running on the data directory: it stops intake at once and lets\nrunning tasks finish within its graceful timeout (as TERM does).")
				data.register(fs)
				ctl.register(fs)
				fs.BoolVar(&wait, "wait", false, "return only when the daemon has exited")
				fs.BoolVar(&now, "now", false, "cancel running tasks at once instead of waiting out the graceful timeout")
				fs.DurationVar(&timeout, "timeout", 0, "with --wait, give up after this long (0: no limit)")
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
			call := c.daemonCall("stop", &data, &ctl, pid)
			if err := call.do(ctx, func(cl *control.Client, ctx context.Context) error {
				return cl.Stop(ctx, now)
			}); err == nil {
				fmt.Fprintf(c.Stderr, "asked pid %d to stop\n", pid)
			} else if now {
				return call.fail(err)
			} else {
				// The socket is the way; TERM does the same when it is gone,
				// and waits for a stopped process to run again.
				fmt.Fprintf(c.Stderr, "snappea stop: %v\n", err)
				if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
					fmt.Fprintf(c.Stderr, "snappea stop: signal pid %d: %v\n", pid, err)
					return ExitError
				}
				fmt.Fprintf(c.Stderr, "sent TERM to pid %d instead\n", pid)
			}
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
			fmt.Fprintf(c.Stdout, "%s is at schema version %d\n", data.where(), st.SchemaVersion)
			return ExitOK
		},
	}
}

func (c *cmdEnv) tasksCommand() command {
	var fs *flag.FlagSet
	return command{
		name: "tasks", summary: "list the tasks this binary can run, with the JSON their arguments take",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("tasks", "", "Lists the registered tasks and the shape of the JSON arguments each takes: field names\n"+
					"and JSON types, as in {\"user_id\": number, \"email\": string}; \"name\"? marks a field that\n"+
					"may be left out (omitempty), any a value of any type.")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
			for _, name := range c.reg.Names() {
				t, _ := c.reg.ArgType(name)
				fmt.Fprintf(tw, "%s\t%s\n", name, argShape(t))
			}
			tw.Flush()
			return ExitOK
		},
	}
}

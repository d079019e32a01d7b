package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/schedule"
)

// scheduleDef is a periodic task the daemon enqueues.
type scheduleDef = schedule.Schedule

// declared holds the schedules a program declared with Schedules.
var declared struct {
	mu   sync.Mutex
	defs []schedule.Schedule
}

// Schedules declares periodic tasks in code, for every daemon this program
// runs through Main or Run ('snappea run'), besides those of the
// --schedules file. Call it before Main, where the tasks are registered:
//
//	registry.Register(reg, "report.daily", sendReport)
//	cli.Schedules(schedule.Schedule{Name: "daily-report", Spec: "0 6 * * *", Task: "report.daily"})
//	os.Exit(cli.Main(reg))
//
// A name may not be used both here and in the file. The schedules are
// checked when a daemon starts (and by 'snappea run --check'): one that
// names an unknown task or has a bad spec stops it with a usage error.
// 'snappea schedules' lists them.
func Schedules(defs ...schedule.Schedule) {
	declared.mu.Lock()
	defer declared.mu.Unlock()
	declared.defs = append(declared.defs, defs...)
}

func declaredSchedules() []scheduleDef {
	declared.mu.Lock()
	defer declared.mu.Unlock()
	return append([]scheduleDef(nil), declared.defs...)
}

// schedules returns the schedules declared in code and those of the file
// at path ("": none), checked against the registry.
func (c *cmdEnv) schedules(path string) ([]scheduleDef, error) {
	defs := declaredSchedules()
	if err := schedule.Validate(defs, c.reg); err != nil {
		return nil, fmt.Errorf("schedules declared with cli.Schedules: %w", err)
	}
	if path == "" {
		return defs, nil
	}
	file, err := schedule.Load(path)
	if err != nil {
		return nil, fmt.Errorf("--schedules: %w", err)
	}
	if err := schedule.Validate(file, c.reg); err != nil {
		return nil, fmt.Errorf("--schedules: schedules file %s: %w", path, err)
	}
	inCode := make(map[string]bool, len(defs))
	for _, d := range defs {
		inCode[d.Name] = true
	}
	for _, f := range file {
		if inCode[f.Name] {
			return nil, fmt.Errorf("--schedules: schedules file %s: schedule %q is also declared with cli.Schedules", path, f.Name)
		}
	}
	return append(defs, file...), nil
}

// loadSchedules returns the daemon's schedules: those declared in code and
// those of the --schedules file.
func (d *daemon) loadSchedules() ([]scheduleDef, error) {
	return d.c.schedules(d.f.schedules)
}

// scheduleStatus lists the daemon's schedules with their next and last
// run, as stored in the database.
func (d *daemon) scheduleStatus(ctx context.Context) ([]control.Schedule, error) {
	entries, err := d.dm.Schedules(ctx)
	if err != nil {
		return nil, err
	}
	return controlSchedules(entries), nil
}

func controlSchedules(entries []schedule.Entry) []control.Schedule {
	out := make([]control.Schedule, 0, len(entries))
	for _, e := range entries {
		out = append(out, control.Schedule{Name: e.Name, Spec: e.Spec, Task: e.Task, Next: e.Next, Last: e.Last})
	}
	return out
}

const schedulesHelp = `Lists the periodic tasks with when each runs next and last ran, as stored in the
database: no daemon is needed. With --schedules (or SNAPPEA_SCHEDULES) it lists
that file's schedules (and those a custom binary declares in code with
cli.Schedules) as a daemon started with them would run them; without, every
schedule in the database, configured or not; --all lists those in any case.

The daemon runs the schedules of 'snappea run --schedules FILE'. FILE is a JSON
array of schedules:

  [
    {"name": "cleanup", "spec": "*/5 * * * *", "task": "app.cleanup",
     "args": {"older_than": "24h"}, "timeout": "30s", "max_attempts": 3},
    {"name": "heartbeat", "spec": "@every 30s", "task": "snappea.echo",
     "args": {"msg": "alive"}, "key": "heartbeat"}
  ]

  name          required, unique: the schedule's state in the database is kept
                under it; a new name starts over
  spec          required: when it fires: five cron fields (minute hour
                day-of-month month day-of-week: "*/5 * * * *", "0 6 * * 1-5"),
                in the daemon's local time zone unless prefixed with
                CRON_TZ=Zone ("CRON_TZ=UTC 0 6 * * *"); a descriptor (@yearly,
                @monthly, @weekly, @daily, @hourly); or "@every DURATION"
                (whole seconds, at least 1s)
  task          required: the task to enqueue ('snappea tasks' lists them)
  args          the task's JSON arguments, the same at every tick (default null)
  priority      the task's priority (higher is claimed first)
  delay         a duration such as "10s": the task runs this long after its tick
  timeout       a duration such as "30s": the handler's deadline
  max_attempts  total attempts, the first included, if the task fails
  key           a unique key: while the previous tick's task is still pending,
                a tick enqueues nothing (no pile-up behind a stopped daemon)
  catch_up      true: ticks missed while no daemon ran fire once each (at most
                100) instead of once for all

Other keys are an error. The file is checked at start and by 'snappea run
--check' (so a reload refuses a broken one): unknown tasks and arguments that do
not decode are usage errors.

Each tick enqueues exactly one task, also across restarts and reloads: the next
due time is kept in the database and taken in the transaction that enqueues the
task. A new schedule first fires at its first tick after the daemon starts; a
changed spec starts over from then. Schedules removed from the file keep their
row (a returning one resumes) and are not run.`

func (c *cmdEnv) schedulesCommand() command {
	var (
		data   dataFlags
		file   string
		asJSON bool
		all    bool
		fs     *flag.FlagSet
	)
	return command{
		name: "schedules", summary: "list the periodic tasks with their next and last run (and the file format)",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("schedules", "", schedulesHelp)
				data.registerQueue(fs)
				fs.StringVar(&file, "schedules", "", withEnv("schedules", "the JSON file of periodic tasks the daemon runs (see above)"))
				fs.BoolVar(&all, "all", false, "list every schedule stored in the database, configured or not")
				fs.BoolVar(&asJSON, "json", false, "print JSON with stable keys, for scripts")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) > 0 {
				return c.usagef("schedules", "takes no arguments, got %q", args)
			}
			defs, err := c.schedules(file)
			if err != nil {
				return c.usagef("schedules", "%v", err)
			}
			q, err := data.openExisting(ctx)
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea schedules: %v\n", err)
				return ExitError
			}
			defer q.Close()
			var entries []schedule.Entry
			if all || len(defs) == 0 {
				entries, err = schedule.Read(ctx, q.Backend())
			} else {
				var s *schedule.Scheduler
				if s, err = schedule.New(schedule.Config{Queue: q, Schedules: defs}); err == nil {
					entries, err = s.List(ctx)
				}
			}
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea schedules: %v\n", err)
				return ExitError
			}
			out := controlSchedules(entries)
			if asJSON {
				enc := json.NewEncoder(c.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					fmt.Fprintf(c.Stderr, "snappea schedules: %v\n", err)
					return ExitError
				}
				return ExitOK
			}
			writeSchedules(c.Stdout, out, time.Now())
			return ExitOK
		},
	}
}

// writeSchedules prints schedules as a table, times in the local zone.
func writeSchedules(w io.Writer, scheds []control.Schedule, now time.Time) {
	if len(scheds) == 0 {
		fmt.Fprintln(w, "no schedules (run the daemon with --schedules FILE; see 'snappea help schedules')")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "NAME\tSPEC\tTASK\tNEXT\tLAST")
	for _, s := range scheds {
		next := "never"
		if !s.Next.IsZero() {
			next = s.Next.Local().Format(time.DateTime)
			if d := s.Next.Sub(now); d >= 0 {
				next += " (in " + formatDuration(d.Round(time.Second)) + ")"
			} else {
				next += " (due " + formatDuration(-d.Round(time.Second)) + " ago)"
			}
		}
		last := "-"
		if !s.Last.IsZero() {
			last = s.Last.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec, s.Task, next, last)
	}
}

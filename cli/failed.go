package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/snappea/snappea/queue"
)

// failedSub is a subcommand of 'snappea failed'.
type failedSub struct {
	name, args, summary string
	flags               []string // its own flags, besides the data flags
	run                 func(ctx context.Context, args []string) int
}

func (c *cmdEnv) failedCommand() command {
	var (
		data   dataFlags
		asJSON bool
		limit  int
		all    bool
		fs     *flag.FlagSet
		// dataNames are the data flags, which every subcommand takes.
		dataNames []string
	)
	open := func(ctx context.Context, sub string) (*queue.Queue, int) {
		openQueue := data.openExisting
		if sub == "list" || sub == "show" {
			openQueue = data.openReading
		}
		q, err := openQueue(ctx)
		if err != nil {
			return nil, c.fail("failed "+sub, err)
		}
		return q, ExitOK
	}
	subs := []failedSub{
		{name: "list", args: "", flags: []string{"json", "limit"},
			summary: "list the failed tasks, newest first, without their arguments\n(they can hold secrets: see show)",
			run: func(ctx context.Context, args []string) int {
				if len(args) > 0 {
					return c.usagef("failed list", "takes no arguments, got %q", args)
				}
				q, code := open(ctx, "list")
				if q == nil {
					return code
				}
				defer q.Close()
				fails, err := q.Failures(ctx, limit)
				if err != nil {
					return c.fail("failed list", err)
				}
				if asJSON {
					out := make([]failureJSON, len(fails))
					for i, f := range fails {
						out[i] = newFailureJSON(f)
					}
					return c.writeJSON(out)
				}
				writeFailures(c.Stdout, fails)
				return ExitOK
			}},
		{name: "show", args: "ID", flags: []string{"json"},
			summary: "show the failed task ID, all its fields and its JSON arguments",
			run: func(ctx context.Context, args []string) int {
				if len(args) != 1 {
					return c.usagef("failed show", "want one ID, as 'snappea failed list' shows them")
				}
				id, err := parseID(args[0])
				if err != nil {
					return c.usagef("failed show", "ID %v", err)
				}
				q, code := open(ctx, "show")
				if q == nil {
					return code
				}
				defer q.Close()
				f, err := q.FailureByID(ctx, id)
				if err != nil {
					return c.fail("failed show", notFound(id, err))
				}
				j := newFailureJSON(f)
				j.Args = argsJSON(f.Args)
				if asJSON {
					return c.writeJSON(j)
				}
				writeFailure(c.Stdout, &j)
				return ExitOK
			}},
		{name: "retry", args: "ID... | --all", flags: []string{"all"},
			summary: "queue failed tasks again as new tasks, first attempt, same options,\n" +
				"and delete their records; prints the new task ids (--all: how many)",
			run: func(ctx context.Context, args []string) int {
				if all == (len(args) > 0) {
					return c.usagef("failed retry", "want the IDs to retry, as 'snappea failed list' shows them, or --all")
				}
				ids := make([]int64, len(args))
				for i, a := range args {
					var err error
					if ids[i], err = parseID(a); err != nil {
						return c.usagef("failed retry", "ID %v", err)
					}
				}
				q, code := open(ctx, "retry")
				if q == nil {
					return code
				}
				defer q.Close()
				if all {
					n, err := q.RetryAllFailures(ctx)
					if err != nil {
						return c.fail("failed retry", err)
					}
					fmt.Fprintf(c.Stdout, "retried %d failed %s\n", n, plural(n, "task", "tasks"))
					return ExitOK
				}
				for _, id := range ids {
					taskID, err := q.RetryFailure(ctx, id)
					if err != nil {
						return c.fail("failed retry", notFound(id, err))
					}
					fmt.Fprintln(c.Stdout, taskID)
					fmt.Fprintf(c.Stderr, "failed task %d queued again as task %d\n", id, taskID)
				}
				return ExitOK
			}},
		{name: "purge", args: "",
			summary: "delete every failed task record",
			run: func(ctx context.Context, args []string) int {
				if len(args) > 0 {
					return c.usagef("failed purge", "takes no arguments, got %q", args)
				}
				q, code := open(ctx, "purge")
				if q == nil {
					return code
				}
				defer q.Close()
				n, err := q.PurgeFailures(ctx)
				if err != nil {
					return c.fail("failed purge", err)
				}
				fmt.Fprintf(c.Stdout, "purged %d failed %s\n", n, plural(n, "task", "tasks"))
				return ExitOK
			}},
	}
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: snappea failed <subcommand> [flags] [arguments]

The tasks that failed their last attempt, as the daemon recorded them (for its
--failed-retention, at most --failed-max of them). An ID here is that of the
failure record, as 'list' shows it, not the task's.

Subcommands:
`)
		width := 0
		for _, s := range subs {
			width = max(width, len(s.name)+1+len(s.args))
		}
		for _, s := range subs {
			line := strings.TrimSpace(s.name + " " + s.args)
			fmt.Fprintf(w, "  %-*s  %s\n", width, line, strings.ReplaceAll(s.summary, "\n", "\n"+strings.Repeat(" ", width+4)))
		}
		fmt.Fprint(w, "\nRun 'snappea failed <subcommand> -h' for its flags.\n\n"+flagsHeading)
		fs.PrintDefaults()
	}
	return command{
		name: "failed", summary: "list, show, retry or purge the tasks that failed for good", subcommands: true,
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("failed", "", "")
				fs.Usage = func() { usage(fs.Output()) }
				data.registerQueue(fs)
				fs.VisitAll(func(f *flag.Flag) { dataNames = append(dataNames, f.Name) })
				fs.BoolVar(&asJSON, "json", false, "list, show: print JSON with stable keys, for scripts")
				fs.Var((*nonNegativeInt)(&limit), "limit", "list: show at most the newest `N` (0: all)")
				fs.BoolVar(&all, "all", false, "retry: every failed task")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			names := make([]string, len(subs))
			for i, s := range subs {
				names[i] = s.name
			}
			list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
			if len(args) == 0 {
				return c.usagef("failed", "want a subcommand: %s", list)
			}
			i := slices.IndexFunc(subs, func(s failedSub) bool { return s.name == args[0] })
			if i < 0 {
				return c.usagef("failed", "unknown subcommand %q: want %s", args[0], list)
			}
			sub := &subs[i]
			takes := func(name string) bool { return slices.Contains(dataNames, name) || slices.Contains(sub.flags, name) }
			// Flags given before the subcommand's name were parsed already;
			// they must be its own all the same.
			var stray []string
			fs.Visit(func(f *flag.Flag) {
				if !takes(f.Name) {
					stray = append(stray, "--"+f.Name)
				}
			})
			if len(stray) > 0 {
				return c.usagef("failed "+sub.name, "does not take %s", strings.Join(stray, ", "))
			}
			// The subcommand's FlagSet shares the values of the command's,
			// whose environment twins are applied already.
			sfs := c.newFlagSet("failed "+sub.name, sub.args, sub.summary)
			fs.VisitAll(func(f *flag.Flag) {
				if takes(f.Name) {
					sfs.Var(f.Value, f.Name, f.Usage)
					sfs.Lookup(f.Name).DefValue = f.DefValue
				}
			})
			rest, code := c.parseFlags("failed "+sub.name, sfs, args[1:], true)
			if rest == nil {
				return code
			}
			return sub.run(ctx, rest)
		},
	}
}

// failureJSON is a failed task as 'failed list --json' and 'failed show
// --json' print it.
type failureJSON struct {
	ID             int64           `json:"id"`      // the failure record's
	TaskID         int64           `json:"task_id"` // the last attempt's
	Task           string          `json:"task"`
	Error          string          `json:"error"`
	Attempts       int             `json:"attempts"`
	MaxAttempts    int             `json:"max_attempts"`
	Priority       int             `json:"priority"`
	TimeoutSeconds float64         `json:"timeout_seconds"` // 0: none
	FailedAt       string          `json:"failed_at"`       // RFC 3339, UTC
	Args           json.RawMessage `json:"args,omitempty"`  // only on request: they can hold secrets
}

func newFailureJSON(f queue.Failure) failureJSON {
	return failureJSON{ID: f.ID, TaskID: f.TaskID, Task: f.Task, Error: f.Error, Attempts: f.Attempts,
		MaxAttempts: f.MaxAttempts, Priority: f.Priority, TimeoutSeconds: f.Timeout.Seconds(),
		FailedAt: f.FailedAt.UTC().Format(time.RFC3339)}
}

// argsJSON is a task's stored arguments as JSON to print: null for none,
// a JSON string for bytes that are not JSON (a producer without checks).
func argsJSON(b []byte) json.RawMessage {
	switch {
	case len(b) == 0:
		return json.RawMessage("null")
	case json.Valid(b):
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

func (c *cmdEnv) writeJSON(v any) int {
	enc := json.NewEncoder(c.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail("failed", err)
	}
	return ExitOK
}

// writeFailures prints fails as a table, each error cut to its first line.
func writeFailures(w io.Writer, fails []queue.Failure) {
	if len(fails) == 0 {
		fmt.Fprintln(w, "no failed tasks")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "ID\tTASK ID\tTASK\tATTEMPTS\tFAILED AT\tERROR\n")
	for _, f := range fails {
		msg, _, more := strings.Cut(f.Error, "\n")
		if len([]rune(msg)) > 100 {
			msg, more = string([]rune(msg)[:100]), true
		}
		if more {
			msg += " …"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%s\t%s\n", f.ID, f.TaskID, f.Task, f.Attempts,
			f.FailedAt.Local().Format(time.DateTime), msg)
	}
}

// writeFailure prints one failed task, field by field.
func writeFailure(w io.Writer, f *failureJSON) {
	timeout := "none"
	if f.TimeoutSeconds > 0 {
		timeout = formatDuration(time.Duration(f.TimeoutSeconds * float64(time.Second)))
	}
	attempts := fmt.Sprint(f.Attempts)
	if f.MaxAttempts > 1 {
		attempts += fmt.Sprintf(" of %d", f.MaxAttempts)
	}
	failedAt, _ := time.Parse(time.RFC3339, f.FailedAt)
	for _, kv := range [][2]string{
		{"id", fmt.Sprint(f.ID)},
		{"task id", fmt.Sprint(f.TaskID)},
		{"task", f.Task},
		{"attempts", attempts},
		{"failed at", failedAt.Local().Format(time.RFC3339)},
		{"priority", fmt.Sprint(f.Priority)},
		{"timeout", timeout},
		{"args", string(f.Args)},
		{"error", f.Error},
	} {
		// Continuation lines of a long error line up under its first.
		fmt.Fprintf(w, "%-10s %s\n", kv[0], strings.ReplaceAll(kv[1], "\n", "\n"+strings.Repeat(" ", 11)))
	}
}

// notFound explains an id with no failure record.
func notFound(id int64, err error) error {
	if errors.Is(err, queue.ErrNotFound) {
		return fmt.Errorf("no failed task has ID %d (see 'snappea failed list'; an ID there is the failure record's, not the task's)", id)
	}
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

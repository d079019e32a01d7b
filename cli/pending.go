package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/snappea/snappea/queue"
)

func (c *cmdEnv) pendingCommand() command {
	var (
		data   dataFlags
		asJSON bool
		f      queue.PendingFilter
		fs     *flag.FlagSet
	)
	return command{
		name: "pending", summary: "list the queued and delayed tasks, in the order they will be claimed",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("pending", "",
					"Lists the tasks waiting in the queue, without their arguments (they can hold secrets):\n"+
						"ready tasks in the order the daemon claims them (highest priority first, oldest first\n"+
						"within one), then delayed tasks by due time.")
				data.registerQueue(fs)
				fs.BoolVar(&asJSON, "json", false, "print JSON with stable keys, for scripts")
				fs.IntVar(&f.Limit, "limit", queue.DefaultPendingLimit, "list at most `N` tasks")
				fs.StringVar(&f.Task, "task", "", "list only the tasks of this `NAME`")
				fs.BoolVar(&f.Delayed, "delayed", false, "list only the delayed tasks")
				fs.BoolVar(&f.Newest, "newest", false, "reverse the order: the task to be claimed last first")
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) > 0 {
				return c.usagef("pending", "takes no arguments, got %q", args)
			}
			if f.Limit < 1 {
				return c.usagef("pending", "%s: want at least 1", c.given(fs, "limit"))
			}
			q, err := data.openReading(ctx)
			if err != nil {
				return c.fail("pending", err)
			}
			defer q.Close()
			tasks, err := q.Pending(ctx, f)
			if err != nil {
				return c.fail("pending", err)
			}
			if asJSON {
				out := make([]pendingJSON, len(tasks))
				for i, t := range tasks {
					out[i] = newPendingJSON(t)
				}
				return c.writeJSON(out)
			}
			writePending(c.Stdout, c.Stderr, tasks, f.Limit)
			return ExitOK
		},
	}
}

// pendingJSON is a waiting task as 'pending --json' prints it.
type pendingJSON struct {
	ID          int64   `json:"id"`
	Task        string  `json:"task"`
	Priority    int     `json:"priority"`
	Key         *string `json:"key"`    // null: none
	RunAt       *string `json:"run_at"` // RFC 3339, UTC; null: ready
	Ready       bool    `json:"ready"`
	Attempt     int     `json:"attempt"`
	MaxAttempts int     `json:"max_attempts"`
	EnqueuedAt  string  `json:"enqueued_at"` // RFC 3339, UTC
}

func newPendingJSON(t queue.PendingTask) pendingJSON {
	j := pendingJSON{ID: t.ID, Task: t.Task, Priority: t.Priority, Ready: t.Ready(), Attempt: t.Attempt,
		MaxAttempts: t.MaxAttempts, EnqueuedAt: t.EnqueuedAt.UTC().Format(time.RFC3339Nano)}
	if t.Key != "" {
		j.Key = &t.Key
	}
	if !t.Ready() {
		at := t.RunAt.UTC().Format(time.RFC3339Nano)
		j.RunAt = &at
	}
	return j
}

// writePending prints tasks as a table on w, and on note that there may be
// more.
func writePending(w, note io.Writer, tasks []queue.PendingTask, limit int) {
	if len(tasks) == 0 {
		fmt.Fprintln(w, "no pending tasks")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tTASK\tPRIORITY\tKEY\tRUN AT\tATTEMPT\tENQUEUED\n")
	for _, t := range tasks {
		runAt := "ready"
		if !t.Ready() {
			runAt = t.RunAt.Local().Format(time.DateTime)
		}
		attempt := fmt.Sprint(t.Attempt)
		if t.MaxAttempts > 1 {
			attempt += fmt.Sprintf(" of %d", t.MaxAttempts)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", t.ID, t.Task, t.Priority, t.Key, runAt, attempt,
			t.EnqueuedAt.Local().Format(time.DateTime))
	}
	tw.Flush()
	if len(tasks) == limit {
		fmt.Fprintf(note, "the first %d pending tasks; --limit N shows more\n", limit)
	}
}

package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

func (c *cmdEnv) enqueueCommand() command {
	var (
		data    dataFlags
		count   int
		batch   bool
		noCheck bool
		fs      *flag.FlagSet
	)
	return command{
		name: "enqueue", summary: "queue a task (or --count of them) and print their ids",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("enqueue", "TASK [JSON]",
					"Queues TASK with the JSON arguments given (none: null) and prints each new task's id on\n"+
						"stdout; how many and how fast goes to stderr.")
				data.registerQueue(fs)
				fs.IntVar(&count, "count", 1, withEnv("count", "how many identical tasks to queue"))
				fs.BoolVar(&batch, "batch", false, withEnv("batch", "queue all of them in one transaction instead of one transaction each"))
				fs.BoolVar(&noCheck, "no-check", false, withEnv("no-check", "skip checking TASK and JSON against this binary's tasks (for a daemon built with other tasks)"))
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) < 1 || len(args) > 2 {
				fmt.Fprintln(c.Stderr, "snappea enqueue: want TASK and optionally its JSON arguments; see 'snappea enqueue -h'")
				return ExitUsage
			}
			if count < 1 {
				fmt.Fprintf(c.Stderr, "snappea enqueue: --count %d: want at least 1\n", count)
				return ExitUsage
			}
			task := args[0]
			var raw json.RawMessage = []byte("null")
			if len(args) == 2 {
				raw = json.RawMessage(args[1])
				if !json.Valid(raw) {
					fmt.Fprintf(c.Stderr, "snappea enqueue: the arguments for %s are not valid JSON\n", task)
					return ExitUsage
				}
			}
			if !noCheck {
				if err := c.reg.Check(task, raw); err != nil {
					msg := err.Error()
					if errors.Is(err, registry.ErrUnknownTask) {
						msg += "; this binary knows " + strings.Join(c.reg.Names(), ", ")
					}
					fmt.Fprintf(c.Stderr, "snappea enqueue: %s (--no-check enqueues it anyway)\n", msg)
					return ExitUsage
				}
			}
			cfg := data.queueConfig()
			cfg.Logger = quietLogger(c.Stderr)
			q, err := queue.Open(ctx, cfg)
			if err != nil {
				fmt.Fprintf(c.Stderr, "snappea enqueue: %v\n", err)
				return ExitError
			}
			defer q.Close()
			return c.enqueue(ctx, q, task, raw, count, batch)
		},
	}
}

func (c *cmdEnv) enqueue(ctx context.Context, q *queue.Queue, task string, args json.RawMessage, count int, batch bool) int {
	out := bufio.NewWriter(c.Stdout)
	defer out.Flush()
	start := time.Now()
	done := 0
	var err error
	if batch {
		jobs := make([]queue.Job, count)
		for i := range jobs {
			jobs[i] = queue.Job{Task: task, Args: args}
		}
		var ids []int64
		ids, err = q.EnqueueMany(ctx, jobs)
		for _, id := range ids {
			fmt.Fprintln(out, id)
		}
		done = len(ids)
	} else {
		for ; done < count; done++ {
			var id int64
			id, err = q.Enqueue(ctx, task, args)
			if err != nil {
				break
			}
			fmt.Fprintln(out, id)
		}
	}
	elapsed := time.Since(start)
	if err != nil {
		out.Flush()
		fmt.Fprintf(c.Stderr, "snappea enqueue: %v (%d of %d queued before the error)\n", err, done, count)
		return ExitError
	}
	mode := "one transaction each"
	if batch {
		mode = "one transaction"
	}
	fmt.Fprintf(c.Stderr, "enqueued %d × %s in %s (%s, %.0f/s)\n",
		done, task, formatDuration(elapsed), mode, float64(done)/elapsed.Seconds())
	return ExitOK
}

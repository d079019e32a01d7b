package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/pidfile"
)

func (c *cmdEnv) cancelCommand() command {
	var (
		data dataFlags
		ctl  controlFlags
		fs   *flag.FlagSet
	)
	return command{
		name: "cancel", summary: "cancel a task: delete it if pending, cancel its context if running",
		flags: func() *flag.FlagSet {
			if fs == nil {
				fs = c.newFlagSet("cancel", "ID",
					"Cancels the task ID. A pending task (ready or delayed) is deleted: it never runs. A running\n"+
						"task's context is cancelled through the daemon's control socket; the handler decides when\n"+
						"it returns, and the task is neither retried nor recorded as failed. Exits 1 when the task\n"+
						"is neither pending nor running: it has finished, was never queued, or failed and waits for\n"+
						"a retry, which is a new task with its own id (the daemon logs it as retry_id).\n"+
						"On PostgreSQL (--database-url) a task that is not pending is cancelled through the database:\n"+
						"the request reaches whichever daemon runs it, on any host. No daemon answers for it, so the\n"+
						"command cannot tell whether one ran it; it exits 0 once the request is sent.")
				data.registerQueue(fs)
				ctl.register(fs)
			}
			return fs
		},
		run: func(ctx context.Context, args []string) int {
			if len(args) != 1 {
				return c.usagef("cancel", "want one task ID")
			}
			id, err := parseID(args[0])
			if err != nil {
				return c.usagef("cancel", "task ID %v", err)
			}
			q, err := data.openExisting(ctx)
			if err != nil {
				return c.fail("cancel", err)
			}
			// Pending first: a task claimed meanwhile is then running, and
			// the daemon is asked next.
			pending, err := q.Cancel(ctx, id)
			if err == nil && !pending && data.postgres() {
				err = q.Backend().RequestCancel(ctx, id)
				q.Close()
				if err != nil {
					return c.fail("cancel", fmt.Errorf("task %d is not pending; asking the daemons to cancel it: %w", id, err))
				}
				fmt.Fprintf(c.Stdout, "task %d is not pending: asked the daemons to cancel it; the one running it, if any, cancels its context\n", id)
				return ExitOK
			}
			q.Close()
			if err != nil {
				return c.fail("cancel", err)
			}
			if pending {
				fmt.Fprintf(c.Stdout, "cancelled pending task %d\n", id)
				return ExitOK
			}
			pid, _ := pidfile.Running(data.lockPath()) // for the message only
			var running bool
			err = c.daemonCall("cancel", &data, &ctl, pid).do(ctx, func(cl *control.Client, ctx context.Context) (err error) {
				running, err = cl.Cancel(ctx, id)
				return err
			})
			switch {
			case errors.Is(err, control.ErrNoDaemon):
				fmt.Fprintf(c.Stderr, "snappea cancel: task %d is not pending, and no daemon runs on %s to be running it: it has finished, or never existed\n", id, data.dir)
				return ExitError
			case err != nil:
				return c.fail("cancel", fmt.Errorf("task %d is not pending; asking the daemon whether it is running: %w", id, err))
			case !running:
				fmt.Fprintf(c.Stderr, "snappea cancel: task %d is neither pending nor running: it has finished, or never existed (a failed task's retry is a new task with its own id)\n", id)
				return ExitError
			}
			fmt.Fprintf(c.Stdout, "cancelled running task %d: its context is cancelled; the handler decides when it returns\n", id)
			return ExitOK
		},
	}
}

// parseID parses a task or failure id given as an argument.
func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("%q: want a positive whole number", s)
	}
	return id, nil
}

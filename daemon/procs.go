package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/prefork"
)

// poolRunner runs the foreman's isolated tasks on the process pool and
// turns a job's outcome into the task's error, as the foreman reads it.
type poolRunner struct{ p *prefork.Pool }

func (r poolRunner) RunProcess(ctx context.Context, t foreman.ProcessTask) error {
	res, err := r.p.Do(ctx, prefork.Job{ID: t.ID, Name: t.Name, Attempt: t.Attempt, MaxAttempts: t.MaxAttempts,
		Timeout: t.Timeout, Args: t.Args, EnqueuedAt: t.EnqueuedAt, Started: t.Started})
	if err != nil {
		// No child was free before the task's context ended (its timeout,
		// a cancel, the hard stop): the foreman reads the cause.
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for a worker process: %w", context.Cause(ctx))
		}
		return fmt.Errorf("run in a worker process: %w", err)
	}
	switch res.Outcome {
	case prefork.Done:
		return nil
	case prefork.Panicked:
		var pe *prefork.PanicError
		if errors.As(res.Err, &pe) {
			return &foreman.PanicError{Value: pe.Value, Stack: pe.Stack}
		}
	}
	return res.Err
}

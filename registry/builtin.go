package registry

import (
	"context"
	"errors"
	"time"
)

// The built-in tasks every snappea binary has, for smoke tests, benchmarks
// and checking a deployment end to end. Their names start with "snappea.",
// a prefix reserved for them.
const (
	NoopTask  = "snappea.noop"  // does nothing
	SleepTask = "snappea.sleep" // {"ms": N}: sleeps N milliseconds, or until cancelled
	EchoTask  = "snappea.echo"  // {"msg": S}: logs S at info level
	FailTask  = "snappea.fail"  // {"msg": S}: returns an error with text S
	PanicTask = "snappea.panic" // {"msg": S}: panics with S
)

// SleepArgs are the arguments of snappea.sleep.
type SleepArgs struct {
	MS int `json:"ms"`
}

// MsgArgs are the arguments of snappea.echo, snappea.fail and snappea.panic.
type MsgArgs struct {
	Msg string `json:"msg"`
}

// RegisterBuiltins adds the snappea.* tasks to r, skipping any that r
// already has.
func RegisterBuiltins(r *Registry) {
	add := func(name string, reg func()) {
		if !r.Has(name) {
			reg()
		}
	}
	add(NoopTask, func() {
		Register(r, NoopTask, func(context.Context, struct{}) error { return nil })
	})
	add(SleepTask, func() {
		Register(r, SleepTask, func(ctx context.Context, a SleepArgs) error {
			t := time.NewTimer(time.Duration(a.MS) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
	})
	add(EchoTask, func() {
		Register(r, EchoTask, func(ctx context.Context, a MsgArgs) error {
			Logger(ctx).InfoContext(ctx, a.Msg)
			return nil
		})
	})
	add(FailTask, func() {
		Register(r, FailTask, func(_ context.Context, a MsgArgs) error {
			if a.Msg == "" {
				a.Msg = "snappea.fail"
			}
			return errors.New(a.Msg)
		})
	})
	add(PanicTask, func() {
		Register(r, PanicTask, func(_ context.Context, a MsgArgs) error {
			if a.Msg == "" {
				a.Msg = "snappea.panic"
			}
			panic(a.Msg)
		})
	})
}

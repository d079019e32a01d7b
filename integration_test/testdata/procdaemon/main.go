// Command procdaemon is a daemon built on package cli whose tasks are
// isolated (registry.Options.Isolated) and misbehave in every way a child
// process can, for the integration tests of the process pool.
package main

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/snappea/snappea/cli"
	"github.com/snappea/snappea/registry"
)

// SleepArgs are the arguments of proc.sleep.
type SleepArgs struct {
	MS int `json:"ms"`
}

// leak keeps what proc.alloc50 allocates, as a leaking handler would.
var leak [][]byte

func main() {
	reg := registry.New()
	isolated := registry.Options{Isolated: true}
	none := func(name string, fn func(ctx context.Context) error) {
		registry.Register(reg, name, func(ctx context.Context, _ struct{}) error { return fn(ctx) }, isolated)
	}
	none("proc.exit3", func(context.Context) error { os.Exit(3); return nil })
	none("proc.panic", func(context.Context) error { panic("kaboom in a child") })
	// A panic on another goroutine cannot be recovered: the child crashes
	// with the Go runtime's report on its stderr.
	none("proc.gopanic", func(context.Context) error {
		go func() { panic("kaboom in a goroutine") }()
		select {}
	})
	none("proc.segv", func(context.Context) error {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		select {}
	})
	// proc.block ignores its context: only a kill ends it.
	none("proc.block", func(context.Context) error {
		for {
			time.Sleep(time.Hour)
		}
	})
	none("proc.alloc50", func(context.Context) error {
		b := make([]byte, 50<<20)
		for i := range b {
			b[i] = 1 // touch every page: resident, not just reserved
		}
		leak = append(leak, b)
		return nil
	})
	none("proc.work", func(ctx context.Context) error {
		select {
		case <-time.After(100 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	// proc.sleep sleeps MS milliseconds, or until its context ends.
	registry.Register(reg, "proc.sleep", func(ctx context.Context, a SleepArgs) error {
		select {
		case <-time.After(time.Duration(a.MS) * time.Millisecond):
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}, isolated)
	os.Exit(cli.Main(reg))
}

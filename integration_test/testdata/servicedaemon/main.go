// Command servicedaemon is a daemon built on package cli with a managed
// service that panics on its first two runs, and a task that ignores its
// context, for the integration tests.
package main

import (
	"context"
	"os"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea/cli"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/registry"
)

// DeafArgs are the arguments of test.deaf.
type DeafArgs struct {
	MS int `json:"ms"`
}

func main() {
	reg := registry.New()
	// test.deaf sleeps MS milliseconds whatever its context says.
	registry.Register(reg, "test.deaf", func(ctx context.Context, a DeafArgs) error {
		time.Sleep(time.Duration(a.MS) * time.Millisecond)
		return nil
	})
	var runs atomic.Int32
	os.Exit(cli.MainProgram(cli.Program{Registry: reg, Services: []foreman.Service{{
		Name: "flaky",
		Run: func(ctx context.Context) error {
			if runs.Add(1) <= 2 {
				panic("flaky service: failing on purpose")
			}
			<-ctx.Done()
			return nil
		},
	}}}))
}

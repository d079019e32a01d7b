// Command servicedaemon is a daemon built on package cli with a managed
// service that panics on its first two runs, for the integration tests.
package main

import (
	"context"
	"os"
	"sync/atomic"

	"github.com/snappea/snappea/cli"
	"github.com/snappea/snappea/foreman"
)

func main() {
	var runs atomic.Int32
	os.Exit(cli.MainProgram(cli.Program{Services: []foreman.Service{{
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

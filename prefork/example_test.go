package prefork_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/snappea/snappea/prefork"
)

// A program runs as the parent and, started again by the pool, as the
// child. Its child side is one branch at the top of main (here, this test
// binary's TestMain does it):
//
//	if os.Getenv(prefork.EnvFD) != "" {
//		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
//		err := prefork.ServeChild(ctx, tasks) // tasks: a *registry.Registry
//		stop()
//		...
//	}
func Example() {
	exe, err := os.Executable()
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, err := prefork.New(prefork.Config{
		Command: func() *exec.Cmd { return exec.Command(exe) },
		Min:     1,
		Max:     2,
		Logger:  slog.New(slog.DiscardHandler), // the default logs the child's death
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ran := make(chan error)
	go func() { ran <- pool.Run(context.Background()) }()

	ctx := context.Background()
	for _, name := range []string{"noop", "fail", "exit3"} {
		res, err := pool.Do(ctx, prefork.Job{ID: 1, Name: name, Timeout: time.Minute})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(name+":", res.Outcome, res.Err)
	}

	stop, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := pool.Shutdown(stop)
	fmt.Println("shutdown:", err, st.Terminated)
	fmt.Println("run:", <-ran)
	// Output:
	// noop: done <nil>
	// fail: failed smtp down
	// exit3: died worker process died: exit status 3
	// shutdown: <nil> 0
	// run: <nil>
}

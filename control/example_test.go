package control_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/snappea/snappea/control"
)

// daemon is a Handler that knows little: a real daemon asks its foreman
// and its queue.
type daemon struct{ workers int }

func (d *daemon) Status(ctx context.Context) (*control.Status, error) {
	return &control.Status{State: "running", WorkersTotal: d.workers, Pending: 3}, nil
}
func (d *daemon) Health(ctx context.Context) error                         { return nil }
func (d *daemon) Pause(ctx context.Context) error                          { return nil }
func (d *daemon) Resume(ctx context.Context) error                         { return nil }
func (d *daemon) Reload(ctx context.Context) error                         { return nil }
func (d *daemon) Stop(ctx context.Context, now bool) error                 { return nil }
func (d *daemon) SetWorkers(ctx context.Context, n int) error              { d.workers = n; return nil }
func (d *daemon) SetProcs(ctx context.Context, l control.ProcLimits) error { return nil }
func (d *daemon) Cancel(ctx context.Context, id int64) (bool, error) {
	return false, nil
}

func Example() {
	dir, err := os.MkdirTemp("", "snappea-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, control.SocketFile)

	// The daemon listens while it holds the single-instance lock.
	srv, err := control.Listen(path, &daemon{workers: 4}, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()

	// The command line asks it.
	cl := control.Dial(path)
	st, err := cl.Status(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d workers, %d pending, pid is ours: %v\n", st.State, st.WorkersTotal, st.Pending, st.PID == os.Getpid())

	stop()
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	_, err = cl.Status(context.Background())
	fmt.Println("after the stop, no daemon:", errors.Is(err, control.ErrNoDaemon))
	// Output:
	// running, 4 workers, 3 pending, pid is ours: true
	// after the stop, no daemon: true
}

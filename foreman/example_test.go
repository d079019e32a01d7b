package foreman_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/wakeup"
)

// The foreman alone: the queue is the source of tasks, the wakeup watcher
// the waker, the registry the runner. This is the loop and the pool only:
// without a Store, there are no retries and no failed record. To embed a
// complete daemon (retries, the failed record, checkpoints, statistics,
// schedules, the lock), use package daemon.
func Example() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	tasks := registry.New()
	done := make(chan struct{})
	greet := registry.Register(tasks, "greet", func(ctx context.Context, name string) error {
		fmt.Println("hello,", name)
		close(done)
		return nil
	})

	q, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	w, err := wakeup.New(wakeup.Config{Dir: q.Config().WakeupDir})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := foreman.New(foreman.Config{Source: q, Waker: w, Runner: tasks, Workers: 4, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- f.Run(ctx) }()

	if _, err := greet.Enqueue(ctx, q, "world"); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := f.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	<-stopped
	fmt.Printf("%+v\n", f.Counters())
	// Output:
	// hello, world
	// {Done:1 Failed:0 Panicked:0 Discarded:0 Interrupted:0 Cancelled:0 Retried:0 Overdue:0}
}

package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/snappea/snappea/daemon"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// Embedding the daemon in a program of your own: one constructor gives
// everything 'snappea run' has, here a task that fails once and is retried.
func Example() {
	dir, _ := os.MkdirTemp("", "snappea-daemon-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	tasks := registry.New()
	var attempts atomic.Int32
	synced := make(chan struct{})
	sync := registry.Register(tasks, "sync", func(ctx context.Context, account string) error {
		if attempts.Add(1) == 1 {
			return errors.New("upstream busy") // retried after a backoff
		}
		fmt.Println("synced", account)
		close(synced)
		return nil
	}, registry.Options{MaxAttempts: 3})

	q, err := queue.Open(ctx, queue.Config{Dir: dir, Registry: tasks})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := daemon.New(daemon.Config{Queue: q, Registry: tasks, RetryBackoff: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- d.Run(ctx) }()

	if _, err := sync.Enqueue(ctx, q, "ada"); err != nil {
		log.Fatal(err)
	}
	<-synced
	if err := d.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	if err := <-stopped; err != nil {
		log.Fatal(err)
	}
	c := d.Foreman().Counters()
	fmt.Println("attempts", attempts.Load(), "done", c.Done, "retried", c.Retried)
	// Output:
	// synced ada
	// attempts 2 done 1 retried 1
}

package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/metrics"
	"github.com/snappea/snappea/queue"
)

// The daemon listens first, so that a busy port stops it from starting,
// passes the Metrics to the foreman as an observer and serves until it
// stops. Here the foreman's call is made by hand.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	m, err := metrics.New(metrics.Config{
		Snapshot: func(ctx context.Context) (metrics.Snapshot, error) {
			// In the daemon: the queue's and the foreman's state.
			return metrics.Snapshot{Pending: 12, Ready: 12, WorkersBusy: 3, WorkersTotal: 16}, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := m.Listen("127.0.0.1:0") // port 0: any free port
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx, ln) }()

	// In the daemon: foreman.Config{Observers: []foreman.Observer{m}}.
	m.Finished(&queue.Task{Name: "email.send"}, foreman.Done, 40*time.Millisecond)

	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, `snappea_tasks_finished_total{outcome="done",task="email.send"}`) ||
			strings.HasPrefix(line, "snappea_tasks_pending ") ||
			strings.HasPrefix(line, "snappea_workers_busy ") ||
			strings.HasPrefix(line, "snappea_up ") {
			fmt.Println(line)
		}
	}
	resp.Body.Close()

	cancel()
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	// Output:
	// snappea_tasks_finished_total{outcome="done",task="email.send"} 1
	// snappea_tasks_pending 12
	// snappea_up 1
	// snappea_workers_busy 3
}

package stats_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/stats"
)

// The daemon passes the Recorder to the foreman as an observer and runs
// it next to the foreman; here the foreman's calls are made by hand, and
// Flush stands in for the end of Run.
func Example() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	q, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	now := time.Date(2024, 5, 1, 12, 0, 30, 0, time.UTC)
	rec, err := stats.New(stats.Config{
		Store:   q,
		Backlog: func(context.Context) (int64, error) { return 3, nil },
		Now:     func() time.Time { return now },
	})
	if err != nil {
		log.Fatal(err)
	}
	// In the daemon: foreman.Config{Observers: []foreman.Observer{rec}}
	// and go rec.Run(ctx).
	email := &queue.Task{Name: "email.send"}
	rec.Finished(email, foreman.Done, 120*time.Millisecond)
	rec.Finished(email, foreman.Failed, 80*time.Millisecond)
	rec.Finished(&queue.Task{Name: "thumbnail"}, foreman.Done, 2*time.Second)
	if err := rec.Flush(ctx); err != nil {
		log.Fatal(err)
	}

	rows, err := stats.Read(ctx, q, now.Add(-time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rows {
		fmt.Println(r.Minute.UTC().Format("15:04"), r.Task, r.Count, r.Failures, r.Max, r.Backlog)
	}
	for _, s := range stats.Summarize(rows) {
		fmt.Printf("%s: %d finished, %d failed, mean %v\n", s.Task, s.Count, s.Failures, s.Mean)
	}
	// Output:
	// 12:00 email.send 2 1 120ms 3
	// 12:00 thumbnail 1 0 2s 3
	// email.send: 2 finished, 1 failed, mean 100ms
	// thumbnail: 1 finished, 0 failed, mean 2s
}

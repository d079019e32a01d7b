package foreman_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/wakeup"
)

// BenchmarkBurnDown drains a backlog of no-op tasks with the real queue,
// wakeup watcher and registry: the daemon's throughput without the process
// around it. Reported as tasks/s.
func BenchmarkBurnDown(b *testing.B) {
	const backlog = 20000
	ctx := context.Background()
	reg := registry.New()
	registry.RegisterBuiltins(reg)
	jobs := make([]queue.Job, backlog)
	for i := range jobs {
		jobs[i] = queue.Job{Task: registry.NoopTask}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		q, err := queue.Open(ctx, queue.Config{Dir: filepath.Join(b.TempDir(), "data")})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := q.EnqueueMany(ctx, jobs); err != nil {
			b.Fatal(err)
		}
		// The daemon is another process: claim through a fresh handle,
		// with a cold page cache, as it would.
		q.Close()
		if q, err = queue.Open(ctx, q.Config()); err != nil {
			b.Fatal(err)
		}
		w, err := wakeup.New(wakeup.Config{Dir: q.Config().WakeupDir})
		if err != nil {
			b.Fatal(err)
		}
		f, err := foreman.New(foreman.Config{Source: q, Waker: w, Runner: reg, Workers: 16, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		runCtx, cancel := context.WithCancel(ctx)
		stopped := make(chan error)
		go func() { stopped <- f.Run(runCtx) }()
		for f.Counters().Done < backlog {
			time.Sleep(100 * time.Microsecond)
		}
		total += time.Since(start)
		b.StopTimer()
		cancel()
		<-stopped
		w.Close()
		q.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(backlog*b.N)/total.Seconds(), "tasks/s")
}

// BenchmarkPickupLatency enqueues one task at a time into an idle foreman
// through a separate queue handle (its own connections, as a web server
// would have) and measures from Enqueue's return (committed, wake sent) to
// the handler's start: the wakeup round trip plus a claim. Reports p50 and
// p99 in microseconds.
func BenchmarkPickupLatency(b *testing.B) {
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "data")
	reg := registry.New()
	startedAt := make(chan time.Time, 1)
	probe := registry.Register(reg, "probe", func(context.Context, struct{}) error {
		startedAt <- time.Now()
		return nil
	})
	daemonQ, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer daemonQ.Close()
	w, err := wakeup.New(wakeup.Config{Dir: daemonQ.Config().WakeupDir})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := foreman.New(foreman.Config{Source: daemonQ, Waker: w, Runner: reg, Workers: 16, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error)
	go func() { stopped <- f.Run(runCtx) }()
	defer func() { cancel(); <-stopped }()

	producer, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer producer.Close()
	var lat []time.Duration
	for b.Loop() {
		if _, err := probe.Enqueue(ctx, producer, struct{}{}); err != nil {
			b.Fatal(err)
		}
		enqueued := time.Now()
		lat = append(lat, (<-startedAt).Sub(enqueued))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

package foreman_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
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

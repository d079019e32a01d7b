package postgres

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage"
)

// The burn-down benchmarks run the real foreman on this backend (Claim,
// Promote, the Waker) over 20,000 queued no-op tasks, as the issue's
// burn-down figures do, without the daemon around it: the share of the
// backend in them.
//
//	go test -run X -bench BurnDown -benchtime 3x ./storage/postgres

// noopRunner runs every task as a no-op.
type noopRunner struct{}

func (noopRunner) Run(context.Context, string, []byte) error { return nil }
func (noopRunner) Options(string) registry.Options           { return registry.Options{} }

// counter closes done when want tasks have finished.
type counter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (c *counter) Finished(*snappea.Task, foreman.Outcome, time.Duration) {
	if c.n.Add(1) == c.want {
		close(c.done)
	}
}

// burnDown measures the foreman with workers from the first claim to the
// last of 20,000 tasks finished, the insert left out.
func burnDown(b *testing.B, workers int) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	const n = 20_000
	rows := make([]storage.Row, n)
	for i := range rows {
		rows[i] = storage.Row{Task: "noop", Args: []byte(`{}`), CreatedAt: time.Now()}
	}
	w, err := be.Waker(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var total time.Duration
	for range b.N {
		if _, err := be.Insert(ctx, nil, rows); err != nil {
			b.Fatal(err)
		}
		c := &counter{want: n, done: make(chan struct{})}
		f, err := foreman.New(foreman.Config{Source: be, Waker: w, Runner: noopRunner{}, Workers: workers,
			Observers: []foreman.Observer{c}, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		start := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- f.Run(rctx) }()
		select {
		case <-c.done:
		case <-time.After(2 * time.Minute):
			b.Fatal("burn-down not done in 2 minutes")
		}
		total += time.Since(start)
		cancel()
		<-errc
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
}

func BenchmarkBurnDown16(b *testing.B)  { burnDown(b, 16) }
func BenchmarkBurnDown100(b *testing.B) { burnDown(b, 100) }

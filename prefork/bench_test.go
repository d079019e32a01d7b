package prefork_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snappea/snappea/prefork"
)

// BenchmarkPool_Do is the round trip of a no-op job through the pool:
// frame out, run in the child, frame back. With 2 children two callers
// keep both busy; tasks/s is the burn-down rate.
func BenchmarkPool_Do(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(map[int]string{1: "procs=1", 2: "procs=2"}[procs], func(b *testing.B) {
			p := startPool(b, prefork.Config{Min: procs, Max: procs})
			waitFor(b, "the children to be ready", func() bool { return countState(p.Snapshot(), prefork.Idle) == procs })
			ctx := context.Background()
			var id atomic.Int64
			job := func() {
				res, err := p.Do(ctx, prefork.Job{ID: id.Add(1), Name: "noop"})
				if err != nil || res.Outcome != prefork.Done {
					b.Fatalf("noop: %v %v %v", res.Outcome, res.Err, err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			if procs == 1 {
				for b.Loop() {
					job()
				}
			} else {
				b.SetParallelism(1) // GOMAXPROCS callers: 2 on this machine
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						job()
					}
				})
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
		})
	}
}

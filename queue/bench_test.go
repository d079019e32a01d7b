package queue

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkEnqueue(b *testing.B) {
	ctx := context.Background()
	q := mustOpen(b, Config{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.Enqueue(ctx, "snappea.noop", nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnqueueMany(b *testing.B) {
	ctx := context.Background()
	q := mustOpen(b, Config{})
	jobs := make([]Job, 100)
	for i := range jobs {
		jobs[i] = Job{Task: "snappea.noop"}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.EnqueueMany(ctx, jobs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(jobs))/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkClaim(b *testing.B) {
	for _, n := range []int{1, 16, 100} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ctx := context.Background()
			q := mustOpen(b, Config{})
			jobs := make([]Job, 1000)
			for i := range jobs {
				jobs[i] = Job{Task: "snappea.noop"}
			}
			b.ReportAllocs()
			claimed := 0
			for b.Loop() {
				ts, err := q.Claim(ctx, n)
				if err != nil {
					b.Fatal(err)
				}
				if len(ts) < n {
					b.StopTimer()
					q.EnqueueMany(ctx, jobs)
					b.StartTimer()
				}
				claimed += len(ts)
			}
			b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

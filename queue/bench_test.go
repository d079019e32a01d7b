package queue

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
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
			q := mustOpen(b, Config{})
			jobs := make([]Job, 1000)
			for i := range jobs {
				jobs[i] = Job{Task: "snappea.noop"}
			}
			claimLoop(b, q, n, jobs)
		})
	}
}

func BenchmarkEnqueueWith(b *testing.B) {
	ctx := context.Background()
	q := mustOpen(b, Config{})
	opts := registry.Options{Priority: 3, Delay: time.Minute}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.EnqueueWith(ctx, "snappea.noop", nil, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnqueueBacklog measures what Config.MaxBacklog costs an
// enqueue: limit=on should be within 10% of limit=off. The limit (2^20) is
// never reached. With waiting tasks whose ids are dense, the id span shows
// at once that the backlog is within the limit; with a far-off id among
// them (sparse), every refresh counts all the waiting tasks' index
// entries, the worst case.
func BenchmarkEnqueueBacklog(b *testing.B) {
	for _, bc := range []struct {
		name    string
		waiting int
		sparse  bool
	}{
		{"waiting=0", 0, false},
		{"waiting=100000", 100_000, false},
		{"waiting=100000,sparse", 100_000, true},
	} {
		for _, limit := range []int{0, 1 << 20} {
			name := bc.name + "/limit=off"
			if limit > 0 {
				name = bc.name + "/limit=on"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				q := mustOpen(b, Config{MaxBacklog: limit})
				if _, err := q.DB().ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
					INSERT INTO snappea_tasks (task, args, created_at) SELECT 'snappea.noop', 'null', 0 FROM n`, bc.waiting); err != nil {
					b.Fatal(err)
				}
				if bc.sparse {
					if _, err := q.DB().ExecContext(ctx, `INSERT INTO snappea_tasks (id, task, args, created_at)
						VALUES (1 << 40, 'snappea.noop', 'null', 0)`); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := q.Enqueue(ctx, "snappea.noop", nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkClaimPriorities is BenchmarkClaim with the queue's tasks spread
// over five priorities.
func BenchmarkClaimPriorities(b *testing.B) {
	for _, n := range []int{1, 16, 100} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			q := mustOpen(b, Config{})
			jobs := make([]Job, 1000)
			for i := range jobs {
				jobs[i] = Job{Task: "snappea.noop", Options: registry.Options{Priority: i%5 - 2}}
			}
			claimLoop(b, q, n, jobs)
		})
	}
}

// BenchmarkPromoteNothingDue is the daemon's check on every loop when no
// delayed task is due: one indexed read.
func BenchmarkPromoteNothingDue(b *testing.B) {
	ctx := context.Background()
	q := mustOpen(b, Config{})
	jobs := make([]Job, 1000)
	for i := range jobs {
		jobs[i] = Job{Task: "snappea.noop", Options: registry.Options{Delay: time.Hour}}
	}
	if _, err := q.EnqueueMany(ctx, jobs); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.Promote(ctx, now); err != nil {
			b.Fatal(err)
		}
	}
}

// claimLoop claims n tasks per iteration, refilling the queue with jobs
// (untimed) when it runs short, and reports tasks/s.
func claimLoop(b *testing.B, q *Queue, n int, jobs []Job) {
	ctx := context.Background()
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
}

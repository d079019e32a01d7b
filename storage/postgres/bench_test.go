package postgres

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

var churn = flag.Int("churn", 1_000_000, "tasks BenchmarkClaimChurned churns through the table before it measures")

// Run with, for example:
//
//	SNAPPEA_TEST_DATABASE_URL=postgres://... go test -run X -bench . -benchtime 2000x ./storage/postgres

func BenchmarkInsert(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	rows := []storage.Row{{Task: "bench", Args: []byte(`{"n":1}`), CreatedAt: time.Now()}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := be.Insert(ctx, nil, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkInsertBatch100(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	rows := make([]storage.Row, 100)
	for i := range rows {
		rows[i] = storage.Row{Task: "bench", Args: []byte(`{"n":1}`), CreatedAt: time.Now()}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := be.Insert(ctx, nil, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// prefill puts n ready tasks in the table, server-side.
func prefill(b *testing.B, be *Backend, n int) {
	b.Helper()
	_, err := be.DB().ExecContext(context.Background(), `INSERT INTO `+be.q.tasks+` (task, args, created_at)
		SELECT 'bench', '{"n":1}', 0 FROM generate_series(1, $1)`, n)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := be.DB().ExecContext(context.Background(), `ANALYZE `+be.q.tasks); err != nil {
		b.Fatal(err)
	}
}

// depth is how many tasks stay queued under the measured claims.
const depth = 10_000

func benchClaim(b *testing.B, be *Backend, n int) {
	ctx := context.Background()
	prefill(b, be, b.N*n+depth)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ts, err := be.Claim(ctx, n)
		if err != nil {
			b.Fatal(err)
		}
		if len(ts) != n {
			b.Fatalf("claimed %d tasks, want %d", len(ts), n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkClaim16(b *testing.B)  { benchClaim(b, mustOpen(b, Config{}), 16) }
func BenchmarkClaim100(b *testing.B) { benchClaim(b, mustOpen(b, Config{}), 100) }

// BenchmarkClaimChurned is BenchmarkClaim16 after -churn tasks went
// through the table (inserted in batches, claimed 100 at a time), as in a
// daemon's life, Maintenance running: compare the two. -churn 0 with
// Config.VacuumEvery -1 shows what autovacuum alone does.
func BenchmarkClaimChurned(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	// The daemon's upkeep runs throughout, as in a daemon.
	stopped := make(chan error)
	go func() { stopped <- be.Maintenance(ctx) }()
	defer func() { cancel(); <-stopped }()
	start := time.Now()
	for done := 0; done < *churn; {
		n := min(10_000, *churn-done)
		prefill(b, be, n)
		for left := n; left > 0; {
			ts, err := be.Claim(ctx, 100)
			if err != nil {
				b.Fatal(err)
			}
			left -= len(ts)
		}
		done += n
	}
	b.Logf("churned %d tasks through in %v", *churn, time.Since(start).Round(time.Millisecond))
	benchClaim(b, be, 16)
}

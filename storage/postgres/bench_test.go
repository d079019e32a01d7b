package postgres

import (
	"context"
	"flag"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/snappea/snappea/storage"
)

var vacuumEvery = flag.Int("vacuum-every", 0, "Config.VacuumEvery of TestClaimAfterChurn's backends; -1: autovacuum alone")

var churn = flag.Int("churn", 0, "tasks TestClaimAfterChurn churns through the table before it measures; 0: skip it")

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

// BenchmarkInsertBatch20000Tx is the shape of `snappea enqueue --batch`
// and of a large EnqueueMany: one Insert call of many rows, in a
// transaction of the caller's.
func BenchmarkInsertBatch20000Tx(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	rows := make([]storage.Row, 20_000)
	for i := range rows {
		rows[i] = storage.Row{Task: "bench", Args: []byte(`{"n":1}`), CreatedAt: time.Now()}
	}
	b.ReportAllocs()
	for b.Loop() {
		tx, err := be.DB().BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := be.Insert(ctx, tx, rows); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkInsertBatchKeyed5000 is one Insert call of 5,000 rows with
// keys of their own: the statement that reports duplicates.
func BenchmarkInsertBatchKeyed5000(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	rows := make([]storage.Row, 5000)
	k := 0
	for b.Loop() {
		for i := range rows {
			k++
			rows[i] = storage.Row{Task: "bench", Args: []byte(`{"n":1}`), CreatedAt: time.Now(), Key: "k" + strconv.Itoa(k)}
		}
		if _, err := be.Insert(ctx, nil, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rows)*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// prefill puts n ready tasks in the table, server-side.
func prefill(b testing.TB, be *Backend, n int) {
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

// TestClaimAfterChurn measures the claim of 16 on a fresh table and on one
// that -churn tasks went through (inserted in batches, claimed 100 at a
// time), as in a daemon's life, Maintenance running on both. The two are
// measured in alternating rounds, so that the machine's load weighs on
// both alike, and the medians logged. It asserts nothing: timing belongs
// in benchmarks, not in tests that a loaded machine can fail.
//
//	go test -run TestClaimAfterChurn -churn 1000000 -v ./storage/postgres
//
// -vacuum-every -1 shows what autovacuum alone does.
func TestClaimAfterChurn(t *testing.T) {
	if *churn <= 0 {
		t.Skip("set -churn N (for example -churn 1000000) to measure the claim after N tasks churned through the table")
	}
	churned, fresh := mustOpen(t, Config{VacuumEvery: *vacuumEvery}), mustOpen(t, Config{VacuumEvery: *vacuumEvery})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 2)
	for _, be := range []*Backend{churned, fresh} {
		go func() { stopped <- be.Maintenance(ctx) }()
	}
	defer func() { cancel(); <-stopped; <-stopped }()

	start := time.Now()
	for done := 0; done < *churn; {
		n := min(10_000, *churn-done)
		prefill(t, churned, n)
		for left := n; left > 0; {
			ts, err := churned.Claim(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			left -= len(ts)
		}
		done += n
	}
	t.Logf("churned %d tasks through in %v", *churn, time.Since(start).Round(time.Millisecond))

	const rounds, perRound = 9, 200
	for _, be := range []*Backend{churned, fresh} {
		prefill(t, be, rounds*perRound*16+depth)
	}
	times := map[*Backend][]time.Duration{}
	for range rounds {
		for _, be := range []*Backend{fresh, churned} {
			start := time.Now()
			for range perRound {
				if ts, err := be.Claim(ctx, 16); err != nil || len(ts) != 16 {
					t.Fatalf("Claim(16): %d tasks, %v", len(ts), err)
				}
			}
			times[be] = append(times[be], time.Since(start)/perRound)
		}
	}
	median := func(ds []time.Duration) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	f, c := median(times[fresh]), median(times[churned])
	t.Logf("claim of 16, median of %d rounds of %d: fresh table %v, after %d tasks churned %v: %.2fx",
		rounds, perRound, f, *churn, c, float64(c)/float64(f))
	var sizes [2]int64
	if err := churned.DB().QueryRowContext(ctx, `SELECT pg_relation_size($1::regclass), pg_indexes_size($1::regclass)`,
		churned.q.tasks).Scan(&sizes[0], &sizes[1]); err == nil {
		t.Logf("churned table: heap %d kB, indexes %d kB", sizes[0]>>10, sizes[1]>>10)
	}
}

// BenchmarkWakeRoundTrip is an insert's commit to the Waker's wake: the
// wakeup's share of pickup latency, with a producer and a listener on
// connections of their own.
func BenchmarkWakeRoundTrip(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	w, err := be.Waker(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	rows := []storage.Row{{Task: "bench", Args: []byte(`{}`), CreatedAt: time.Now()}}
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := be.Insert(ctx, nil, rows); err != nil {
			b.Fatal(err)
		}
		select {
		case <-w.Wakes():
		case <-time.After(10 * time.Second):
			b.Fatal("no wake within 10s of an insert")
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// The floor benchmarks run the backend's statements on a *pgx.Conn of
// their own, without database/sql and the backend's code around them:
// what this machine and server allow at best, to compare the others with.

func floorConn(b *testing.B, be *Backend) *pgx.Conn {
	conn, err := pgx.ConnectConfig(context.Background(), be.conn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func BenchmarkFloorInsert(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	conn := floorConn(b, be)
	var key *string
	for b.Loop() {
		var id int64
		var woke bool
		if err := conn.QueryRow(ctx, be.q.insertOne, "bench", `{"n":1}`, time.Now().UnixNano(), 0, 0, 1, 0, 0, key,
			be.wakeChan).Scan(&id, &woke); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkFloorClaim16(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	conn := floorConn(b, be)
	const n = 16
	prefill(b, be, b.N*n+depth)
	b.ResetTimer()
	for range b.N {
		rows, err := conn.Query(ctx, be.q.claim, n)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for rows.Next() {
			got++
		}
		if rows.Err() != nil || got != n {
			b.Fatalf("claimed %d, %v", got, rows.Err())
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkFloorCopy20000 is BenchmarkInsertBatch20000Tx's ids and COPY
// in one transaction, in one chunk.
func BenchmarkFloorCopy20000(b *testing.B) {
	be := mustOpen(b, Config{})
	ctx := context.Background()
	conn := floorConn(b, be)
	const n = 20_000
	rows := make([][]any, n)
	for b.Loop() {
		tx, err := conn.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var ids []int64
		var woke bool
		if err := tx.QueryRow(ctx, be.q.drawIDs, n, be.wakeChan).Scan(&ids, &woke); err != nil {
			b.Fatal(err)
		}
		for i := range rows {
			rows[i] = []any{ids[i], "bench", `{"n":1}`, int64(0), int32(0), int64(0), int32(1), int32(0), int64(0)}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{be.cfg.Schema, "tasks"}, copyColumns, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

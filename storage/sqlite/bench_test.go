package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// The claim's cost with and without the ledger, per task: a backlog
// claimed 16 at a time, as a daemon of 16 workers does, the ledger's
// records of the tasks claimed before removed in batches as the daemon
// removes them (see package daemon).

func BenchmarkClaim16(b *testing.B) { benchClaim(b, false, fixedN) }

func BenchmarkClaimFor16(b *testing.B) { benchClaim(b, true, fixedN) }

// BenchmarkClaimVaryingN claims 1 to 16 tasks in turn, as a daemon whose
// workers free up unevenly does: a statement that SQLite prepared again
// for each new count (LIMIT ? rather than LIMIT ?+0) shows here, not in
// the benchmarks of a fixed count.
func BenchmarkClaimVaryingN(b *testing.B) { benchClaim(b, false, varyingN) }

func BenchmarkClaimForVaryingN(b *testing.B) { benchClaim(b, true, varyingN) }

func fixedN(int) int { return 16 }

func varyingN(i int) int { return 1 + i%16 }

func benchClaim(b *testing.B, ledger bool, count func(i int) int) {
	ctx := context.Background()
	be := mustOpenBench(b)
	rows := make([]storage.Row, 2000)
	for i := range rows {
		rows[i] = storage.Row{Task: "snappea.noop", Args: []byte("null"), CreatedAt: time.Now(), Attempt: 1}
	}
	var finished []int64
	claimed, claims := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		var r storage.ClaimRequest
		if len(finished) >= ledgerBatch {
			r.Finished, finished = finished, nil
		}
		r.Owner, r.N = 1, count(claims)
		claims++
		var n int
		if ledger {
			c, err := be.ClaimFor(ctx, r)
			if err != nil {
				b.Fatal(err)
			}
			ts := c.Tasks
			for _, t := range ts {
				finished = append(finished, t.ID)
			}
			n = len(ts)
		} else {
			ts, err := be.Claim(ctx, r.N)
			if err != nil {
				b.Fatal(err)
			}
			n = len(ts)
		}
		claimed += n
		if n < r.N {
			b.StopTimer()
			if _, err := be.Insert(ctx, nil, rows); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "tasks/s")
}

func mustOpenBench(b *testing.B) *Backend {
	b.Helper()
	dir := b.TempDir()
	be, err := Open(context.Background(), Config{Path: dir + "/snappea.db", WakeupDir: dir + "/wakeup"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return be
}

// ledgerBatch is package daemon's ledgerFinishBatch.
const ledgerBatch = 256

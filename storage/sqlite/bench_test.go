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

func BenchmarkClaim16(b *testing.B) { benchClaim(b, false) }

func BenchmarkClaimFor16(b *testing.B) { benchClaim(b, true) }

func benchClaim(b *testing.B, ledger bool) {
	ctx := context.Background()
	be := mustOpenBench(b)
	rows := make([]storage.Row, 2000)
	for i := range rows {
		rows[i] = storage.Row{Task: "snappea.noop", Args: []byte("null"), CreatedAt: time.Now(), Attempt: 1}
	}
	var finished []int64
	claimed := 0
	b.ReportAllocs()
	for b.Loop() {
		var r storage.ClaimRequest
		if len(finished) >= ledgerBatch {
			r.Finished, finished = finished, nil
		}
		r.Owner, r.N = 1, 16
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
			ts, err := be.Claim(ctx, 16)
			if err != nil {
				b.Fatal(err)
			}
			n = len(ts)
		}
		claimed += n
		if n < 16 {
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

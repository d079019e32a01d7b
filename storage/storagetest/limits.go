package storagetest

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// Limits: ClaimRequest.MaxRunning and serial keys.

func claimFor(t *testing.T, b storage.Backend, r storage.ClaimRequest) storage.Claimed {
	t.Helper()
	c, err := b.ClaimFor(ctxOf(t), r)
	if err != nil {
		t.Fatalf("ClaimFor(%+v): %v", r, err)
	}
	return c
}

func testMaxRunning(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	in := mustInsert(t, b, row("a"), row("b"), row("a"), row("a"), row("b"), row("a"))
	lim := map[string]int{"a": 2}
	c := claimFor(t, b, storage.ClaimRequest{Owner: 1, N: 10, MaxRunning: lim})
	if want := []int64{in[0].ID, in[1].ID, in[2].ID, in[4].ID}; !slices.Equal(ids(c.Tasks), want) || !c.Held {
		t.Fatalf("claim with a limit of 2 on a: %v, held %v; want %v, held", ids(c.Tasks), c.Held, want)
	}
	// The limit counts every owner's.
	if c := claimFor(t, b, storage.ClaimRequest{Owner: 2, N: 10, MaxRunning: lim}); len(c.Tasks) != 0 || !c.Held {
		t.Errorf("claim by another owner while 2 of a run: %v, held %v; want none, held", ids(c.Tasks), c.Held)
	}
	c = claimFor(t, b, storage.ClaimRequest{Owner: 2, N: 10, MaxRunning: lim, Finished: []int64{in[0].ID}})
	if want := []int64{in[3].ID}; !slices.Equal(ids(c.Tasks), want) {
		t.Errorf("claim after one a finished: %v, want %v", ids(c.Tasks), want)
	}
	// Without the limit the rest go.
	c = claimFor(t, b, storage.ClaimRequest{Owner: 2, N: 10})
	if want := []int64{in[5].ID}; !slices.Equal(ids(c.Tasks), want) || c.Held {
		t.Errorf("claim without limits: %v, held %v; want %v, not held", ids(c.Tasks), c.Held, want)
	}
	if st, err := b.Stats(ctx); err != nil || st.Pending != 0 {
		t.Errorf("Stats: %+v, %v; want none pending", st, err)
	}
}

func keyed(task, serial string) storage.Row {
	r := row(task)
	r.SerialKey = serial
	return r
}

func testSerialKeys(t *testing.T, b storage.Backend) {
	delayed := keyed("k", "p:2")
	delayed.RunAt = time.Now().Add(time.Hour)
	in := mustInsert(t, b, keyed("k", "p:1"), keyed("k", "p:1"), row("free"), keyed("m", "p:3"), keyed("k", "p:1"),
		delayed, keyed("k", "p:2"))
	c := claimFor(t, b, storage.ClaimRequest{Owner: 1, N: 10})
	// p:2's ready task waits behind its delayed elder: FIFO by enqueue.
	if want := []int64{in[0].ID, in[2].ID, in[3].ID}; !slices.Equal(ids(c.Tasks), want) || !c.Held {
		t.Fatalf("first claim: %v, held %v; want %v (one per key), held", ids(c.Tasks), c.Held, want)
	}
	if c.Tasks[0].SerialKey != "p:1" || c.Tasks[1].SerialKey != "" {
		t.Errorf("claimed tasks' serial keys: %q, %q; want p:1 and none", c.Tasks[0].SerialKey, c.Tasks[1].SerialKey)
	}
	if c := claimFor(t, b, storage.ClaimRequest{Owner: 2, N: 10}); len(c.Tasks) != 0 || !c.Held {
		t.Errorf("claim while p:1 runs: %v, held %v; want none, held", ids(c.Tasks), c.Held)
	}
	for _, want := range []int64{in[1].ID, in[4].ID} {
		c := claimFor(t, b, storage.ClaimRequest{Owner: 2, N: 10, Finished: []int64{in[0].ID, in[1].ID}})
		if !slices.Equal(ids(c.Tasks), []int64{want}) {
			t.Errorf("claim after p:1's task ended: %v, want [%d]", ids(c.Tasks), want)
		}
	}
	if got := mustClaim(t, b, 10); len(got) != 1 || got[0].ID != in[6].ID {
		t.Errorf("Claim, which knows no limits: %v, want [%d]", ids(got), in[6].ID)
	}
}

// testLimitsConcurrent: claimers of several owners at once never have
// more in flight than the limits allow.
func testLimitsConcurrent(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	const n = 120
	rows := make([]storage.Row, 0, 3*n)
	for i := range n {
		rows = append(rows, row("lim"), keyed("ser", "one"), row("free"))
		_ = i
	}
	mustInsert(t, b, rows...)
	lim := map[string]int{"lim": 3}
	var limRunning, serRunning atomic.Int64
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := int64(w + 1)
			deadline := time.Now().Add(time.Minute)
			for done.Load() < 3*n && time.Now().Before(deadline) {
				c, err := b.ClaimFor(ctx, storage.ClaimRequest{Owner: owner, N: 4, MaxRunning: lim})
				if err != nil {
					t.Error(err)
					return
				}
				for _, task := range c.Tasks {
					switch task.Name {
					case "lim":
						if n := limRunning.Add(1); n > 3 {
							t.Errorf("%d tasks of lim in flight, limit 3", n)
						}
					case "ser":
						if n := serRunning.Add(1); n > 1 {
							t.Errorf("%d tasks of serial key one in flight, want 1", n)
						}
					}
				}
				// Ended: counted out before their records go, so the
				// counts never exceed what is in flight.
				var fin []int64
				for _, task := range c.Tasks {
					switch task.Name {
					case "lim":
						limRunning.Add(-1)
					case "ser":
						serRunning.Add(-1)
					}
					fin = append(fin, task.ID)
				}
				if err := b.Finish(ctx, fin); err != nil {
					t.Error(err)
					return
				}
				done.Add(int64(len(fin)))
			}
		}()
	}
	wg.Wait()
	if got := done.Load(); got != 3*n {
		t.Errorf("%d tasks claimed in all, want %d", got, 3*n)
	}
}

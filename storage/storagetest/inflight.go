package storagetest

import (
	"slices"
	"sync"
	"testing"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// The ledger of tasks in flight: ClaimFor, Finish, InFlight, RecoverLost,
// CountLost.

func mustClaimFor(t *testing.T, b storage.Backend, r storage.ClaimRequest) []snappea.Task {
	t.Helper()
	c, err := b.ClaimFor(ctxOf(t), r)
	if err != nil {
		t.Fatalf("ClaimFor(%+v): %v", r, err)
	}
	return c.Tasks
}

func inFlightIDs(t *testing.T, b storage.Backend) []int64 {
	t.Helper()
	fs, err := b.InFlight(ctxOf(t), 0)
	if err != nil {
		t.Fatalf("InFlight: %v", err)
	}
	out := make([]int64, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

func testLedger(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	r := row("a")
	r.Priority, r.MaxAttempts, r.Attempt = 2, 5, 3
	in := mustInsert(t, b, r, row("b"), row("c"))
	got := mustClaimFor(t, b, storage.ClaimRequest{Owner: 7, N: 2})
	if want := []int64{in[0].ID, in[1].ID}; !slices.Equal(ids(got), want) {
		t.Fatalf("ClaimFor claimed %v, want %v", ids(got), want)
	}
	fs, err := b.InFlight(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].ID != in[0].ID || fs[0].Owner != 7 || fs[0].Task != "a" || fs[0].Attempt != 3 ||
		fs[0].MaxAttempts != 5 || fs[0].Priority != 2 || fs[0].Started.IsZero() || fs[0].Args != nil {
		t.Errorf("InFlight after the claim: got %+v, want tasks %d and %d of owner 7, without args", fs, in[0].ID, in[1].ID)
	}
	if st, err := b.Stats(ctx); err != nil || st.Pending != 1 {
		t.Errorf("Stats after the claim: %+v, %v; want 1 pending (in flight is not pending)", st, err)
	}
	// The next claim removes the finished records first.
	got = mustClaimFor(t, b, storage.ClaimRequest{Owner: 7, N: 5, Finished: []int64{in[0].ID}})
	if want := []int64{in[2].ID}; !slices.Equal(ids(got), want) {
		t.Fatalf("second ClaimFor claimed %v, want %v", ids(got), want)
	}
	if got, want := inFlightIDs(t, b), []int64{in[1].ID, in[2].ID}; !slices.Equal(got, want) {
		t.Errorf("InFlight after a claim with Finished: %v, want %v", got, want)
	}
	// Nothing to claim: the finished records still go.
	if got := mustClaimFor(t, b, storage.ClaimRequest{Owner: 7, N: 5, Finished: []int64{in[1].ID}}); len(got) != 0 {
		t.Errorf("ClaimFor on an empty queue claimed %v", ids(got))
	}
	if err := b.Finish(ctx, []int64{in[2].ID}); err != nil {
		t.Fatal(err)
	}
	if got := inFlightIDs(t, b); len(got) != 0 {
		t.Errorf("InFlight after Finish: %v, want none", got)
	}
	// Claim, without a ledger, records nothing.
	mustInsert(t, b, row("d"))
	mustClaim(t, b, 1)
	if got := inFlightIDs(t, b); len(got) != 0 {
		t.Errorf("InFlight after Claim: %v, want none", got)
	}
}

func testRecoverLost(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	retry := row("again")
	retry.MaxAttempts, retry.Priority = 3, 4
	used := row("again")
	used.Attempt, used.MaxAttempts = 3, 3
	in := mustInsert(t, b, row("once"), retry, used, row("mine"))
	mustClaimFor(t, b, storage.ClaimRequest{Owner: 1, N: 3})
	mustClaimFor(t, b, storage.ClaimRequest{Owner: 2, N: 1})

	lost, err := b.RecoverLost(ctx, storage.Recovery{Whose: storage.NotOwnedBy, Owner: 2, Cause: snappea.LostDied,
		Retry: map[string]int{"again": 3}, At: base})
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 3 || lost[0].ID != in[0].ID || lost[1].ID != in[1].ID || lost[2].ID != in[2].ID {
		t.Fatalf("RecoverLost took %+v, want tasks %d, %d, %d", lost, in[0].ID, in[1].ID, in[2].ID)
	}
	if lost[0].FailureID == 0 || lost[0].RetryID != 0 || lost[0].Owner != 1 || lost[0].Task != "once" {
		t.Errorf("the task without RetryLost: %+v, want a failed record", lost[0])
	}
	if lost[1].RetryID == 0 || lost[1].FailureID != 0 {
		t.Errorf("the task with RetryLost and attempts left: %+v, want a new task", lost[1])
	}
	if lost[2].FailureID == 0 || lost[2].RetryID != 0 {
		t.Errorf("the task with RetryLost and no attempts left: %+v, want a failed record", lost[2])
	}
	if got, want := inFlightIDs(t, b), []int64{in[3].ID}; !slices.Equal(got, want) {
		t.Errorf("InFlight after recovering the others': %v, want owner 2's %v", got, want)
	}
	f, err := b.Failure(ctx, lost[0].FailureID)
	if err != nil {
		t.Fatal(err)
	}
	if f.TaskID != in[0].ID || f.Task != "once" || f.Error != snappea.LostDied || f.Attempts != 1 ||
		string(f.Args) != `{}` || !f.FailedAt.Equal(base) {
		t.Errorf("failed record of the lost task: %+v", f)
	}
	again := mustClaim(t, b, 10)
	if len(again) != 1 || again[0].ID != lost[1].RetryID || again[0].Name != "again" || again[0].Attempt != 2 ||
		again[0].MaxAttempts != 3 || again[0].Priority != 4 || string(again[0].Args) != `{}` {
		t.Errorf("the task enqueued again: %+v, want task %d, attempt 2 of 3, priority 4", again, lost[1].RetryID)
	}
	if n, err := b.CountLost(ctx); err != nil || n != 2 {
		t.Errorf("CountLost: %d, %v; want 2", n, err)
	}

	// A stopping daemon's own.
	lost, err = b.RecoverLost(ctx, storage.Recovery{Whose: storage.OwnedBy, Owner: 2, Cause: snappea.LostInterrupted, At: base})
	if err != nil || len(lost) != 1 || lost[0].ID != in[3].ID || lost[0].FailureID == 0 {
		t.Fatalf("RecoverLost of owner 2's own: %+v, %v", lost, err)
	}
	if f, err := b.Failure(ctx, lost[0].FailureID); err != nil || f.Error != snappea.LostInterrupted {
		t.Errorf("failed record of the interrupted task: %+v, %v", f, err)
	}
	if n, err := b.CountLost(ctx); err != nil || n != 3 {
		t.Errorf("CountLost: %d, %v; want 3", n, err)
	}
	if lost, err := b.RecoverLost(ctx, storage.Recovery{Whose: storage.NotOwnedBy, Cause: snappea.LostDied, At: base}); err != nil || len(lost) != 0 {
		t.Errorf("RecoverLost of an empty ledger: %+v, %v", lost, err)
	}
}

func testRecoverGone(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	live, err := b.RegisterDaemon(ctx, storage.Daemon{Host: "h", PID: 1, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.RegisterDaemon(ctx, storage.Daemon{Host: "h", PID: 2, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := mustInsert(t, b, row("a"), row("b"), row("c"))
	mustClaimFor(t, b, storage.ClaimRequest{Owner: live, N: 1})
	mustClaimFor(t, b, storage.ClaimRequest{Owner: other, N: 1})
	mustClaimFor(t, b, storage.ClaimRequest{Owner: other + 1000, N: 1}) // no row: removed, or never there
	lost, err := b.RecoverLost(ctx, storage.Recovery{Whose: storage.GoneOwners, Owner: live, Cause: snappea.LostDied, At: base})
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 1 || lost[0].ID != in[2].ID {
		t.Errorf("RecoverLost of gone daemons took %+v, want only task %d, whose daemon has no row", lost, in[2].ID)
	}
	// A daemon unregistered (or removed after it was gone long) is gone.
	if err := b.UnregisterDaemon(ctx, other); err != nil {
		t.Fatal(err)
	}
	lost, err = b.RecoverLost(ctx, storage.Recovery{Whose: storage.GoneOwners, Owner: live, Cause: snappea.LostDied, At: base})
	if err != nil || len(lost) != 1 || lost[0].ID != in[1].ID {
		t.Errorf("RecoverLost after the other daemon's row went: %+v, %v; want task %d", lost, err, in[1].ID)
	}
	if got, want := inFlightIDs(t, b), []int64{in[0].ID}; !slices.Equal(got, want) {
		t.Errorf("InFlight: %v, want the live daemon's %v", got, want)
	}
}

// testConcurrentRecovery: daemons recovering at once take each record
// once between them.
func testConcurrentRecovery(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	const n = 200
	rows := make([]storage.Row, n)
	for i := range rows {
		rows[i] = row("t")
	}
	mustInsert(t, b, rows...)
	for owner := int64(1); owner <= 4; owner++ {
		mustClaimFor(t, b, storage.ClaimRequest{Owner: owner, N: n / 4})
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for w := int64(1); w <= 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lost, err := b.RecoverLost(ctx, storage.Recovery{Whose: storage.NotOwnedBy, Owner: 100 + w,
				Cause: snappea.LostDied, Retry: map[string]int{"t": 2}, At: base})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, l := range lost {
				seen[l.ID]++
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("recovered %d records, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("record %d recovered %d times", id, c)
		}
	}
	if got := len(mustClaim(t, b, 2*n)); got != n {
		t.Errorf("%d tasks enqueued again, want %d", got, n)
	}
}

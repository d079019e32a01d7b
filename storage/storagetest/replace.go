package storagetest

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// replacing is a row of key that replaces its key's holder, with args.
func replacing(key, args string) storage.Row {
	r := row("digest")
	r.Key, r.Replace, r.Args = key, true, []byte(args)
	return r
}

// pendingOf is the pending task holding key, failing the test if there is
// not exactly one.
func pendingOf(t *testing.T, b storage.Backend, key string) storage.PendingTask {
	t.Helper()
	ps, err := b.Pending(ctxOf(t), storage.PendingFilter{Limit: 1000})
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	var found []storage.PendingTask
	for _, p := range ps {
		if p.Key == key {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("pending tasks with key %s: %+v, want one", key, found)
	}
	return found[0]
}

// testReplace is OnDuplicate Replace: a row overwrites its key's pending
// holder (its id kept, its due time kept unless Reschedule), in order
// within one call.
func testReplace(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	first := mustInsert(t, b, replacing("r", `{"n":1}`))[0]
	if first.Duplicate || first.Replaced {
		t.Fatalf("first row with key r: got %+v, want a new task", first)
	}
	// Everything but the id and the due time is the newest row's.
	newest := storage.Row{Task: "digest2", Args: []byte(`{"n":2}`), CreatedAt: base.Add(time.Second), Priority: 7,
		Attempt: 1, MaxAttempts: 4, Timeout: time.Minute, Key: "r", Replace: true, SerialKey: "s2"}
	got := mustInsert(t, b, newest)[0]
	if !got.Replaced || got.Duplicate || got.ID != first.ID {
		t.Fatalf("replace of key r: got %+v, want Replaced with id %d", got, first.ID)
	}
	ts := mustClaim(t, b, 10)
	want := snappea.Task{ID: first.ID, Name: "digest2", Args: []byte(`{"n":2}`), EnqueuedAt: base.Add(time.Second),
		Priority: 7, Attempt: 1, MaxAttempts: 4, Timeout: time.Minute, Key: "r", SerialKey: "s2"}
	if len(ts) != 1 || ts[0].ID != want.ID || ts[0].Name != want.Name || string(ts[0].Args) != string(want.Args) ||
		!ts[0].EnqueuedAt.Equal(want.EnqueuedAt) || ts[0].Priority != want.Priority || ts[0].Attempt != want.Attempt ||
		ts[0].MaxAttempts != want.MaxAttempts || ts[0].Timeout != want.Timeout || ts[0].Key != want.Key ||
		ts[0].SerialKey != want.SerialKey {
		t.Errorf("claimed after a replace: got %+v, want %+v", ts, want)
	}

	// A claimed holder no longer holds its key: the next replace is a new
	// pending task.
	again := mustInsert(t, b, replacing("r", `{"n":3}`))[0]
	if again.Replaced || again.Duplicate || again.ID == first.ID {
		t.Errorf("replace after the holder was claimed: got %+v, want a new task", again)
	}
	mustClaim(t, b, 10)

	// Without Reschedule a replace keeps the holder's due time, ready or
	// delayed; the row's own RunAt applies only to a new task.
	d := replacing("d", `{"n":1}`)
	d.RunAt = base.Add(time.Hour)
	held := mustInsert(t, b, d)[0]
	soon := replacing("d", `{"n":2}`)
	mustInsert(t, b, soon)
	if p := pendingOf(t, b, "d"); p.ID != held.ID || !p.RunAt.Equal(base.Add(time.Hour)) {
		t.Errorf("replace without Reschedule of a delayed task: got %+v, want id %d due %v", p, held.ID, base.Add(time.Hour))
	}
	later := replacing("d", `{"n":3}`)
	later.RunAt = base.Add(3 * time.Hour)
	mustInsert(t, b, later)
	if p := pendingOf(t, b, "d"); !p.RunAt.Equal(base.Add(time.Hour)) {
		t.Errorf("replace without Reschedule with a RunAt: due %v, want %v kept", p.RunAt, base.Add(time.Hour))
	}

	// With Reschedule a ready task becomes delayed; the next due time
	// moves with it, later or sooner.
	ready := mustInsert(t, b, replacing("e", `{"n":1}`))[0]
	push := replacing("e", `{"n":2}`)
	push.RunAt, push.Reschedule = base.Add(2*time.Hour), true
	if res := mustInsert(t, b, push)[0]; !res.Replaced || res.ID != ready.ID {
		t.Fatalf("rescheduling replace: got %+v, want Replaced with id %d", res, ready.ID)
	}
	if got := mustClaim(t, b, 10); len(got) != 0 {
		t.Fatalf("claimed a task that a replace made due later: %v", ids(got))
	}
	next, err := b.Promote(ctx, base)
	if err != nil || !next.Equal(base.Add(time.Hour)) {
		t.Errorf("Promote: next %v, %v; want %v (key d's)", next, err, base.Add(time.Hour))
	}
	pull := replacing("d", `{"n":4}`)
	pull.RunAt, pull.Reschedule = base.Add(30*time.Minute), true
	mustInsert(t, b, pull)
	if next, err := b.Promote(ctx, base); err != nil || !next.Equal(base.Add(30*time.Minute)) {
		t.Errorf("Promote after a replace made key d due sooner: next %v, %v; want %v", next, err, base.Add(30*time.Minute))
	}
	push2 := replacing("d", `{"n":5}`)
	push2.RunAt, push2.Reschedule = base.Add(4*time.Hour), true
	mustInsert(t, b, push2)
	if next, err := b.Promote(ctx, base); err != nil || !next.Equal(base.Add(2*time.Hour)) {
		t.Errorf("Promote after a replace made key d due later: next %v, %v; want %v (key e's)", next, err, base.Add(2*time.Hour))
	}
	if next, err := b.Promote(ctx, base.Add(2*time.Hour)); err != nil || !next.Equal(base.Add(4*time.Hour)) {
		t.Errorf("Promote at key e's due time: next %v, %v; want %v", next, err, base.Add(4*time.Hour))
	}
	if got := mustClaim(t, b, 10); len(got) != 1 || got[0].ID != ready.ID || string(got[0].Args) != `{"n":2}` {
		t.Errorf("claim at key e's due time: got %+v, want task %d with the newest arguments", got, ready.ID)
	}
	if _, err := b.Promote(ctx, base.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := mustClaim(t, b, 10); len(got) != 1 || got[0].ID != held.ID || string(got[0].Args) != `{"n":5}` {
		t.Errorf("claim at key d's due time: got %+v, want task %d with the newest arguments", got, held.ID)
	}
}

// testReplaceBatch has several rows of one key in one call: they apply in
// order, so the key's task ends as the last Replace row of them.
func testReplaceBatch(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	keep := row("digest")
	keep.Key, keep.Args = "k", []byte(`{"n":3}`)
	res := mustInsert(t, b, replacing("k", `{"n":1}`), row("plain"), replacing("k", `{"n":2}`), keep,
		replacing("k", `{"n":4}`), replacing("j", `{"n":1}`))
	id := res[0].ID
	if res[0].Replaced || res[0].Duplicate || res[1].Replaced || res[1].Duplicate ||
		!res[2].Replaced || res[2].ID != id || !res[3].Duplicate || res[3].ID != id ||
		!res[4].Replaced || res[4].ID != id || res[5].Replaced || res[5].Duplicate || res[5].ID == id {
		t.Errorf("batch of replaces: got %+v, want new, new, Replaced %[2]d, Duplicate %[2]d, Replaced %[2]d, new", res, id)
	}
	// A holder written before the call, then replaced twice in it; a Keep
	// row first of a call.
	mustInsert(t, b, replacing("j", `{"n":2}`), replacing("j", `{"n":3}`))
	keepFirst := row("digest")
	keepFirst.Key, keepFirst.Args = "m", []byte(`{"n":1}`)
	res2 := mustInsert(t, b, keepFirst, replacing("m", `{"n":2}`))
	if res2[0].Replaced || res2[0].Duplicate || !res2[1].Replaced || res2[1].ID != res2[0].ID {
		t.Errorf("Keep then Replace of a new key: got %+v", res2)
	}
	args := map[string]string{}
	for _, task := range mustClaim(t, b, 100) {
		if task.Key != "" {
			if _, dup := args[task.Key]; dup {
				t.Errorf("two tasks claimed with key %s", task.Key)
			}
			args[task.Key] = string(task.Args)
		}
	}
	want := map[string]string{"k": `{"n":4}`, "j": `{"n":3}`, "m": `{"n":2}`}
	if fmt.Sprint(args) != fmt.Sprint(want) {
		t.Errorf("claimed after batches of replaces: got %v, want %v", args, want)
	}

	// In the caller's transaction: a rollback leaves the holder as it was.
	mustInsert(t, b, replacing("t", `{"n":1}`))
	boom := errors.New("boom")
	err := b.WriteTx(ctx, func(tx *sql.Tx) error {
		res, err := b.Insert(ctx, tx, []storage.Row{replacing("t", `{"n":2}`)})
		if err != nil {
			return err
		}
		if !res[0].Replaced {
			t.Errorf("replace in a transaction: got %+v, want Replaced", res[0])
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteTx: got %v, want fn's error", err)
	}
	if got := mustClaim(t, b, 10); len(got) != 1 || string(got[0].Args) != `{"n":1}` {
		t.Errorf("after a rolled-back replace: got %+v, want the holder's own arguments", got)
	}
}

// seq is the arguments of testReplaceRace's producers.
type seq struct{ P, N int }

// testReplaceRace has several producers replace one key at once, each
// with increasing sequence numbers, while a claimer takes the key's tasks:
// no replace is lost or doubled, and the task left pending holds the last
// replace committed, of some producer's last number.
func testReplaceRace(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	const producers, each = 6, 40
	type result struct {
		p, n int
		ins  storage.Inserted
	}
	results := make(chan result, producers*each)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			<-start
			for n := range each {
				args, _ := json.Marshal(seq{p, n})
				res, err := b.Insert(ctx, nil, []storage.Row{replacing("race", string(args))})
				if err != nil {
					t.Errorf("producer %d: Insert: %v", p, err)
					return
				}
				results <- result{p, n, res[0]}
			}
		})
	}
	claimerCtx, stop := context.WithCancel(ctx)
	var claimed []snappea.Task
	claimerDone := make(chan struct{})
	go func() {
		defer close(claimerDone)
		for i := 0; claimerCtx.Err() == nil && i < 20; i++ {
			ts, err := b.Claim(claimerCtx, 10)
			if err != nil {
				if claimerCtx.Err() == nil {
					t.Errorf("Claim: %v", err)
				}
				return
			}
			claimed = append(claimed, ts...)
		}
	}()
	close(start)
	wg.Wait()
	stop()
	<-claimerDone
	close(results)

	created := map[int64]bool{}
	var all []result
	for r := range results {
		all = append(all, r)
		if r.ins.Duplicate {
			t.Errorf("producer %d's row %d: Duplicate, want new or Replaced", r.p, r.n)
		}
		if !r.ins.Replaced {
			if created[r.ins.ID] {
				t.Errorf("two new tasks reported with id %d", r.ins.ID)
			}
			created[r.ins.ID] = true
		}
	}
	for _, r := range all {
		if r.ins.Replaced && !created[r.ins.ID] {
			t.Errorf("producer %d's row %d replaced task %d, which no row created", r.p, r.n, r.ins.ID)
		}
	}
	// The claimer may have taken the last task too.
	left := mustClaim(t, b, 10)
	if len(left) > 1 {
		t.Fatalf("tasks pending with the key after the race: %d, want at most 1", len(left))
	}
	tasks := append(claimed, left...)
	var got []int64
	for _, task := range tasks {
		got = append(got, task.ID)
	}
	slices.Sort(got)
	var want []int64
	for id := range created {
		want = append(want, id)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tasks claimed %v, want exactly the tasks created %v", got, want)
	}
	// The newest task got every replace committed after it was created
	// (while it was pending, it held the key; once claimed, a replace
	// would have created a newer one), so it ran with the last committed:
	// some producer's last row.
	newest := slices.MaxFunc(tasks, func(a, b snappea.Task) int { return cmp.Compare(a.ID, b.ID) })
	var last seq
	if err := json.Unmarshal(newest.Args, &last); err != nil {
		t.Fatalf("arguments of the newest task: %v", err)
	}
	if last.N != each-1 {
		t.Errorf("the newest task holds producer %d's row %d, want a producer's last row (%d): a later replace was lost",
			last.P, last.N, each-1)
	}
}

package queue

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

// pendingRunAt is the run_at column of the pending task id: 0 when ready.
func pendingRunAt(t testing.TB, q *Queue, id int64) int64 {
	t.Helper()
	var runAt int64
	if err := q.DB().QueryRow(`SELECT run_at FROM snappea_tasks WHERE id = ?`, id).Scan(&runAt); err != nil {
		t.Fatalf("run_at of task %d: %v", id, err)
	}
	return runAt
}

func TestQueue_Replace(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	replace := registry.Options{Key: "k", OnDuplicate: registry.Replace}
	first := mustEnqueueWith(t, q, "t", 1, replace)
	if first.Duplicate || first.Replaced {
		t.Fatalf("first enqueue with Replace = %+v, want a new task", first)
	}
	clearWake(t, q)
	got := mustEnqueueWith(t, q, "u", 2, registry.Options{Key: "k", OnDuplicate: registry.Replace, Priority: 4})
	if want := (registry.Result{ID: first.ID, Replaced: true}); got != want {
		t.Errorf("second enqueue with Replace = %+v, want %+v", got, want)
	}
	if !wakePending(q) {
		t.Error("a replace did not wake the daemon")
	}
	// Keep, the default, still keeps what Replace wrote.
	if got := mustEnqueueWith(t, q, "t", 3, registry.Options{Key: "k"}); got != (registry.Result{ID: first.ID, Duplicate: true}) {
		t.Errorf("enqueue with Keep over a replaced task = %+v, want a duplicate of %d", got, first.ID)
	}
	ts := mustClaim(t, q, 10)
	if len(ts) != 1 || ts[0].ID != first.ID || ts[0].Name != "u" || string(ts[0].Args) != "2" || ts[0].Priority != 4 {
		t.Errorf("claimed %+v, want task %d as the replace wrote it: u, 2, priority 4", ts, first.ID)
	}

	// Debounce: a new task is due Debounce after its enqueue; a replace
	// pushes a ready task back the same way.
	ready := mustEnqueueWith(t, q, "t", 1, registry.Options{Key: "d", OnDuplicate: registry.Replace})
	if pendingRunAt(t, q, ready.ID) != 0 {
		t.Fatal("a replace without Debounce was written delayed")
	}
	before := time.Now()
	res := mustEnqueueWith(t, q, "t", 2, registry.Options{Key: "d", OnDuplicate: registry.Replace, Debounce: time.Hour})
	after := time.Now()
	runAt := pendingRunAt(t, q, ready.ID)
	if !res.Replaced || runAt < before.Add(time.Hour).UnixNano() || runAt > after.Add(time.Hour).UnixNano() {
		t.Errorf("debounced replace = %+v, due in %v; want Replaced, due in an hour", res, time.Until(time.Unix(0, runAt)))
	}
	if ts := mustClaim(t, q, 10); len(ts) != 0 {
		t.Errorf("claimed %+v, which a debounce pushed back", ts)
	}
	fresh := mustEnqueueWith(t, q, "t", 1, registry.Options{Key: "e", OnDuplicate: registry.Replace, Debounce: time.Minute})
	if fresh.Replaced || pendingRunAt(t, q, fresh.ID) < before.Add(time.Minute).UnixNano() {
		t.Errorf("a new debounced task = %+v, not delayed by its Debounce", fresh)
	}

	// Bad combinations are refused before anything is written.
	for _, opts := range []registry.Options{
		{OnDuplicate: registry.Replace},
		{Key: "k", Debounce: time.Second},
		{Key: "k", OnDuplicate: registry.Replace, Debounce: time.Second, Delay: time.Second},
	} {
		if _, err := q.EnqueueWith(ctx, "t", nil, opts); !errors.Is(err, registry.ErrBadOptions) {
			t.Errorf("EnqueueWith(%+v) = %v, want ErrBadOptions", opts, err)
		}
	}
}

// A definition's Replace and Debounce apply with each enqueue's own Key.
func TestQueue_ReplaceDefaults(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	digest := registry.Register(reg, "digest", func(context.Context, int) error { return nil },
		registry.Options{OnDuplicate: registry.Replace, Debounce: time.Hour})
	q := mustOpen(t, Config{Registry: reg})
	first, err := digest.EnqueueWith(ctx, q, 1, registry.Options{Key: "user:1"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := digest.EnqueueWith(ctx, q, 2, registry.Options{Key: "user:1"})
	if err != nil || !second.Replaced || second.ID != first.ID {
		t.Errorf("second enqueue = %+v, %v; want Replaced with id %d", second, err, first.ID)
	}
	if pendingRunAt(t, q, first.ID) == 0 {
		t.Error("the definition's Debounce did not delay the task")
	}
	if _, err := digest.Enqueue(ctx, q, 3); !errors.Is(err, registry.ErrBadOptions) || !strings.Contains(err.Error(), "needs a Key") {
		t.Errorf("enqueue without a Key of a Replace task = %v, want ErrBadOptions saying it needs a Key", err)
	}
	// A call's Keep wins over the definition's Replace, and drops its
	// Debounce.
	kept, err := digest.EnqueueWith(ctx, q, 4, registry.Options{Key: "user:1", OnDuplicate: registry.Keep})
	if err != nil || !kept.Duplicate || kept.ID != first.ID {
		t.Errorf("enqueue with Keep = %+v, %v; want a duplicate of %d", kept, err, first.ID)
	}
}

func TestQueue_ReplaceMany(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{MaxBacklog: 4})
	replace := registry.Options{Key: "k", OnDuplicate: registry.Replace}
	held := mustEnqueueWith(t, q, "t", 0, replace)
	ids, err := q.EnqueueMany(ctx, []Job{
		{Task: "t", Args: 1, Options: replace},
		{Task: "t", Args: 2, Options: registry.Options{Key: "k"}},
		{Task: "t", Args: 3, Options: replace},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] != held.ID || ids[1] != 0 || ids[2] != held.ID {
		t.Errorf("ids = %v, want %d, 0 (a duplicate), %[2]d", ids, held.ID)
	}
	// Replaces add no task: the backlog has room for three more.
	for i := range 3 {
		if _, err := q.Enqueue(ctx, "t", i); err != nil {
			t.Fatalf("enqueue %d after replaces with MaxBacklog 4: %v", i, err)
		}
	}
	ts := mustClaim(t, q, 10)
	if len(ts) != 4 || ts[0].ID != held.ID || string(ts[0].Args) != "3" {
		t.Errorf("claimed %+v, want task %d with the last replace's arguments first", ts, held.ID)
	}
}

// Producers with Queues of their own (as separate processes have) replace
// one key at once: one task is pending, with the last replace committed.
func TestQueue_ReplaceConcurrentProducers(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	const producers, each = 4, 30
	qs := make([]*Queue, producers)
	for i := range qs {
		qs[i] = mustOpen(t, Config{Dir: dir})
	}
	type seq struct{ P, N int }
	var wg sync.WaitGroup
	for p, q := range qs {
		wg.Go(func() {
			for n := range each {
				if _, err := q.EnqueueWith(ctx, "t", seq{p, n}, registry.Options{Key: "k", OnDuplicate: registry.Replace}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	ts := mustClaim(t, qs[0], 10)
	if len(ts) != 1 {
		t.Fatalf("%d tasks pending for one replaced key, want 1", len(ts))
	}
	var last seq
	if err := json.Unmarshal(ts[0].Args, &last); err != nil {
		t.Fatal(err)
	}
	if last.N != each-1 {
		t.Errorf("pending task holds producer %d's enqueue %d, want a producer's last (%d)", last.P, last.N, each-1)
	}
}

func TestQueue_InlineReplace(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	var ran []int
	registry.Register(reg, "t", func(_ context.Context, n int) error { ran = append(ran, n); return nil })
	q := mustOpen(t, Config{Registry: reg, Inline: true})
	tx, err := q.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	held, err := q.EnqueueWithTx(ctx, tx, "t", 1, registry.Options{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// A replace of a committed task not yet run: it runs once, later, with
	// the newest arguments.
	res := mustEnqueueWith(t, q, "t", 2, registry.Options{Key: "k", OnDuplicate: registry.Replace})
	if res != (registry.Result{ID: held.ID, Replaced: true}) || len(ran) != 0 {
		t.Errorf("inline replace = %+v after runs %v; want Replaced %d, nothing run yet", res, ran, held.ID)
	}
	if err := q.Notify(); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || ran[0] != 2 {
		t.Errorf("ran %v, want [2]", ran)
	}
	// With no holder, it runs at once.
	if res := mustEnqueueWith(t, q, "t", 3, registry.Options{Key: "k", OnDuplicate: registry.Replace}); res.Replaced || len(ran) != 2 {
		t.Errorf("inline replace with no holder = %+v after runs %v", res, ran)
	}
}

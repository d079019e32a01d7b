package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/wakeup"
)

func mustEnqueueWith(t testing.TB, q *Queue, task string, args any, opts registry.Options) registry.Result {
	t.Helper()
	res, err := q.EnqueueWith(context.Background(), task, args, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustPromote(t testing.TB, q *Queue, now time.Time) time.Time {
	t.Helper()
	next, err := q.Promote(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// countRows counts snappea_tasks rows matching where (SQL).
func countRows(t testing.TB, q *Queue, where string, args ...any) int {
	t.Helper()
	var n int
	if err := q.DB().QueryRow(`SELECT count(*) FROM snappea_tasks WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func clearWake(t testing.TB, q *Queue) {
	t.Helper()
	err := os.Remove(filepath.Join(q.Config().WakeupDir, wakeup.FileName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

func TestQueue_ClaimOrder(t *testing.T) {
	tests := []struct {
		name       string
		priorities []int // enqueued in this order; task i has args i
		batch      int   // claimed this many at a time
		want       []int // args in claim order
	}{
		{"FIFO without priorities", []int{0, 0, 0, 0}, 3, []int{0, 1, 2, 3}},
		{"higher first", []int{0, 5, 10}, 10, []int{2, 1, 0}},
		{"FIFO within a priority", []int{1, 2, 1, 2, 1}, 10, []int{1, 3, 0, 2, 4}},
		{"negative below default", []int{-1, 0, -5, 0}, 10, []int{1, 3, 0, 2}},
		{"order holds across claims", []int{0, 5, -1, 5, 0, 10}, 2, []int{5, 1, 3, 0, 4, 2}},
		{"one at a time", []int{3, 1, 2}, 1, []int{0, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustOpen(t, Config{})
			for i, p := range tt.priorities {
				mustEnqueueWith(t, q, "t", i, registry.Options{Priority: p})
			}
			var got []int
			for {
				ts := mustClaim(t, q, tt.batch)
				if len(ts) == 0 {
					break
				}
				for _, task := range ts {
					var i int
					fmt.Sscan(string(task.Args), &i)
					if task.Priority != tt.priorities[i] {
						t.Errorf("task %d: Priority = %d, want %d", i, task.Priority, tt.priorities[i])
					}
					got = append(got, i)
				}
			}
			if !equal(got, tt.want) {
				t.Errorf("claim order = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQueue_ClaimReturnsOptions(t *testing.T) {
	q := mustOpen(t, Config{})
	res := mustEnqueueWith(t, q, "t", nil, registry.Options{Priority: 2, Timeout: 3 * time.Second, MaxAttempts: 4, Key: "k"})
	ts := mustClaim(t, q, 1)
	want := Task{ID: res.ID, Name: "t", Args: []byte("null"), Priority: 2, Attempt: 1, MaxAttempts: 4,
		Timeout: 3 * time.Second, Key: "k"}
	if len(ts) != 1 {
		t.Fatalf("claimed %d tasks, want 1", len(ts))
	}
	got := ts[0]
	got.EnqueuedAt = time.Time{}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("claimed %+v, want %+v", got, want)
	}
}

func TestQueue_Delayed(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	now := time.Now()
	clearWake(t, q)
	hour := mustEnqueueWith(t, q, "t", "hour", registry.Options{Delay: time.Hour})
	if !wakePending(q) {
		t.Error("no wakeup after a delayed enqueue: the daemon must learn the new due time")
	}
	at := now.Add(2 * time.Hour).Truncate(time.Second)
	mustEnqueueWith(t, q, "t", "two hours", registry.Options{RunAt: at, Delay: time.Minute}) // RunAt wins
	mustEnqueueWith(t, q, "t", "past", registry.Options{RunAt: now.Add(-time.Hour)})         // ready now
	mustEnqueueWith(t, q, "t", "now", registry.Options{})

	s, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending != 4 || s.Ready != 2 || s.Delayed != 2 {
		t.Errorf("Stats = pending %d, ready %d, delayed %d; want 4, 2, 2", s.Pending, s.Ready, s.Delayed)
	}
	if d := s.NextDue.Sub(now); d < time.Hour || d > time.Hour+time.Minute {
		t.Errorf("Stats.NextDue = now+%v, want now+1h", d)
	}

	if got := argsOf(mustClaim(t, q, 10)); got != `"past" "now"` {
		t.Errorf("claimed %s before any promote, want only the ready tasks", got)
	}
	// Not yet due: nothing changes, and Promote says when to look again.
	next := mustPromote(t, q, now.Add(time.Minute))
	if d := next.Sub(now); d < time.Hour || d > time.Hour+time.Minute {
		t.Errorf("Promote(now+1m) = now+%v, want now+1h", d)
	}
	if got := argsOf(mustClaim(t, q, 10)); got != "" {
		t.Errorf("claimed %s after promoting nothing", got)
	}
	// The first is due.
	if next := mustPromote(t, q, now.Add(90*time.Minute)); !next.Equal(at) {
		t.Errorf("Promote(now+90m) = %v, want the second's due time %v", next, at)
	}
	ts := mustClaim(t, q, 10)
	if got := argsOf(ts); got != `"hour"` {
		t.Errorf("claimed %s after promoting the first, want it alone", got)
	}
	if len(ts) == 1 && ts[0].ID != hour.ID {
		t.Errorf("claimed id %d, want %d", ts[0].ID, hour.ID)
	}
	// At exactly its due time, the second is due; none is left.
	if next := mustPromote(t, q, at); !next.IsZero() {
		t.Errorf("Promote with nothing left delayed = %v, want the zero time", next)
	}
	if got := argsOf(mustClaim(t, q, 10)); got != `"two hours"` {
		t.Errorf("claimed %s, want the second", got)
	}
	if next := mustPromote(t, q, time.Now()); !next.IsZero() {
		t.Errorf("Promote on an empty queue = %v, want the zero time", next)
	}
}

// A promoted task keeps its priority and its place by id.
func TestQueue_PromotedTaskKeepsPriority(t *testing.T) {
	q := mustOpen(t, Config{})
	now := time.Now()
	mustEnqueueWith(t, q, "t", "low", registry.Options{Priority: -1})
	mustEnqueueWith(t, q, "t", "delayed high", registry.Options{Priority: 1, Delay: time.Minute})
	mustEnqueueWith(t, q, "t", "default", registry.Options{})
	mustPromote(t, q, now.Add(time.Hour))
	if got := argsOf(mustClaim(t, q, 10)); got != `"delayed high" "default" "low"` {
		t.Errorf("claimed %s", got)
	}
}

func argsOf(ts []Task) string {
	var s []string
	for _, t := range ts {
		s = append(s, string(t.Args))
	}
	return strings.Join(s, " ")
}

// Promote must stay cheap when nothing is due: it reads, and never takes
// the write lock (which the daemon would otherwise contend for with every
// producer on every loop).
func TestQueue_PromoteWithNothingDueDoesNotWrite(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	q := mustOpen(t, Config{Dir: dir, BusyTimeout: 50 * time.Millisecond})
	other := mustOpen(t, Config{Dir: dir})
	now := time.Now()
	mustEnqueueWith(t, q, "t", nil, registry.Options{Delay: time.Hour})

	t.Run("no commit", func(t *testing.T) {
		// data_version changes when another connection commits.
		conn, err := other.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		version := func() int64 {
			t.Helper()
			var v int64
			if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		before := version()
		for range 3 {
			mustPromote(t, q, now)
		}
		if after := version(); after != before {
			t.Errorf("data_version went from %d to %d: Promote with nothing due committed", before, after)
		}
		// The check can see a commit: one due task makes Promote write.
		mustPromote(t, q, now.Add(2*time.Hour))
		if after := version(); after == before {
			t.Error("data_version unchanged after promoting a due task: the check above proves nothing")
		}
	})

	t.Run("no write lock", func(t *testing.T) {
		mustEnqueueWith(t, q, "t", nil, registry.Options{Delay: time.Hour})
		tx, err := other.DB().BeginTx(ctx, nil) // IMMEDIATE: holds the write lock
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := q.Promote(ctx, now); err != nil {
			t.Errorf("Promote with nothing due, write lock held elsewhere = %v, want nil", err)
		}
		if _, err := q.Promote(ctx, now.Add(2*time.Hour)); !errors.Is(err, ErrBusy) {
			t.Errorf("Promote with a due task, write lock held elsewhere = %v, want ErrBusy", err)
		}
	})
}

func TestQueue_UniqueKey(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	first := mustEnqueueWith(t, q, "t", 1, registry.Options{Key: "k"})
	if first.Duplicate || first.ID == 0 {
		t.Fatalf("first enqueue with key = %+v, want a new task", first)
	}
	tests := []struct {
		name string
		task string
		opts registry.Options
	}{
		{"same task", "t", registry.Options{Key: "k"}},
		{"other task name", "u", registry.Options{Key: "k"}},
		{"other options", "t", registry.Options{Key: "k", Priority: 9, Delay: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearWake(t, q)
			got := mustEnqueueWith(t, q, tt.task, 2, tt.opts)
			if want := (registry.Result{ID: first.ID, Duplicate: true}); got != want {
				t.Errorf("EnqueueWith = %+v, want %+v", got, want)
			}
			if wakePending(q) {
				t.Error("a duplicate woke the daemon")
			}
		})
	}
	if _, err := q.Enqueue(ctx, "t", 3); err != nil {
		t.Fatal(err)
	}
	if n, k := countRows(t, q, "1"), countRows(t, q, "key = 'k'"); n != 2 || k != 1 {
		t.Errorf("%d rows, %d with key k; want 2, 1", n, k)
	}

	// Claiming frees the key.
	mustClaim(t, q, 10)
	again := mustEnqueueWith(t, q, "t", 4, registry.Options{Key: "k"})
	if again.Duplicate || again.ID <= first.ID {
		t.Errorf("enqueue after the holder was claimed = %+v, want a new task", again)
	}
	// So does cancelling, and a delayed task holds it like a ready one.
	if ok, err := q.Cancel(ctx, again.ID); err != nil || !ok {
		t.Fatalf("Cancel = %v, %v", ok, err)
	}
	delayed := mustEnqueueWith(t, q, "t", 5, registry.Options{Key: "k", Delay: time.Hour})
	if delayed.Duplicate {
		t.Fatalf("enqueue after the holder was cancelled = %+v, want a new task", delayed)
	}
	if got := mustEnqueueWith(t, q, "t", 6, registry.Options{Key: "k"}); got.ID != delayed.ID || !got.Duplicate {
		t.Errorf("enqueue while a delayed task holds the key = %+v, want the delayed task %d", got, delayed.ID)
	}
}

func TestQueue_UniqueKeyMany(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	held := mustEnqueueWith(t, q, "t", nil, registry.Options{Key: "a"})
	ids, err := q.EnqueueMany(ctx, []Job{
		{Task: "t", Options: registry.Options{Key: "a"}}, // pending before
		{Task: "t", Options: registry.Options{Key: "b"}},
		{Task: "t", Options: registry.Options{Key: "b"}}, // earlier in the batch
		{Task: "t"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 4 || ids[0] != 0 || ids[1] == 0 || ids[2] != 0 || ids[3] == 0 {
		t.Errorf("ids = %v, want 0 for the duplicates (the 1st and 3rd)", ids)
	}
	if n := countRows(t, q, "1"); n != 3 {
		t.Errorf("%d rows, want 3 (a, b and the keyless one)", n)
	}

	// In the caller's transaction: a rollback frees the key.
	tx, err := q.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := q.EnqueueWithTx(ctx, tx, "t", nil, registry.Options{Key: "c"})
	if err != nil || res.Duplicate {
		t.Fatalf("EnqueueWithTx = %+v, %v", res, err)
	}
	res, err = q.EnqueueWithTx(ctx, tx, "t", nil, registry.Options{Key: "a"})
	if err != nil || res != (registry.Result{ID: held.ID, Duplicate: true}) {
		t.Errorf("EnqueueWithTx with a pending key = %+v, %v; want the holder %d", res, err, held.ID)
	}
	tx.Rollback()
	if got := mustEnqueueWith(t, q, "t", nil, registry.Options{Key: "c"}); got.Duplicate {
		t.Errorf("key of a rolled-back task still held: %+v", got)
	}
}

// Producers in separate processes race on the same keys: each has its
// own connections, and exactly one row per key may be written.
func TestQueue_UniqueKeyConcurrentProducers(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	const producers, keys, rounds = 6, 5, 20
	qs := make([]*Queue, producers)
	for i := range qs {
		qs[i] = mustOpen(t, Config{Dir: dir})
	}
	type result struct {
		key string
		res registry.Result
	}
	results := make(chan result, producers*keys*rounds)
	var wg sync.WaitGroup
	for _, q := range qs {
		wg.Go(func() {
			for r := range rounds {
				for k := range keys {
					key := fmt.Sprintf("k%d", (k+r)%keys)
					res, err := q.EnqueueWith(ctx, "t", nil, registry.Options{Key: key})
					if err != nil {
						t.Error(err)
						return
					}
					results <- result{key, res}
				}
			}
		})
	}
	wg.Wait()
	close(results)
	written := map[string]int64{}
	var dups []result
	for r := range results {
		if r.res.Duplicate {
			dups = append(dups, r)
			continue
		}
		if id, ok := written[r.key]; ok {
			t.Errorf("key %s written twice: tasks %d and %d", r.key, id, r.res.ID)
		}
		written[r.key] = r.res.ID
	}
	if len(written) != keys {
		t.Errorf("%d keys written, want %d", len(written), keys)
	}
	for _, d := range dups {
		if d.res.ID != written[d.key] {
			t.Errorf("duplicate of %s reported task %d, want the holder %d", d.key, d.res.ID, written[d.key])
		}
	}
	rows, err := qs[0].DB().Query(`SELECT key, count(*) FROM snappea_tasks GROUP BY key`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var key string
		var count int
		if err := rows.Scan(&key, &count); err != nil {
			t.Fatal(err)
		}
		if count != 1 {
			t.Errorf("%d pending rows with key %s, want 1", count, key)
		}
		n++
	}
	if n != keys {
		t.Errorf("%d distinct keys pending, want %d", n, keys)
	}
}

func TestQueue_Cancel(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	ready := mustEnqueueWith(t, q, "t", nil, registry.Options{})
	delayed := mustEnqueueWith(t, q, "t", nil, registry.Options{Delay: time.Hour})
	claimed := mustEnqueueWith(t, q, "t", nil, registry.Options{Priority: 1})
	mustClaim(t, q, 1)
	kept := mustEnqueueWith(t, q, "t", nil, registry.Options{})
	tests := []struct {
		name string
		id   int64
		want bool
	}{
		{"ready", ready.ID, true},
		{"delayed", delayed.ID, true},
		{"already cancelled", ready.ID, false},
		{"claimed", claimed.ID, false},
		{"unknown", 999, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := q.Cancel(ctx, tt.id)
			if err != nil || got != tt.want {
				t.Errorf("Cancel(%d) = %v, %v; want %v, nil", tt.id, got, err, tt.want)
			}
		})
	}
	mustPromote(t, q, time.Now().Add(2*time.Hour))
	if ts := mustClaim(t, q, 10); len(ts) != 1 || ts[0].ID != kept.ID {
		t.Errorf("claimed %+v, want only task %d", ts, kept.ID)
	}
}

func TestQueue_Retry(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	mustEnqueueWith(t, q, "t", json.RawMessage(`{"n":1}`), registry.Options{Priority: 3, Timeout: time.Second, MaxAttempts: 3, Key: "k"})
	first := mustClaim(t, q, 1)[0]

	clearWake(t, q)
	id, err := q.Retry(ctx, &first, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !wakePending(q) {
		t.Error("Retry did not wake")
	}
	if id <= first.ID {
		t.Errorf("retry id %d, want a new task after %d", id, first.ID)
	}
	second := mustClaim(t, q, 1)
	want := first
	want.ID, want.Attempt, want.Key = id, 2, ""
	if len(second) != 1 || !sameTask(second[0], want) {
		t.Fatalf("claimed %+v, want %+v", second, want)
	}

	// At a later time: delayed until then.
	now := time.Now()
	at := now.Add(time.Minute)
	if _, err := q.Retry(ctx, &second[0], at); err != nil {
		t.Fatal(err)
	}
	if ts := mustClaim(t, q, 1); len(ts) != 0 {
		t.Errorf("claimed a retry before its time: %+v", ts)
	}
	if next := mustPromote(t, q, now); !next.Equal(time.Unix(0, at.UnixNano())) {
		t.Errorf("next due = %v, want %v", next, at)
	}
	mustPromote(t, q, at)
	if ts := mustClaim(t, q, 1); len(ts) != 1 || ts[0].Attempt != 3 {
		t.Errorf("claimed %+v, want the third attempt", ts)
	}
}

func sameTask(a, b Task) bool {
	a.EnqueuedAt, b.EnqueuedAt = time.Time{}, time.Time{}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestQueue_EnqueueWithBadOptions(t *testing.T) {
	q := mustOpen(t, Config{})
	for _, opts := range []registry.Options{
		{Delay: -time.Second},
		{Timeout: -1},
		{MaxAttempts: -2},
	} {
		if _, err := q.EnqueueWith(context.Background(), "t", nil, opts); !errors.Is(err, registry.ErrBadOptions) {
			t.Errorf("EnqueueWith(%+v) = %v, want ErrBadOptions", opts, err)
		}
	}
	if n := countRows(t, q, "1"); n != 0 {
		t.Errorf("bad options wrote %d rows", n)
	}
}

// With a Registry, every enqueue starts from the definition's defaults.
func TestQueue_DefinitionDefaults(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	report := registry.Register(reg, "report", func(context.Context, struct{}) error { return nil },
		registry.Options{Priority: 5, Timeout: time.Minute, MaxAttempts: 3, Key: "report"})
	registry.Register(reg, "plain", func(context.Context, struct{}) error { return nil })
	q := mustOpen(t, Config{Registry: reg})

	tests := []struct {
		name    string
		enqueue func() (int64, error)
		want    Task // ignoring ID and EnqueuedAt
	}{
		{"Queue.Enqueue", func() (int64, error) { return q.Enqueue(ctx, "report", nil) },
			Task{Name: "report", Priority: 5, Attempt: 1, MaxAttempts: 3, Timeout: time.Minute, Key: "report"}},
		{"Queue.EnqueueWith overrides", func() (int64, error) {
			res, err := q.EnqueueWith(ctx, "report", nil, registry.Options{Priority: -1, Key: "other"})
			return res.ID, err
		}, Task{Name: "report", Priority: -1, Attempt: 1, MaxAttempts: 3, Timeout: time.Minute, Key: "other"}},
		{"Task.Enqueue", func() (int64, error) { return report.Enqueue(ctx, q, struct{}{}) },
			Task{Name: "report", Args: []byte("{}"), Priority: 5, Attempt: 1, MaxAttempts: 3, Timeout: time.Minute, Key: "report"}},
		{"Task.EnqueueWith", func() (int64, error) {
			res, err := report.EnqueueWith(ctx, q, struct{}{}, registry.Options{MaxAttempts: 1})
			return res.ID, err
		}, Task{Name: "report", Args: []byte("{}"), Priority: 5, Attempt: 1, MaxAttempts: 1, Timeout: time.Minute, Key: "report"}},
		{"EnqueueMany", func() (int64, error) {
			ids, err := q.EnqueueMany(ctx, []Job{{Task: "report", Options: registry.Options{Timeout: time.Second}}})
			if err != nil {
				return 0, err
			}
			return ids[0], nil
		}, Task{Name: "report", Priority: 5, Attempt: 1, MaxAttempts: 3, Timeout: time.Second, Key: "report"}},
		{"no defaults", func() (int64, error) { return q.Enqueue(ctx, "plain", nil) },
			Task{Name: "plain", Attempt: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.enqueue()
			if err != nil {
				t.Fatal(err)
			}
			ts := mustClaim(t, q, 10)
			if len(ts) != 1 {
				t.Fatalf("claimed %d tasks, want 1", len(ts))
			}
			want := tt.want
			want.ID = id
			if want.Args == nil {
				want.Args = []byte("null")
			}
			if !sameTask(ts[0], want) {
				t.Errorf("claimed %+v, want %+v", ts[0], want)
			}
		})
	}

	// A default Key makes a second enqueue a duplicate, reported as the
	// holder's id by the methods without a Result.
	a, _ := q.Enqueue(ctx, "report", nil)
	b, err := report.Enqueue(ctx, q, struct{}{})
	if err != nil || b != a {
		t.Errorf("second enqueue with the default key = %d, %v; want the holder %d", b, err, a)
	}
}

func TestQueue_InlineOptions(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	var infos []registry.Info
	var deadlines []bool
	registry.Register(reg, "t", func(ctx context.Context, _ struct{}) error {
		info, _ := registry.InfoFrom(ctx)
		infos = append(infos, info)
		_, ok := ctx.Deadline()
		deadlines = append(deadlines, ok)
		return nil
	})
	q := mustOpen(t, Config{Registry: reg, Inline: true})

	// Delays are ignored: it runs at once, with its timeout as a deadline.
	res := mustEnqueueWith(t, q, "t", nil, registry.Options{Delay: time.Hour, Timeout: time.Minute, MaxAttempts: 2})
	if len(infos) != 1 || res.Duplicate || !deadlines[0] || infos[0].Attempt != 1 || infos[0].MaxAttempts != 2 {
		t.Fatalf("after a delayed inline enqueue: ran %+v (deadline %v), result %+v; want it run at once", infos, deadlines, res)
	}
	// A key held by a committed task not yet run: a duplicate, not run.
	tx, err := q.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	held, err := q.EnqueueWithTx(ctx, tx, "t", nil, registry.Options{Key: "k", Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	dup := mustEnqueueWith(t, q, "t", nil, registry.Options{Key: "k"})
	if dup != (registry.Result{ID: held.ID, Duplicate: true}) || len(infos) != 1 {
		t.Errorf("inline enqueue with a held key = %+v after %d runs; want the holder %d, not run", dup, len(infos), held.ID)
	}
	// Notify runs it (the delay ignored), which frees the key.
	if err := q.Notify(); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 {
		t.Errorf("Notify ran %d tasks in all, want 2", len(infos))
	}
	if res := mustEnqueueWith(t, q, "t", nil, registry.Options{Key: "k"}); res.Duplicate || len(infos) != 3 {
		t.Errorf("inline enqueue with a freed key = %+v after %d runs", res, len(infos))
	}
}

func TestQueue_StatsReadyAndDelayed(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	now := time.Now()
	// The oldest pending task is delayed: Oldest* are about ready ones.
	if _, err := q.DB().Exec(`INSERT INTO snappea_tasks (task, args, created_at, run_at) VALUES ('t', '', ?, ?)`,
		now.Add(-time.Hour).UnixNano(), now.Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	if _, err := q.DB().Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '', ?)`,
		now.Add(-time.Minute).UnixNano()); err != nil {
		t.Fatal(err)
	}
	mustEnqueueWith(t, q, "t", nil, registry.Options{Priority: 9})
	s, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending != 3 || s.Ready != 2 || s.Delayed != 1 || s.OldestID != 2 ||
		s.OldestAge < time.Minute || s.OldestAge > 2*time.Minute || !s.NextDue.Equal(time.Unix(0, now.Add(time.Hour).UnixNano())) {
		t.Errorf("Stats = %+v; want 3 pending, 2 ready, 1 delayed, oldest ready id 2 aged ~1m, next due in 1h", s)
	}
	mustClaim(t, q, 10)
	s, err = q.Stats(ctx)
	if err != nil || s.Pending != 1 || s.Ready != 0 || s.OldestID != 0 || s.OldestAge != 0 {
		t.Errorf("Stats with only a delayed task = %+v, %v", s, err)
	}
}

var _ registry.Enqueuer = (*Queue)(nil)

package storagetest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/storage"
)

// Run runs the suite. open returns a backend on a new, empty database of
// its own, closed when the test ends; the subtests run in parallel.
//
// newer, if not nil, marks b's database as migrated by a newer build than
// this one, opens it again and returns the error that gives (nil if it
// opened: the suite then fails); the suite checks that it matches
// storage.ErrSchemaTooNew. Without it the check is skipped.
func Run(t *testing.T, open func(t *testing.T) storage.Backend, newer func(t *testing.T, b storage.Backend) error) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"ClaimOrder", testClaimOrder},
		{"ClaimLimit", testClaimLimit},
		{"Options", testOptions},
		{"DelayAndPromote", testDelayAndPromote},
		{"Keys", testKeys},
		{"KeyRace", testKeyRace},
		{"Replace", testReplace},
		{"ReplaceBatch", testReplaceBatch},
		{"ReplaceRace", testReplaceRace},
		{"Cancel", testCancel},
		{"Retry", testRetry},
		{"Transactions", testTransactions},
		{"Failed", testFailed},
		{"RetryFailures", testRetryFailures},
		{"PruneFailures", testPruneFailures},
		{"Backlog", testBacklog},
		{"Pending", testPending},
		{"PendingPages", testPendingPages},
		{"PendingFilters", testPendingFilters},
		{"CountPending", testCountPending},
		{"RetryFailuresOf", testRetryFailuresOf},
		{"Schedules", testSchedules},
		{"ScheduleTakers", testScheduleTakers},
		{"ScheduleReadInTx", testScheduleReadInTx},
		{"Stats", testStats},
		{"Daemons", testDaemons},
		{"Waker", testWaker},
		{"SchemaVersion", testSchemaVersion},
		{"ConcurrentClaims", testConcurrentClaims},
		{"Ledger", testLedger},
		{"RecoverLost", testRecoverLost},
		{"RecoverGone", testRecoverGone},
		{"ConcurrentRecovery", testConcurrentRecovery},
		{"MaxRunning", testMaxRunning},
		{"SerialKeys", testSerialKeys},
		{"LimitsConcurrent", testLimitsConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
	t.Run("NewerSchema", func(t *testing.T) {
		if newer == nil {
			t.Skip("no hook to make a newer schema for this backend")
		}
		t.Parallel()
		b := open(t)
		err := newer(t, b)
		if !errors.Is(err, storage.ErrSchemaTooNew) {
			t.Fatalf("opening a database of a newer schema: got %v, want an error matching storage.ErrSchemaTooNew", err)
		}
	})
}

// base is the suite's clock: fixed, in the past, with nanoseconds, so
// that a backend that rounds times fails.
var base = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func row(task string) storage.Row {
	return storage.Row{Task: task, Args: []byte(`{}`), CreatedAt: base, Attempt: 1}
}

func mustInsert(t *testing.T, b storage.Backend, rows ...storage.Row) []storage.Inserted {
	t.Helper()
	res, err := b.Insert(ctxOf(t), nil, rows)
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	if len(res) != len(rows) {
		t.Fatalf("Insert of %d rows returned %d results", len(rows), len(res))
	}
	return res
}

func mustClaim(t *testing.T, b storage.Backend, n int) []snappea.Task {
	t.Helper()
	ts, err := b.Claim(ctxOf(t), n)
	if err != nil {
		t.Fatalf("Claim(%d): %v", n, err)
	}
	for _, task := range ts {
		if task.Err != nil {
			t.Errorf("claimed task %d has Err %v", task.ID, task.Err)
		}
	}
	return ts
}

func ids(ts []snappea.Task) []int64 {
	out := make([]int64, len(ts))
	for i, task := range ts {
		out[i] = task.ID
	}
	return out
}

func testClaimOrder(t *testing.T, b storage.Backend) {
	prios := []int{0, 5, -1, 5, 0, 10}
	var rows []storage.Row
	for i, p := range prios {
		r := row(fmt.Sprint("t", i))
		r.Priority = p
		rows = append(rows, r)
	}
	res := mustInsert(t, b, rows...)
	for i := 1; i < len(res); i++ {
		if res[i].ID <= res[i-1].ID {
			t.Fatalf("ids not increasing in insert order: %v", res)
		}
	}
	want := []int64{res[5].ID, res[1].ID, res[3].ID, res[0].ID, res[4].ID, res[2].ID}
	if got := ids(mustClaim(t, b, 100)); !slices.Equal(got, want) {
		t.Errorf("claim order: got %v, want %v (priority, then id)", got, want)
	}
	// Ids are never reused, even after the newest are claimed.
	again := mustInsert(t, b, row("again"))
	if again[0].ID <= res[5].ID {
		t.Errorf("id after claiming everything: got %d, want more than %d", again[0].ID, res[5].ID)
	}
}

func testClaimLimit(t *testing.T, b storage.Backend) {
	var rows []storage.Row
	for range 5 {
		rows = append(rows, row("x"))
	}
	res := mustInsert(t, b, rows...)
	if got := mustClaim(t, b, 0); len(got) != 0 {
		t.Errorf("Claim(0): got %d tasks, want none", len(got))
	}
	if got := ids(mustClaim(t, b, 2)); !slices.Equal(got, []int64{res[0].ID, res[1].ID}) {
		t.Errorf("Claim(2): got %v, want the first two", got)
	}
	if got := mustClaim(t, b, 10); len(got) != 3 {
		t.Errorf("Claim(10) of 3 left: got %d tasks", len(got))
	}
	if got := mustClaim(t, b, 10); len(got) != 0 {
		t.Errorf("Claim of an empty queue: got %d tasks", len(got))
	}
}

func testOptions(t *testing.T, b storage.Backend) {
	r := storage.Row{Task: "send", Args: []byte(`{"b": 1,  "a":"é"}`), CreatedAt: base, Priority: 7, Attempt: 3,
		MaxAttempts: 5, Timeout: 1500 * time.Millisecond, Key: "k1"}
	res := mustInsert(t, b, r)
	ts := mustClaim(t, b, 1)
	if len(ts) != 1 {
		t.Fatalf("claimed %d tasks, want 1", len(ts))
	}
	got := ts[0]
	want := snappea.Task{ID: res[0].ID, Name: "send", Args: r.Args, EnqueuedAt: base, Priority: 7, Attempt: 3,
		MaxAttempts: 5, Timeout: 1500 * time.Millisecond, Key: "k1"}
	if got.ID != want.ID || got.Name != want.Name || string(got.Args) != string(want.Args) ||
		!got.EnqueuedAt.Equal(want.EnqueuedAt) || got.Priority != want.Priority || got.Attempt != want.Attempt ||
		got.MaxAttempts != want.MaxAttempts || got.Timeout != want.Timeout || got.Key != want.Key {
		t.Errorf("claimed task:\n got %+v\nwant %+v", got, want)
	}
	// No arguments at all, and attempt 0, are stored as empty and 1.
	mustInsert(t, b, storage.Row{Task: "bare", CreatedAt: base})
	ts = mustClaim(t, b, 1)
	if len(ts) != 1 || len(ts[0].Args) != 0 || ts[0].Attempt != 1 {
		t.Errorf("task without arguments: got %+v, want empty Args and Attempt 1", ts)
	}
}

func testDelayAndPromote(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	due := base.Add(time.Hour)
	late := base.Add(2 * time.Hour)
	r1, r2 := row("soon"), row("later")
	r1.RunAt, r2.RunAt = due, late
	res := mustInsert(t, b, r1, r2, row("now"))
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 1 || st.Delayed != 2 || st.Pending != 3 || !st.NextDue.Equal(due) || st.OldestID != res[2].ID {
		t.Errorf("Stats: got %+v, want 1 ready, 2 delayed, next due %v, oldest %d", st, due, res[2].ID)
	}
	if got := ids(mustClaim(t, b, 10)); !slices.Equal(got, []int64{res[2].ID}) {
		t.Errorf("claim before promote: got %v, want only the ready task", got)
	}
	next, err := b.Promote(ctx, base)
	if err != nil || !next.Equal(due) {
		t.Errorf("Promote before due: got %v, %v; want %v", next, err, due)
	}
	if got := mustClaim(t, b, 10); len(got) != 0 {
		t.Errorf("claim with nothing due: got %v", ids(got))
	}
	next, err = b.Promote(ctx, due)
	if err != nil || !next.Equal(late) {
		t.Errorf("Promote at the first due time: got %v, %v; want %v", next, err, late)
	}
	if got := ids(mustClaim(t, b, 10)); !slices.Equal(got, []int64{res[0].ID}) {
		t.Errorf("claim after promote: got %v, want %d", got, res[0].ID)
	}
	next, err = b.Promote(ctx, late.Add(time.Second))
	if err != nil || !next.IsZero() {
		t.Errorf("Promote of the last: got %v, %v; want the zero time", next, err)
	}
	if got := ids(mustClaim(t, b, 10)); !slices.Equal(got, []int64{res[1].ID}) {
		t.Errorf("claim after the last promote: got %v, want %d", got, res[1].ID)
	}
}

func testKeys(t *testing.T, b storage.Backend) {
	keyed := func(k string) storage.Row { r := row("k"); r.Key = k; return r }
	first := mustInsert(t, b, keyed("a"))[0]
	if first.Duplicate {
		t.Fatal("first task with key a reported a duplicate")
	}
	dup := mustInsert(t, b, keyed("a"))[0]
	if !dup.Duplicate || dup.ID != first.ID {
		t.Errorf("second task with key a: got %+v, want a duplicate of %d", dup, first.ID)
	}
	// In one batch: the second of two rows with one key is the duplicate,
	// of the first; other rows are written.
	batch := mustInsert(t, b, keyed("b"), row("plain"), keyed("b"), keyed("a"))
	if batch[0].Duplicate || batch[1].Duplicate || !batch[2].Duplicate || batch[2].ID != batch[0].ID ||
		!batch[3].Duplicate || batch[3].ID != first.ID {
		t.Errorf("batch with keys: got %+v", batch)
	}
	// A delayed task holds its key too.
	d := keyed("c")
	d.RunAt = base.Add(time.Hour)
	held := mustInsert(t, b, d)[0]
	if again := mustInsert(t, b, keyed("c"))[0]; !again.Duplicate || again.ID != held.ID {
		t.Errorf("key of a delayed task: got %+v, want a duplicate of %d", again, held.ID)
	}
	// Claiming frees the key.
	mustClaim(t, b, 100)
	if again := mustInsert(t, b, keyed("a"))[0]; again.Duplicate || again.ID == first.ID {
		t.Errorf("key a after its task was claimed: got %+v, want a new task", again)
	}
}

// testKeyRace has several producers insert one key at the same time:
// one writes it, the others are told it is a duplicate of that task.
func testKeyRace(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	for round := range 5 {
		const producers = 6
		key := fmt.Sprint("race", round)
		results := make(chan storage.Inserted, producers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range producers {
			wg.Go(func() {
				<-start
				r := row("race")
				r.Key = key
				res, err := b.Insert(ctx, nil, []storage.Row{r})
				if err != nil {
					t.Errorf("Insert: %v", err)
					return
				}
				results <- res[0]
			})
		}
		close(start)
		wg.Wait()
		close(results)
		var written []int64
		var dups []storage.Inserted
		for res := range results {
			if res.Duplicate {
				dups = append(dups, res)
			} else {
				written = append(written, res.ID)
			}
		}
		if len(written) != 1 {
			t.Fatalf("round %d: %d producers wrote key %s, want 1", round, len(written), key)
		}
		for _, d := range dups {
			if d.ID != written[0] {
				t.Errorf("round %d: duplicate reports holder %d, want %d", round, d.ID, written[0])
			}
		}
		if got := mustClaim(t, b, 10); len(got) != 1 {
			t.Errorf("round %d: %d tasks queued for one key, want 1", round, len(got))
		}
	}
}

func testCancel(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	res := mustInsert(t, b, row("a"), row("b"))
	ok, err := b.Cancel(ctx, res[0].ID)
	if err != nil || !ok {
		t.Fatalf("Cancel of a pending task: got %v, %v; want true", ok, err)
	}
	ok, err = b.Cancel(ctx, res[0].ID)
	if err != nil || ok {
		t.Errorf("Cancel again: got %v, %v; want false", ok, err)
	}
	if got := ids(mustClaim(t, b, 10)); !slices.Equal(got, []int64{res[1].ID}) {
		t.Errorf("claim after cancel: got %v, want %d", got, res[1].ID)
	}
	if ok, err := b.Cancel(ctx, res[1].ID); err != nil || ok {
		t.Errorf("Cancel of a claimed task: got %v, %v; want false", ok, err)
	}
	if err := b.RequestCancel(ctx, res[1].ID); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("RequestCancel: %v", err)
	}
}

// testRetry is the daemon's retry: a new row for the next attempt, with
// the same options and no key.
func testRetry(t *testing.T, b storage.Backend) {
	r := row("flaky")
	r.MaxAttempts, r.Priority, r.Key = 3, 2, "once"
	mustInsert(t, b, r)
	task := mustClaim(t, b, 1)[0]
	retry := storage.Row{Task: task.Name, Args: task.Args, CreatedAt: base.Add(time.Second), Priority: task.Priority,
		RunAt: base.Add(time.Minute), Attempt: task.Attempt + 1, MaxAttempts: task.MaxAttempts, Timeout: task.Timeout}
	res := mustInsert(t, b, retry)
	if res[0].ID <= task.ID {
		t.Errorf("retry id %d, want more than %d", res[0].ID, task.ID)
	}
	if _, err := b.Promote(ctxOf(t), base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := mustClaim(t, b, 1)
	if len(got) != 1 || got[0].Attempt != 2 || got[0].MaxAttempts != 3 || got[0].Priority != 2 || got[0].Key != "" {
		t.Errorf("retried task: got %+v", got)
	}
}

func testTransactions(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	boom := errors.New("boom")
	err := b.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := b.Insert(ctx, tx, []storage.Row{row("rolled back")}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteTx: got %v, want fn's error", err)
	}
	if got := mustClaim(t, b, 10); len(got) != 0 {
		t.Errorf("a rolled-back insert was claimed: %v", ids(got))
	}
	// The caller's own transaction on the database.
	tx, err := b.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Insert(ctx, tx, []storage.Row{row("committed")})
	if err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Wake(); err != nil {
		t.Errorf("Wake: %v", err)
	}
	if got := ids(mustClaim(t, b, 10)); !slices.Equal(got, []int64{res[0].ID}) {
		t.Errorf("claim after the caller's commit: got %v, want %d", got, res[0].ID)
	}
}

func failTask(t *testing.T, b storage.Backend, name string, at time.Time) snappea.Failure {
	t.Helper()
	ctx := ctxOf(t)
	r := row(name)
	r.Args, r.Priority, r.MaxAttempts, r.Timeout, r.Attempt = []byte(`{"n":1}`), 4, 2, time.Second, 2
	mustInsert(t, b, r)
	ts := mustClaim(t, b, 1)
	if len(ts) != 1 {
		t.Fatalf("claimed %d tasks, want 1", len(ts))
	}
	if err := b.Fail(ctx, &ts[0], "it broke: "+name, at); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	fs, err := b.Failures(ctx, 1)
	if err != nil || len(fs) != 1 {
		t.Fatalf("Failures(1) after Fail: %v, %v", fs, err)
	}
	return fs[0]
}

func testFailed(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	f1 := failTask(t, b, "one", base)
	f2 := failTask(t, b, "two", base.Add(time.Minute))
	f3 := failTask(t, b, "three", base.Add(2*time.Minute))
	if f1.Task != "one" || f1.Error != "it broke: one" || string(f1.Args) != `{"n":1}` || f1.Attempts != 2 ||
		f1.Priority != 4 || f1.MaxAttempts != 2 || f1.Timeout != time.Second || !f1.FailedAt.Equal(base) ||
		f1.TaskID == 0 || f1.ID == 0 {
		t.Errorf("failure record: got %+v", f1)
	}
	all, err := b.Failures(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, f := range all {
		got = append(got, f.ID)
	}
	if want := []int64{f3.ID, f2.ID, f1.ID}; !slices.Equal(got, want) {
		t.Errorf("Failures(0): got %v, want newest first %v", got, want)
	}
	if two, err := b.Failures(ctx, 2); err != nil || len(two) != 2 {
		t.Errorf("Failures(2): got %d, %v", len(two), err)
	}
	byID, err := b.Failure(ctx, f2.ID)
	if err != nil || byID.Task != "two" || byID.ID != f2.ID {
		t.Errorf("Failure(%d): got %+v, %v", f2.ID, byID, err)
	}
	if _, err := b.Failure(ctx, f3.ID+1000); !errors.Is(err, snappea.ErrNotFound) {
		t.Errorf("Failure of an unknown id: got %v, want ErrNotFound", err)
	}
	n, err := b.PurgeFailures(ctx)
	if err != nil || n != 3 {
		t.Errorf("PurgeFailures: got %d, %v; want 3", n, err)
	}
	if rest, err := b.Failures(ctx, 0); err != nil || len(rest) != 0 {
		t.Errorf("Failures after purge: got %d, %v", len(rest), err)
	}
}

func testRetryFailures(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	f1 := failTask(t, b, "one", base)
	f2 := failTask(t, b, "two", base.Add(time.Minute))
	f3 := failTask(t, b, "three", base.Add(2*time.Minute))
	now := base.Add(time.Hour)
	got, err := b.RetryFailures(ctx, f2.ID, now)
	if err != nil || len(got) != 1 {
		t.Fatalf("RetryFailures(%d): got %v, %v; want one id", f2.ID, got, err)
	}
	if _, err := b.Failure(ctx, f2.ID); !errors.Is(err, snappea.ErrNotFound) {
		t.Errorf("record %d after its retry: got %v, want ErrNotFound", f2.ID, err)
	}
	ts := mustClaim(t, b, 10)
	if len(ts) != 1 || ts[0].ID != got[0] || ts[0].Name != "two" || ts[0].Attempt != 1 || ts[0].Priority != 4 ||
		ts[0].MaxAttempts != 2 || ts[0].Timeout != time.Second || string(ts[0].Args) != `{"n":1}` ||
		!ts[0].EnqueuedAt.Equal(now) {
		t.Errorf("retried task: got %+v", ts)
	}
	if _, err := b.RetryFailures(ctx, f2.ID, now); !errors.Is(err, snappea.ErrNotFound) {
		t.Errorf("RetryFailures of a retried record: got %v, want ErrNotFound", err)
	}
	got, err = b.RetryFailures(ctx, 0, now)
	if err != nil || len(got) != 2 {
		t.Fatalf("RetryFailures(0): got %v, %v; want two ids", got, err)
	}
	ts = mustClaim(t, b, 10)
	if names := []string{ts[0].Name, ts[1].Name}; len(ts) != 2 || !slices.Equal(names, []string{"one", "three"}) {
		t.Errorf("retried tasks: got %v, want one and three, oldest first", ts)
	}
	_ = f1
	_ = f3
	if rest, err := b.Failures(ctx, 0); err != nil || len(rest) != 0 {
		t.Errorf("Failures after retrying all: got %d, %v", len(rest), err)
	}
}

func testPruneFailures(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	var fs []snappea.Failure
	for i := range 5 {
		fs = append(fs, failTask(t, b, fmt.Sprint("f", i), base.Add(time.Duration(i)*time.Minute)))
	}
	if n, err := b.PruneFailures(ctx, time.Time{}, 0); err != nil || n != 0 {
		t.Errorf("PruneFailures without bounds: got %d, %v; want 0", n, err)
	}
	// By age: before the third.
	n, err := b.PruneFailures(ctx, base.Add(2*time.Minute), 0)
	if err != nil || n != 2 {
		t.Errorf("PruneFailures by age: got %d, %v; want 2", n, err)
	}
	// By count: keep the newest two.
	n, err = b.PruneFailures(ctx, time.Time{}, 2)
	if err != nil || n != 1 {
		t.Errorf("PruneFailures by count: got %d, %v; want 1", n, err)
	}
	rest, err := b.Failures(ctx, 0)
	if err != nil || len(rest) != 2 || rest[0].ID != fs[4].ID || rest[1].ID != fs[3].ID {
		t.Errorf("Failures after pruning: got %+v, %v; want the newest two", rest, err)
	}
}

func testBacklog(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	future, due := row("future"), row("due")
	future.RunAt, due.RunAt = base.Add(time.Hour), base.Add(-time.Hour)
	mustInsert(t, b, row("a"), row("b"), row("c"), future, due)
	n, exact, err := b.Backlog(ctx, base, 100, true)
	if err != nil || n != 4 || !exact {
		t.Errorf("Backlog exact: got %d, %v, %v; want 4 exact (3 ready, 1 delayed and due)", n, exact, err)
	}
	n, exact, err = b.Backlog(ctx, base, 2, true)
	if err != nil || n != 3 || !exact {
		t.Errorf("Backlog exact with limit 2: got %d, %v, %v; want 3 (limit+1)", n, exact, err)
	}
	n, exact, err = b.Backlog(ctx, base, 100, false)
	if err != nil || n < 4 || (exact && n != 4) {
		t.Errorf("Backlog cheap: got %d, %v, %v; want an upper bound of 4, or 4 exact", n, exact, err)
	}
	mustClaim(t, b, 100)
	if n, _, err := b.Backlog(ctx, base, 100, true); err != nil || n != 1 {
		t.Errorf("Backlog with a due task not yet promoted and a future one: got %d, %v; want 1", n, err)
	}
}

func testPending(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	hi, later, sooner := row("a"), row("b"), row("a")
	hi.Priority, hi.Key, hi.SerialKey = 5, "hk", "project:1"
	later.RunAt, sooner.RunAt = base.Add(2*time.Hour), base.Add(time.Hour)
	res := mustInsert(t, b, row("a"), hi, later, sooner, row("b"))
	list := func(f storage.PendingFilter) []int64 {
		t.Helper()
		ps, err := b.Pending(ctx, f)
		if err != nil {
			t.Fatalf("Pending(%+v): %v", f, err)
		}
		var out []int64
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	all := []int64{res[1].ID, res[0].ID, res[4].ID, res[3].ID, res[2].ID}
	if got := list(storage.PendingFilter{}); !slices.Equal(got, all) {
		t.Errorf("Pending: got %v, want %v (ready by priority, then delayed by due time)", got, all)
	}
	rev := slices.Clone(all)
	slices.Reverse(rev)
	if got := list(storage.PendingFilter{Newest: true}); !slices.Equal(got, rev) {
		t.Errorf("Pending newest: got %v, want %v", got, rev)
	}
	if got := list(storage.PendingFilter{Limit: 2}); !slices.Equal(got, all[:2]) {
		t.Errorf("Pending limit 2: got %v, want %v", got, all[:2])
	}
	if got := list(storage.PendingFilter{Delayed: true}); !slices.Equal(got, []int64{res[3].ID, res[2].ID}) {
		t.Errorf("Pending delayed: got %v", got)
	}
	if got := list(storage.PendingFilter{Task: "a"}); !slices.Equal(got, []int64{res[1].ID, res[0].ID, res[3].ID}) {
		t.Errorf("Pending of task a: got %v", got)
	}
	ps, err := b.Pending(ctx, storage.PendingFilter{Limit: 1})
	if err != nil || len(ps) != 1 || ps[0].Task != "a" || ps[0].Priority != 5 || ps[0].Key != "hk" ||
		ps[0].SerialKey != "project:1" || !ps[0].RunAt.IsZero() || ps[0].Attempt != 1 || !ps[0].EnqueuedAt.Equal(base) {
		t.Errorf("Pending fields: got %+v, %v", ps, err)
	}
	if ps, err := b.Pending(ctx, storage.PendingFilter{Delayed: true, Limit: 1}); err != nil || len(ps) != 1 || ps[0].SerialKey != "" {
		t.Errorf("Pending of a task without a serial key: got %+v, %v; want SerialKey empty", ps, err)
	}
	if _, err := b.Pending(ctx, storage.PendingFilter{Limit: -1}); err == nil {
		t.Error("Pending with a negative limit: no error")
	}
}

// testPendingPages: paging with cursors gives every task once, in the
// listing's order, both ways, with and without filters.
func testPendingPages(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	var rows []storage.Row
	for i := range 23 {
		r := row(fmt.Sprint("t", i%2))
		r.Priority = i % 3
		if i%4 == 0 {
			r.RunAt = base.Add(time.Duration(i%5) * time.Minute)
		}
		rows = append(rows, r)
	}
	mustInsert(t, b, rows...)
	for _, f := range []storage.PendingFilter{{}, {Newest: true}, {Task: "t1"}, {Delayed: true}, {Ready: true, Newest: true}} {
		all := f
		all.Limit = 1000
		want, err := b.Pending(ctx, all)
		if err != nil {
			t.Fatalf("Pending(%+v): %v", all, err)
		}
		var got []storage.PendingTask
		page := f
		page.Limit = 4
		for range 100 {
			ps, err := b.Pending(ctx, page)
			if err != nil {
				t.Fatalf("Pending(%+v): %v", page, err)
			}
			got = append(got, ps...)
			if len(ps) < page.Limit {
				break
			}
			c := ps[len(ps)-1].Cursor()
			page.After = &c
		}
		if len(got) != len(want) {
			t.Errorf("%+v: pages gave %d tasks, one listing %d", f, len(got), len(want))
			continue
		}
		for i := range got {
			if got[i].ID != want[i].ID {
				t.Errorf("%+v: task %d of the pages is %d, of one listing %d", f, i, got[i].ID, want[i].ID)
				break
			}
		}
	}
}

func testPendingFilters(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	k, p2, d := row("a"), row("b"), row("a")
	k.Key, p2.Priority, d.RunAt = "the-key", 2, base.Add(time.Hour)
	res := mustInsert(t, b, row("a"), k, p2, d)
	list := func(f storage.PendingFilter) []int64 {
		t.Helper()
		ps, err := b.Pending(ctx, f)
		if err != nil {
			t.Fatalf("Pending(%+v): %v", f, err)
		}
		var out []int64
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	two, zero := 2, 0
	if got := list(storage.PendingFilter{Priority: &two}); !slices.Equal(got, []int64{res[2].ID}) {
		t.Errorf("Pending of priority 2: got %v, want %v", got, res[2].ID)
	}
	if got := list(storage.PendingFilter{Priority: &zero, Task: "a"}); !slices.Equal(got, []int64{res[0].ID, res[1].ID, res[3].ID}) {
		t.Errorf("Pending of priority 0 and task a: got %v", got)
	}
	if got := list(storage.PendingFilter{Key: "the-key"}); !slices.Equal(got, []int64{res[1].ID}) {
		t.Errorf("Pending of key: got %v, want %v", got, res[1].ID)
	}
	if got := list(storage.PendingFilter{Key: "no-such-key"}); len(got) != 0 {
		t.Errorf("Pending of an unknown key: got %v, want none", got)
	}
	if got := list(storage.PendingFilter{Ready: true}); !slices.Equal(got, []int64{res[2].ID, res[0].ID, res[1].ID}) {
		t.Errorf("Pending ready: got %v", got)
	}
	if _, err := b.Pending(ctx, storage.PendingFilter{Ready: true, Delayed: true}); err == nil {
		t.Error("Pending with Ready and Delayed: no error")
	}
}

func testCountPending(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	c, err := b.CountPending(ctx, 10)
	if err != nil || c.Ready != 0 || c.Delayed != 0 || c.OldestID != 0 || !c.OldestAt.IsZero() {
		t.Errorf("CountPending of an empty queue: got %+v, %v", c, err)
	}
	d1, d2, r1, r2 := row("d"), row("d"), row("r"), row("r")
	d1.RunAt, d2.RunAt, r2.CreatedAt = base.Add(time.Hour), base.Add(time.Hour), base.Add(time.Minute)
	res := mustInsert(t, b, d1, d2, r1, r2, row("r"))
	c, err = b.CountPending(ctx, 10)
	if err != nil || c.Ready != 3 || c.Delayed != 2 || c.OldestID != res[2].ID || !c.OldestAt.Equal(base) || c.Limit != 10 {
		t.Errorf("CountPending(10): got %+v, %v; want 3 ready, 2 delayed, oldest %d at %v", c, err, res[2].ID, base)
	}
	c, err = b.CountPending(ctx, 1)
	if err != nil || c.Ready != 2 || c.Delayed != 2 {
		t.Errorf("CountPending(1): got %+v, %v; want 2 and 2 (more than the limit)", c, err)
	}
	if _, err := b.CountPending(ctx, -1); err == nil {
		t.Error("CountPending(-1): no error")
	}
}

func testRetryFailuresOf(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	failTask(t, b, "one", base)
	f2 := failTask(t, b, "two", base.Add(time.Minute))
	f3 := failTask(t, b, "one", base.Add(2*time.Minute))
	if n, err := b.FailureCount(ctx); err != nil || n != 3 {
		t.Errorf("FailureCount: got %d, %v; want 3", n, err)
	}
	got, err := b.RetryFailuresOf(ctx, "one", base.Add(time.Hour))
	if err != nil || len(got) != 2 {
		t.Fatalf("RetryFailuresOf(one): got %v, %v; want two ids", got, err)
	}
	ts := mustClaim(t, b, 10)
	if len(ts) != 2 || ts[0].Name != "one" || ts[1].Name != "one" || ts[0].ID != got[0] || ts[1].ID != got[1] {
		t.Errorf("retried tasks: got %+v, want the two of task one with ids %v", ts, got)
	}
	if _, err := b.Failure(ctx, f3.ID); !errors.Is(err, snappea.ErrNotFound) {
		t.Errorf("record %d after its retry: got %v, want ErrNotFound", f3.ID, err)
	}
	if f, err := b.Failure(ctx, f2.ID); err != nil || f.Task != "two" {
		t.Errorf("record of another task after RetryFailuresOf: got %+v, %v; want it kept", f, err)
	}
	if got, err := b.RetryFailuresOf(ctx, "none", base); err != nil || len(got) != 0 {
		t.Errorf("RetryFailuresOf of a name without records: got %v, %v; want none, no error", got, err)
	}
	if n, err := b.FailureCount(ctx); err != nil || n != 1 {
		t.Errorf("FailureCount after the retry: got %d, %v; want 1", n, err)
	}
}

func testSchedules(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	next := base.Add(time.Minute)
	s := snappea.ScheduleState{Name: "hourly", Spec: "@hourly", Task: "report", Next: next}
	if err := b.SaveSchedule(ctx, nil, s); err != nil {
		t.Fatal(err)
	}
	if err := b.SaveSchedule(ctx, nil, snappea.ScheduleState{Name: "a", Spec: "@daily", Task: "x", Next: next}); err != nil {
		t.Fatal(err)
	}
	ss, err := b.Schedules(ctx, nil)
	if err != nil || len(ss) != 2 || ss[0].Name != "a" || ss[1] != s && !(ss[1].Name == s.Name && ss[1].Next.Equal(next) &&
		ss[1].Last.IsZero() && ss[1].Spec == s.Spec && ss[1].Task == s.Task) {
		t.Fatalf("Schedules: got %+v, %v", ss, err)
	}
	after := next.Add(time.Hour)
	var took bool
	err = b.WriteTx(ctx, func(tx *sql.Tx) error {
		var err error
		took, err = b.TakeTick(ctx, tx, "hourly", next, after, next)
		return err
	})
	if err != nil || !took {
		t.Fatalf("TakeTick: got %v, %v; want true", took, err)
	}
	err = b.WriteTx(ctx, func(tx *sql.Tx) error {
		var err error
		took, err = b.TakeTick(ctx, tx, "hourly", next, after, next)
		return err
	})
	if err != nil || took {
		t.Errorf("TakeTick of a tick taken: got %v, %v; want false", took, err)
	}
	// A take rolled back leaves the tick to take.
	boom := errors.New("boom")
	err = b.WriteTx(ctx, func(tx *sql.Tx) error {
		if ok, err := b.TakeTick(ctx, tx, "hourly", after, after.Add(time.Hour), after); err != nil || !ok {
			return fmt.Errorf("take: %v, %v", ok, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("rolled-back take: %v", err)
	}
	ss, err = b.Schedules(ctx, nil)
	if err != nil || !ss[1].Next.Equal(after) || !ss[1].Last.Equal(next) {
		t.Errorf("schedule after a take and a rolled-back take: got %+v, %v; want next %v, last %v", ss, err, after, next)
	}
	// Replace: a new spec.
	s2 := snappea.ScheduleState{Name: "hourly", Spec: "@every 30s", Task: "report2", Next: base, Last: next}
	if err := b.SaveSchedule(ctx, nil, s2); err != nil {
		t.Fatal(err)
	}
	ss, _ = b.Schedules(ctx, nil)
	if ss[1].Spec != s2.Spec || ss[1].Task != s2.Task || !ss[1].Next.Equal(base) || !ss[1].Last.Equal(next) {
		t.Errorf("schedule after SaveSchedule replaced it: got %+v", ss[1])
	}
}

// testScheduleReadInTx: schedules read in a transaction stay as read until
// it ends. A scheduler reads a schedule, then writes it back renamed with
// the due time it read: a tick another daemon takes meanwhile must wait for
// that transaction, and then take the tick once, never be written over.
func testScheduleReadInTx(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	if err := b.SaveSchedule(ctx, nil, snappea.ScheduleState{Name: "r", Spec: "@every 1m", Task: "old", Next: base}); err != nil {
		t.Fatal(err)
	}
	read, release := make(chan struct{}), make(chan struct{})
	renamed := make(chan error, 1)
	go func() {
		renamed <- b.WriteTx(ctx, func(tx *sql.Tx) error {
			ss, err := b.Schedules(ctx, tx)
			close(read)
			if err != nil || len(ss) != 1 {
				return fmt.Errorf("read the schedules in a transaction: %+v, %v", ss, err)
			}
			<-release
			ss[0].Task = "new"
			return b.SaveSchedule(ctx, tx, ss[0])
		})
	}()
	<-read
	took := make(chan bool, 1)
	tookErr := make(chan error, 1)
	go func() {
		tookErr <- b.WriteTx(ctx, func(tx *sql.Tx) error {
			ok, err := b.TakeTick(ctx, tx, "r", base, base.Add(time.Minute), base)
			took <- ok
			return err
		})
	}()
	select {
	case ok := <-took:
		close(release)
		<-renamed
		t.Fatalf("a tick was taken (%v) while another transaction had read the schedule and not yet written it back", ok)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-renamed; err != nil {
		t.Fatal(err)
	}
	if err := <-tookErr; err != nil || !<-took {
		t.Errorf("the tick after the rename's transaction: taken false, %v; want taken", err)
	}
	ss, err := b.Schedules(ctx, nil)
	if err != nil || len(ss) != 1 || ss[0].Task != "new" || !ss[0].Next.Equal(base.Add(time.Minute)) {
		t.Errorf("schedule after the rename and the take: %+v, %v; want task new, next %v", ss, err, base.Add(time.Minute))
	}
}

// testScheduleTakers has several takers go for one tick at the same time,
// each in a transaction that also enqueues: exactly one wins.
func testScheduleTakers(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	for round := range 5 {
		name := fmt.Sprint("s", round)
		if err := b.SaveSchedule(ctx, nil, snappea.ScheduleState{Name: name, Spec: "@every 1m", Task: "tick", Next: base}); err != nil {
			t.Fatal(err)
		}
		const takers = 4
		var wg sync.WaitGroup
		won := make(chan bool, takers)
		start := make(chan struct{})
		for range takers {
			wg.Go(func() {
				<-start
				err := b.WriteTx(ctx, func(tx *sql.Tx) error {
					ok, err := b.TakeTick(ctx, tx, name, base, base.Add(time.Minute), base)
					if err != nil || !ok {
						won <- false
						return err
					}
					if _, err := b.Insert(ctx, tx, []storage.Row{row(name)}); err != nil {
						return err
					}
					won <- true
					return nil
				})
				if err != nil {
					t.Errorf("taker: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		close(won)
		wins := 0
		for w := range won {
			if w {
				wins++
			}
		}
		if wins != 1 {
			t.Errorf("round %d: %d takers took the tick, want 1", round, wins)
		}
		if got := mustClaim(t, b, 10); len(got) != 1 {
			t.Errorf("round %d: %d tasks enqueued for one tick, want 1", round, len(got))
		}
	}
}

func testStats(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	m0 := base.Truncate(time.Minute)
	m1 := m0.Add(time.Minute)
	m2 := m0.Add(2 * time.Minute)
	err := b.AddStats(ctx, []snappea.StatsRow{
		{Minute: m0.Add(10 * time.Second), Task: "a", Count: 3, Failures: 1, Total: 30 * time.Millisecond, Max: 20 * time.Millisecond},
		{Minute: m0, Task: "b", Count: 1, Total: time.Millisecond, Max: time.Millisecond},
		{Minute: m0, Backlog: 7},
		{Minute: m1, Backlog: 2},
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// The same minute again: counts add up, Max is the larger, the
	// backlog sample is replaced.
	err = b.AddStats(ctx, []snappea.StatsRow{
		{Minute: m0, Task: "a", Count: 2, Failures: 2, Total: 10 * time.Millisecond, Max: 25 * time.Millisecond},
		{Minute: m0, Backlog: 9},
		{Minute: m2, Task: "a", Count: 1, Total: time.Millisecond, Max: time.Millisecond},
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := b.ReadStats(ctx, m0.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := []snappea.StatsRow{
		{Minute: m0, Task: "a", Count: 5, Failures: 3, Total: 40 * time.Millisecond, Max: 25 * time.Millisecond, Backlog: 9},
		{Minute: m0, Task: "b", Count: 1, Total: time.Millisecond, Max: time.Millisecond, Backlog: 9},
		{Minute: m1, Backlog: 2},
		{Minute: m2, Task: "a", Count: 1, Total: time.Millisecond, Max: time.Millisecond, Backlog: -1},
	}
	if !equalStats(rows, want) {
		t.Errorf("ReadStats:\n got %+v\nwant %+v", rows, want)
	}
	if rows, err := b.ReadStats(ctx, m1); err != nil || len(rows) != 2 {
		t.Errorf("ReadStats from the second minute: got %+v, %v; want 2 rows", rows, err)
	}
	// Pruning: minutes before m2 go.
	if err := b.AddStats(ctx, nil, m2); err != nil {
		t.Fatal(err)
	}
	rows, err = b.ReadStats(ctx, m0)
	if err != nil || !equalStats(rows, want[3:]) {
		t.Errorf("ReadStats after pruning: got %+v, %v; want %+v", rows, err, want[3:])
	}
}

func equalStats(a, b []snappea.StatsRow) bool {
	return slices.EqualFunc(a, b, func(x, y snappea.StatsRow) bool {
		return x.Minute.Equal(y.Minute) && x.Task == y.Task && x.Count == y.Count && x.Failures == y.Failures &&
			x.Total == y.Total && x.Max == y.Max && x.Backlog == y.Backlog
	})
}

func testDaemons(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	d := storage.Daemon{Host: "web1", PID: 42, Workers: 16}
	id, err := b.RegisterDaemon(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := b.RegisterDaemon(ctx, storage.Daemon{Host: "web2", PID: 7, Workers: 4})
	if err != nil || id2 == id {
		t.Fatalf("second RegisterDaemon: %d, %v", id2, err)
	}
	d.ID, d.Busy, d.Paused, d.Generation = id, 3, true, 2
	if err := b.Heartbeat(ctx, d); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Daemons(ctx)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Daemons: got %+v, %v", ds, err)
	}
	got := ds[0]
	if got.ID != id || got.Host != "web1" || got.PID != 42 || got.Workers != 16 || got.Busy != 3 || !got.Paused ||
		got.Generation != 2 || got.Gone || got.LastSeen.IsZero() || got.Started.IsZero() || got.LastSeen.Before(got.Started) {
		t.Errorf("Daemons[0]: got %+v", got)
	}
	if err := b.UnregisterDaemon(ctx, id); err != nil {
		t.Fatal(err)
	}
	ds, err = b.Daemons(ctx)
	if err != nil || len(ds) != 1 || ds[0].ID != id2 {
		t.Errorf("Daemons after unregister: got %+v, %v", ds, err)
	}
	// A heartbeat after removal adds the daemon again.
	if err := b.Heartbeat(ctx, d); err != nil {
		t.Fatal(err)
	}
	if ds, err = b.Daemons(ctx); err != nil || len(ds) != 2 {
		t.Errorf("Daemons after a heartbeat of a removed daemon: got %+v, %v", ds, err)
	}
}

func testWaker(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	w, err := b.Waker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	waitWake := func(what string) {
		t.Helper()
		select {
		case <-w.Wakes():
		case <-time.After(30 * time.Second):
			t.Fatalf("no wake within 30s of %s", what)
		}
	}
	mustInsert(t, b, row("a"))
	waitWake("an insert")
	err = b.WriteTx(ctx, func(tx *sql.Tx) error {
		_, err := b.Insert(ctx, tx, []storage.Row{row("b")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Wake(); err != nil {
		t.Fatal(err)
	}
	waitWake("an insert in a transaction and Wake")
	if w.Cancels() == nil {
		if err := b.RequestCancel(ctx, 1); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("RequestCancel with a Waker without Cancels: got %v, want errors.ErrUnsupported", err)
		}
	} else {
		if err := b.RequestCancel(ctx, 12345); err != nil {
			t.Fatal(err)
		}
		select {
		case id := <-w.Cancels():
			if id != 12345 {
				t.Errorf("cancel request: got %d, want 12345", id)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no cancel request within 30s of RequestCancel")
		}
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func testSchemaVersion(t *testing.T, b storage.Backend) {
	ctx := ctxOf(t)
	v, err := b.SchemaVersion(ctx)
	if err != nil || v < 1 {
		t.Fatalf("SchemaVersion: got %d, %v; want at least 1", v, err)
	}
	st, err := b.Stats(ctx)
	if err != nil || st.SchemaVersion != v {
		t.Errorf("Stats.SchemaVersion: got %d, %v; want %d", st.SchemaVersion, err, v)
	}
}

// testConcurrentClaims has several goroutines claim at once: every task
// is claimed exactly once.
func testConcurrentClaims(t *testing.T, b storage.Backend) {
	const tasks, claimers = 600, 6
	var rows []storage.Row
	for i := range tasks {
		r := row("c")
		r.Priority = i % 3
		rows = append(rows, r)
	}
	for chunk := range slices.Chunk(rows, 100) {
		mustInsert(t, b, chunk...)
	}
	ctx := ctxOf(t)
	var mu sync.Mutex
	seen := make(map[int64]int)
	var wg sync.WaitGroup
	for range claimers {
		wg.Go(func() {
			for {
				ts, err := b.Claim(ctx, 7)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(ts) > 7 {
					t.Errorf("Claim(7) returned %d tasks", len(ts))
				}
				if len(ts) == 0 {
					return
				}
				mu.Lock()
				for _, task := range ts {
					seen[task.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != tasks {
		t.Errorf("claimed %d distinct tasks, want %d", len(seen), tasks)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("task %d claimed %d times", id, n)
		}
	}
}

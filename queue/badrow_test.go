package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage"
)

// looseTable replaces q's STRICT task table with the one schema version 4
// had, with its rows, ids and indexes: a table that accepts a value of any
// type, as an old database (or one recreated by hand) does. It is how the
// tests get rows of the wrong types past the database to Claim.
func looseTable(t testing.TB, q *Queue) {
	t.Helper()
	_, err := q.DB().Exec(`
		CREATE TABLE snappea_tasks_loose (
			id           INTEGER PRIMARY KEY AUTOINCREMENT,
			task         TEXT,
			args         BLOB,
			created_at   INTEGER,
			priority     INTEGER NOT NULL DEFAULT 0,
			run_at       INTEGER NOT NULL DEFAULT 0,
			attempt      INTEGER NOT NULL DEFAULT 1,
			max_attempts INTEGER NOT NULL DEFAULT 0,
			timeout_ns   INTEGER NOT NULL DEFAULT 0,
			key          TEXT,
			serial_key   TEXT
		);
		INSERT INTO snappea_tasks_loose SELECT * FROM snappea_tasks;
		DELETE FROM sqlite_sequence WHERE name = 'snappea_tasks_loose';
		INSERT INTO sqlite_sequence (name, seq) SELECT 'snappea_tasks_loose', seq FROM sqlite_sequence WHERE name = 'snappea_tasks';
		DROP TRIGGER snappea_inflight_claim;
		DROP TABLE snappea_tasks;
		ALTER TABLE snappea_tasks_loose RENAME TO snappea_tasks;
		CREATE TRIGGER snappea_inflight_claim AFTER INSERT ON snappea_inflight
		BEGIN
			DELETE FROM snappea_tasks WHERE id = NEW.id;
		END;
		CREATE INDEX snappea_tasks_claim ON snappea_tasks (run_at, priority DESC, id);
		CREATE UNIQUE INDEX snappea_tasks_key ON snappea_tasks (key) WHERE key IS NOT NULL;`)
	if err != nil {
		t.Fatalf("replace the task table with a loose one: %v", err)
	}
}

const secret = "hunter2"

// badRows are rows other programs could write into a table that is not
// STRICT, each with the words its failure must say. The secret is in a
// bad value where the column can hold text.
var badRows = []struct {
	name, col, val string
	want           string
}{
	{"float run_at", "run_at", "1733045000.25", "column run_at is REAL, want INTEGER"},
	{"text run_at", "run_at", "'" + secret + "'", "column run_at is TEXT, want INTEGER"},
	{"text created_at", "created_at", "'" + secret + "'", "column created_at is TEXT, want INTEGER (Unix nanoseconds)"},
	{"float created_at", "created_at", "1733045000.25", "column created_at is REAL, want INTEGER"},
	{"null created_at", "created_at", "NULL", "column created_at is NULL, want INTEGER"},
	{"text priority", "priority", "'" + secret + "'", "column priority is TEXT, want INTEGER"},
	{"text attempt", "attempt", "'x" + secret + "'", "column attempt is TEXT, want INTEGER"},
	{"blob max_attempts", "max_attempts", "X'00'", "column max_attempts is BLOB, want INTEGER"},
	{"float timeout_ns", "timeout_ns", "0.5", "column timeout_ns is REAL, want INTEGER"},
	{"null args", "args", "NULL", "column args is NULL, want TEXT or BLOB"},
	{"integer args", "args", "42", "column args is INTEGER, want TEXT or BLOB"},
	{"blob task", "task", "X'74'", "column task is BLOB, want TEXT"},
	{"null task", "task", "NULL", "column task is NULL, want TEXT"},
	{"blob key", "key", "X'6b'", "column key is BLOB, want TEXT or NULL"},
	{"args too large", "args", "'[" + strings.Repeat("1,", 40) + "1]'", "arguments are 83 bytes, over the limit of 64 (MaxArgsSize)"},
}

// Rows of the wrong types, between good tasks: every good task is claimed
// exactly once, each bad row ends as exactly one failed record (through
// Claim's Err, or, for a run_at that is not an integer, through Promote)
// saying which column was wrong and not its value, and Stats answers all
// along.
func TestQueue_BadRows(t *testing.T) {
	t.Run("Claim", func(t *testing.T) { testBadRows(t, false) })
	// A daemon's claims copy the rows into the ledger first.
	t.Run("ClaimFor", func(t *testing.T) { testBadRows(t, true) })
}

func testBadRows(t *testing.T, ledger bool) {
	ctx := context.Background()
	q := mustOpen(t, Config{MaxArgsSize: 64})
	looseTable(t, q)
	good := map[int64]int{}
	enqueueGood := func() {
		id, err := q.Enqueue(ctx, "good", map[string]int{"n": len(good)})
		if err != nil {
			t.Fatal(err)
		}
		good[id] = 0
	}
	bad := map[int64]string{}
	enqueueGood()
	for _, b := range badRows {
		cols := []string{"task", "args", "created_at"}
		vals := []string{"'bad'", "'{}'", fmt.Sprint(time.Now().UnixNano())}
		if i := slices.Index(cols, b.col); i >= 0 {
			vals[i] = b.val
		} else {
			cols, vals = append(cols, b.col), append(vals, b.val)
		}
		res, err := q.DB().Exec(`INSERT INTO snappea_tasks (` + strings.Join(cols, ", ") + `) VALUES (` +
			strings.Join(vals, ", ") + `)`)
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		id, _ := res.LastInsertId()
		bad[id] = b.want
		enqueueGood()
	}
	// A delayed good task keeps its time: only bad rows are failed early.
	later := mustEnqueueWith(t, q, "later", nil, registry.Options{Delay: time.Hour}).ID

	s, err := q.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats with bad rows queued: %v", err)
	}
	if s.Pending != int64(len(good)+len(bad)+1) {
		t.Errorf("Stats.Pending = %d, want %d", s.Pending, len(good)+len(bad)+1)
	}

	next, err := q.Promote(ctx, time.Now())
	if err != nil {
		t.Fatalf("Promote with bad rows queued: %v", err)
	}
	if d := time.Until(next); d < 50*time.Minute || d > time.Hour {
		t.Errorf("next due in %v, want the delayed good task's hour", d)
	}
	for {
		var ts []Task
		var err error
		if ledger {
			var c storage.Claimed
			c, err = q.Backend().ClaimFor(ctx, storage.ClaimRequest{Owner: 1, N: 3})
			ts = c.Tasks
		} else {
			ts, err = q.Claim(ctx, 3)
		}
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if len(ts) == 0 {
			break
		}
		for _, task := range ts {
			if task.Err != nil {
				if !errors.Is(task.Err, ErrBadRow) {
					t.Errorf("task %d: Err %v does not match ErrBadRow", task.ID, task.Err)
				}
				if err := q.Fail(ctx, &task, task.Err); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if _, ok := good[task.ID]; !ok {
				t.Errorf("claimed task %d (%s) without an Err, want only good tasks so", task.ID, task.Name)
				continue
			}
			good[task.ID]++
		}
	}
	for id, n := range good {
		if n != 1 {
			t.Errorf("good task %d claimed %d times, want 1", id, n)
		}
	}
	fs, err := q.Failures(ctx, 0)
	if err != nil {
		t.Fatalf("Failures: %v", err)
	}
	seen := map[int64]int{}
	for _, f := range fs {
		seen[f.TaskID]++
		want, ok := bad[f.TaskID]
		switch {
		case !ok:
			t.Errorf("failure record of task %d, not a bad row: %q", f.TaskID, f.Error)
		case !strings.Contains(f.Error, want):
			t.Errorf("failure of task %d = %q, want it to say %q", f.TaskID, f.Error, want)
		}
		if strings.Contains(f.Error, secret) {
			t.Errorf("failure of task %d quotes the value: %q", f.TaskID, f.Error)
		}
	}
	for id := range bad {
		if seen[id] != 1 {
			t.Errorf("bad row %d (%s): %d failure records, want 1", id, bad[id], seen[id])
		}
	}
	s, err = q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Pending != 1 || s.Delayed != 1 {
		t.Errorf("after claiming everything: %+v, want the delayed good task %d only", s, later)
	}
}

// A claim for more slots than there are tasks allocates for the tasks, not
// for the slots: a pool of a billion workers claims like one of sixteen.
func TestQueue_ClaimManySlots(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	for range 3 {
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ts, err := q.Claim(ctx, 1_000_000_000)
	runtime.ReadMemStats(&after)
	if err != nil || len(ts) != 3 {
		t.Fatalf("Claim(1e9) = %d tasks, %v; want 3", len(ts), err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("Claim(1e9) of 3 tasks allocated %d bytes", d)
	}
}

// A failure record of a bad row whose arguments are not JSON (as the
// upgrade to STRICT records them) does not make retrying all the others
// fail: it stays, for an operator to look at.
func TestQueue_RetryAllFailuresKeepsUnretryable(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	if _, err := q.Enqueue(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	ts := mustClaim(t, q, 1)
	if err := q.Fail(ctx, &ts[0], errors.New("x")); err != nil {
		t.Fatal(err)
	}
	if err := q.Fail(ctx, &Task{ID: 99, Name: "t", Args: []byte(`{"not json`), Attempt: 1}, errors.New("bad task row")); err != nil {
		t.Fatal(err)
	}
	n, err := q.RetryAllFailures(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RetryAllFailures = %d, %v; want 1, nil", n, err)
	}
	fs, err := q.Failures(ctx, 0)
	if err != nil || len(fs) != 1 || fs[0].TaskID != 99 {
		t.Errorf("failures left = %+v, %v; want the record of task 99", fs, err)
	}
}

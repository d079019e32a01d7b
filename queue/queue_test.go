package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea/migrations"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage/sqlite"
	"github.com/snappea/snappea/wakeup"
)

func mustOpen(t testing.TB, cfg Config) *Queue {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "data")
	}
	q, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func mustClaim(t testing.TB, q *Queue, n int) []Task {
	t.Helper()
	ts, err := q.Claim(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func wakePending(q *Queue) bool {
	_, err := os.Stat(filepath.Join(q.Config().WakeupDir, wakeup.FileName))
	return err == nil
}

func TestOpen_CreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	q := mustOpen(t, Config{Dir: dir})
	if _, err := q.Enqueue(context.Background(), "x", nil); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{
		dir:                                 0o700 | os.ModeDir,
		filepath.Join(dir, DBFile):          0o600,
		filepath.Join(dir, DBFile) + "-wal": 0o600,
		filepath.Join(dir, WakeupDirName):   0o700 | os.ModeDir,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	var mode string
	if err := q.DB().QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var sync int
	if err := q.DB().QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 1 {
		t.Errorf("synchronous = %d, %v; want 1 (NORMAL)", sync, err)
	}
}

func TestConfig_Defaults(t *testing.T) {
	var c Config
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	want := Config{Dir: "snappea-data", DBPath: filepath.Join("snappea-data", "snappea.db"),
		WakeupDir: filepath.Join("snappea-data", "wakeup"), BusyTimeout: 5 * time.Second,
		MaxArgsSize: DefaultMaxArgsSize}
	c.Logger = nil
	if c != want {
		t.Errorf("defaults = %+v, want %+v", c, want)
	}
	if err := (&Config{BusyTimeout: -1}).setDefaults(); err == nil {
		t.Error("negative BusyTimeout accepted")
	}
	if err := (&Config{MaxArgsSize: -1}).setDefaults(); err == nil {
		t.Error("negative MaxArgsSize accepted")
	}
	if err := (&Config{Inline: true}).setDefaults(); err == nil {
		t.Error("Inline without Registry accepted")
	}
	if err := (&Config{MaxArgsSize: -1}).setDefaults(); err == nil || !strings.Contains(err.Error(), "MaxArgsSize") {
		t.Errorf("negative MaxArgsSize: %v, want an error naming the field", err)
	}
}

func TestQueue_EnqueueClaimFIFO(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	var ids []int64
	for i := range 5 {
		id, err := q.Enqueue(ctx, "t", map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if !wakePending(q) {
		t.Error("no wake file after Enqueue")
	}
	got := mustClaim(t, q, 3)
	got = append(got, mustClaim(t, q, 10)...)
	if len(got) != 5 {
		t.Fatalf("claimed %d tasks, want 5", len(got))
	}
	for i, task := range got {
		if task.ID != ids[i] || task.Name != "t" || string(task.Args) != `{"i":`+string(rune('0'+i))+`}` {
			t.Errorf("claim %d = %+v, want id %d args {\"i\":%d}", i, task, ids[i], i)
		}
		if time.Since(task.EnqueuedAt) > time.Minute || task.EnqueuedAt.After(time.Now()) {
			t.Errorf("EnqueuedAt = %v", task.EnqueuedAt)
		}
	}
	if rest := mustClaim(t, q, 10); len(rest) != 0 {
		t.Errorf("claimed %d more from an empty queue", len(rest))
	}
}

func TestQueue_IDsNeverRepeat(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	a, _ := q.Enqueue(ctx, "t", nil)
	mustClaim(t, q, 1) // the table is empty again
	b, err := q.Enqueue(ctx, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b <= a {
		t.Errorf("id after claiming the newest = %d, want > %d (AUTOINCREMENT)", b, a)
	}
}

func TestQueue_EnqueueTx(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	if _, err := q.DB().Exec(`CREATE TABLE orders (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}

	// Rolled back: neither the order nor the task.
	tx, err := q.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(`INSERT INTO orders (id) VALUES (1)`)
	if _, err := q.EnqueueTx(ctx, tx, "t", 1); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if n := len(mustClaim(t, q, 10)); n != 0 {
		t.Errorf("rolled back EnqueueTx left %d tasks", n)
	}

	// Committed through InTx: both, and a wakeup after the commit.
	err = q.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO orders (id) VALUES (2)`); err != nil {
			return err
		}
		_, err := q.EnqueueTx(ctx, tx, "t", 2)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !wakePending(q) {
		t.Error("InTx did not wake")
	}
	if got := mustClaim(t, q, 10); len(got) != 1 || string(got[0].Args) != "2" {
		t.Errorf("claimed %+v, want the one task from the committed transaction", got)
	}

	// InTx with an error rolls back.
	sentinel := errors.New("no")
	err = q.InTx(ctx, func(tx *sql.Tx) error {
		q.EnqueueTx(ctx, tx, "t", 3)
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("InTx = %v, want the fn's error", err)
	}
	if n := len(mustClaim(t, q, 10)); n != 0 {
		t.Errorf("failed InTx left %d tasks", n)
	}
}

func TestQueue_EnqueueManyIsAtomic(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	registry.RegisterBuiltins(reg)
	q := mustOpen(t, Config{Registry: reg})
	ids, err := q.EnqueueMany(ctx, []Job{
		{Task: registry.NoopTask},
		{Task: registry.SleepTask, Args: registry.SleepArgs{MS: 1}},
		{Task: registry.EchoTask, Args: json.RawMessage(`{"msg":"hi"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[1] != ids[0]+1 || ids[2] != ids[1]+1 {
		t.Errorf("ids = %v", ids)
	}
	_, err = q.EnqueueMany(ctx, []Job{{Task: registry.NoopTask}, {Task: "nope"}})
	if !errors.Is(err, registry.ErrUnknownTask) {
		t.Errorf("EnqueueMany with an unknown task = %v, want ErrUnknownTask", err)
	}
	if got := mustClaim(t, q, 10); len(got) != 3 {
		t.Errorf("claimed %d, want only the 3 of the good batch", len(got))
	}
}

func TestQueue_RegistryChecks(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	registry.RegisterBuiltins(reg)
	q := mustOpen(t, Config{Registry: reg})
	tests := []struct {
		task string
		args any
		want error
	}{
		{"email.sned", nil, registry.ErrUnknownTask},
		{registry.SleepTask, map[string]string{"ms": "soon"}, registry.ErrBadArgs},
		{registry.SleepTask, json.RawMessage(`{"ms":`), registry.ErrBadArgs},
	}
	for _, tt := range tests {
		_, err := q.Enqueue(ctx, tt.task, tt.args)
		if !errors.Is(err, tt.want) {
			t.Errorf("Enqueue(%s, %v) = %v, want %v", tt.task, tt.args, err, tt.want)
		}
	}
	if _, err := q.Enqueue(ctx, "", nil); err == nil {
		t.Error("empty task name accepted")
	}
	if n := len(mustClaim(t, q, 10)); n != 0 {
		t.Errorf("rejected enqueues wrote %d rows", n)
	}
}

func TestQueue_Inline(t *testing.T) {
	ctx := context.Background()
	type Args struct{ N int }
	var mu sync.Mutex
	var ran []int
	reg := registry.New()
	registry.Register(reg, "count", func(ctx context.Context, a Args) error {
		if info, ok := registry.InfoFrom(ctx); !ok || info.Name != "count" || info.ID == 0 {
			t.Errorf("inline task Info = %+v, %v", info, ok)
		}
		mu.Lock()
		ran = append(ran, a.N)
		mu.Unlock()
		if a.N < 0 {
			return errors.New("negative")
		}
		return nil
	})
	q := mustOpen(t, Config{Registry: reg, Inline: true})

	if _, err := q.Enqueue(ctx, "count", Args{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, "count", Args{-1}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("inline handler error = %v, want it returned", err)
	}
	// A type mismatch fails as it would in the daemon.
	if _, err := q.Enqueue(ctx, "count", map[string]string{"N": "x"}); !errors.Is(err, registry.ErrBadArgs) {
		t.Errorf("mismatched args = %v, want ErrBadArgs", err)
	}
	// Inside a transaction: nothing runs until commit; nothing after rollback.
	q.InTx(ctx, func(tx *sql.Tx) error {
		q.EnqueueTx(ctx, tx, "count", Args{2})
		mu.Lock()
		defer mu.Unlock()
		if len(ran) != 2 {
			t.Errorf("inline task ran before commit")
		}
		return nil
	})
	q.InTx(ctx, func(tx *sql.Tx) error {
		q.EnqueueTx(ctx, tx, "count", Args{3})
		return errors.New("rollback")
	})
	if _, err := q.EnqueueMany(ctx, []Job{{Task: "count", Args: Args{4}}, {Task: "count", Args: Args{5}}}); err != nil {
		t.Fatal(err)
	}
	// A transaction the caller manages: Notify runs what committed, and
	// nothing from a rollback or a transaction still open.
	rolledBack, _ := q.DB().BeginTx(ctx, nil)
	q.EnqueueTx(ctx, rolledBack, "count", Args{6})
	rolledBack.Rollback()
	committed, _ := q.DB().BeginTx(ctx, nil)
	q.EnqueueTx(ctx, committed, "count", Args{7})
	if err := committed.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := q.Notify(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, -1, 2, 4, 5, 7}; !equal(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	if n := len(mustClaim(t, q, 10)); n != 0 {
		t.Errorf("inline mode wrote %d rows", n)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestQueue_ConcurrentEnqueue(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	// Two handles on one file, as two processes would have.
	q1 := mustOpen(t, Config{Dir: dir})
	q2 := mustOpen(t, Config{Dir: dir})
	var wg sync.WaitGroup
	ids := make(chan int64, 800)
	for g := range 8 {
		q := q1
		if g%2 == 1 {
			q = q2
		}
		wg.Go(func() {
			for range 100 {
				id, err := q.Enqueue(ctx, "t", g)
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
			}
		})
	}
	// Claim while producing.
	claimed := map[int64]bool{}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		for _, task := range mustClaim(t, q1, 16) {
			if claimed[task.ID] {
				t.Fatalf("task %d claimed twice", task.ID)
			}
			claimed[task.ID] = true
		}
	}
	for _, task := range mustClaim(t, q2, 1000) {
		claimed[task.ID] = true
	}
	close(ids)
	n := 0
	for id := range ids {
		n++
		if !claimed[id] {
			t.Errorf("task %d enqueued but never claimed", id)
		}
	}
	if n != 800 || len(claimed) != 800 {
		t.Errorf("enqueued %d, claimed %d, want 800 each", n, len(claimed))
	}
}

func TestQueue_BusyDatabase(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	q := mustOpen(t, Config{Dir: dir, BusyTimeout: 50 * time.Millisecond})
	other := mustOpen(t, Config{Dir: dir})
	// Another connection holds the write lock.
	tx, err := other.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('held', '', 0)`); err != nil {
		t.Fatal(err)
	}
	_, err = q.Enqueue(ctx, "t", nil)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Enqueue on a locked database = %v, want ErrBusy", err)
	}
	if !strings.Contains(err.Error(), "busy timeout") {
		t.Errorf("message %q does not say what to do", err)
	}
	if _, err := q.Claim(ctx, 1); !errors.Is(err, ErrBusy) {
		t.Errorf("Claim on a locked database = %v, want ErrBusy", err)
	}
	tx.Rollback()
	if _, err := q.Enqueue(ctx, "t", nil); err != nil {
		t.Errorf("Enqueue after the lock was released: %v", err)
	}
}

func TestOpen_RefusesNewerSchema(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	q := mustOpen(t, Config{Dir: dir})
	if _, err := q.DB().Exec(`INSERT INTO snappea_migrations (version, name, applied_at) VALUES (?, 'future', 0)`,
		migrations.Latest()+1); err != nil {
		t.Fatal(err)
	}
	q.Close()
	_, err := Open(context.Background(), Config{Dir: dir})
	if !errors.Is(err, migrations.ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "upgrade snappea") {
		t.Errorf("message %q does not say what to do", err)
	}
}

func TestOpen_DatabaseInAFile(t *testing.T) {
	// The database's directory is a regular file: fails even for root.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	_, err := Open(context.Background(), Config{Dir: f})
	if err == nil || !strings.Contains(err.Error(), f) {
		t.Errorf("Open under a file = %v, want an error naming %s", err, f)
	}
}

func TestQueue_Stats(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	s, err := q.Stats(ctx)
	if err != nil || s.Pending != 0 || s.OldestAge != 0 || s.OldestID != 0 {
		t.Errorf("empty Stats = %+v, %v", s, err)
	}
	if _, err := q.DB().Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '', ?)`,
		time.Now().Add(-time.Minute).UnixNano()); err != nil {
		t.Fatal(err)
	}
	q.Enqueue(ctx, "t", nil)
	s, err = q.Stats(ctx)
	if err != nil || s.Pending != 2 || s.OldestAge < time.Minute || s.OldestAge > 2*time.Minute || s.OldestID != 1 {
		t.Errorf("Stats = %+v, %v; want 2 pending, oldest ~1m", s, err)
	}
	if s.SchemaVersion != migrations.Latest() {
		t.Errorf("SchemaVersion = %d", s.SchemaVersion)
	}
}

func TestQueue_Closed(t *testing.T) {
	q := mustOpen(t, Config{})
	q.Close()
	if _, err := q.Enqueue(context.Background(), "t", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestQueue_CheckpointsLeftToTheDaemon(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{Dir: t.TempDir()})
	var pages int
	if err := q.DB().QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if pages != AutoCheckpointPages {
		t.Errorf("wal_autocheckpoint = %d, want %d: producers must not checkpoint every 1000 pages", pages, AutoCheckpointPages)
	}
	for range 50 {
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatal(err)
		}
	}
	logPages, done, err := q.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if logPages < 50 || done != logPages {
		t.Errorf("Checkpoint = %d pages in the log, %d checkpointed; want at least 50, all of them", logPages, done)
	}
	// RunCheckpoints returns when its context ends.
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- q.RunCheckpoints(rctx, time.Millisecond) }()
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("RunCheckpoints = %v", err)
	}
}

// Under a producer committing as fast as it can, the checkpoint service
// keeps the write-ahead log bounded: PASSIVE checkpoints alone would let it
// grow with every commit (see RunCheckpoints).
func TestQueue_RunCheckpointsBoundsTheLog(t *testing.T) {
	if testing.Short() {
		t.Skip("writes about 100 MiB of log without the bound")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	daemon := mustOpen(t, Config{Dir: dir})
	producer := mustOpen(t, Config{Dir: dir})
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- daemon.RunCheckpoints(rctx, 2*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("RunCheckpoints = %v", err)
		}
	}()

	args := json.RawMessage(`{"pad": "` + strings.Repeat("x", 1000) + `"}`)
	wal := daemon.Config().DBPath + "-wal"
	var largest int64
	const commits = 8000
	for i := range commits {
		if _, err := producer.Enqueue(ctx, "t", args); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			if fi, err := os.Stat(wal); err == nil {
				largest = max(largest, fi.Size())
			}
		}
	}
	// Without the bound the log holds every commit, three pages and more
	// each: about 100 MiB.
	if limit := int64(8 * TruncateLogBytes); largest > limit {
		t.Errorf("the write-ahead log reached %d MiB over %d commits, want at most %d MiB", largest>>20, commits, limit>>20)
	}
}

func TestQueue_TruncateCheckpoint(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	wal := q.Config().DBPath + "-wal"
	for range 20 {
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatal(err)
		}
	}
	// A reader in the middle of a transaction, on an older snapshot than
	// the log's end, holds the log: the checkpoint gives up after a
	// bounded wait, and says so.
	reader, err := q.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var n int
	if _, err := reader.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
		t.Fatal(err)
	}
	if err := reader.QueryRowContext(ctx, "SELECT count(*) FROM snappea_tasks").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, "t", nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ok, err := q.TruncateCheckpoint(ctx)
	if err != nil || ok {
		t.Errorf("TruncateCheckpoint with a reader on an old snapshot = %v, %v; want false, nil", ok, err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("TruncateCheckpoint waited %v for the reader, want about 20ms (the checkpoint's bounded wait)", waited)
	}
	if _, err := reader.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}

	ok, err = q.TruncateCheckpoint(ctx)
	if err != nil || !ok {
		t.Fatalf("TruncateCheckpoint = %v, %v; want true, nil", ok, err)
	}
	if fi, err := os.Stat(wal); err != nil {
		t.Error(err)
	} else if fi.Size() != 0 {
		t.Errorf("the write-ahead log after TruncateCheckpoint is %d bytes, want 0", fi.Size())
	}
	// The pool's connections keep their busy timeout.
	var ms int
	if err := q.DB().QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil {
		t.Fatal(err)
	}
	if want := int(q.Config().BusyTimeout.Milliseconds()); ms != want {
		t.Errorf("busy_timeout after TruncateCheckpoint = %d ms, want %d", ms, want)
	}
	ts := mustClaim(t, q, 100)
	if len(ts) != 21 {
		t.Errorf("claimed %d tasks after the checkpoints, want 21", len(ts))
	}
}

// A Queue over a backend its caller opened uses it, and leaves it open.
func TestOpen_Backend(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "other.db"), WakeupDir: filepath.Join(dir, "wake")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q := mustOpen(t, Config{Dir: filepath.Join(dir, "unused"), Backend: b})
	id, err := q.Enqueue(ctx, "t", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	ts, err := b.Claim(ctx, 10)
	if err != nil {
		t.Fatalf("Claim on the backend after the Queue's Close: %v", err)
	}
	if len(ts) != 1 || ts[0].ID != id || string(ts[0].Args) != `{"n":1}` {
		t.Errorf("claimed %+v, want task %d", ts, id)
	}
	if _, err := os.Stat(filepath.Join(dir, "unused")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the Queue created its own data directory beside the backend: %v", err)
	}
}

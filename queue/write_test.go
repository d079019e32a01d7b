package queue

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

// within runs f and fails the test if it does not return within d: the
// writes tested here used to block forever.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return nil
	}
}

func TestQueue_WriteInsideInTx(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	id, err := q.Enqueue(ctx, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	writes := []struct {
		name string
		f    func() error
	}{
		{"Enqueue", func() error { _, err := q.Enqueue(ctx, "t", nil); return err }},
		{"EnqueueWith key", func() error {
			_, err := q.EnqueueWith(ctx, "t", nil, registry.Options{Key: "k"})
			return err
		}},
		{"EnqueueMany", func() error { _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}}); return err }},
		{"InTx", func() error { return q.InTx(ctx, func(*sql.Tx) error { return nil }) }},
		{"WriteTx", func() error { return q.WriteTx(ctx, func(*sql.Tx) error { return nil }) }},
		{"Cancel", func() error { _, err := q.Cancel(ctx, id); return err }},
		{"Retry", func() error { _, err := q.Retry(ctx, &Task{ID: id, Name: "t"}, time.Time{}); return err }},
		{"Fail", func() error { return q.Fail(ctx, &Task{ID: id, Name: "t"}, errors.New("x")) }},
		{"PurgeFailures", func() error { _, err := q.PurgeFailures(ctx); return err }},
		{"RetryAllFailures", func() error { _, err := q.RetryAllFailures(ctx); return err }},
	}
	for _, w := range writes {
		for _, outer := range []string{"InTx", "WriteTx"} {
			t.Run(outer+"/"+w.name, func(t *testing.T) {
				tx := q.InTx
				if outer == "WriteTx" {
					tx = q.WriteTx
				}
				var inner error
				err := within(t, 10*time.Second, w.name+" inside "+outer, func() error {
					return tx(ctx, func(*sql.Tx) error {
						inner = w.f()
						return inner
					})
				})
				if !errors.Is(inner, ErrInsideInTx) {
					t.Fatalf("%s inside %s = %v, want ErrInsideInTx", w.name, outer, inner)
				}
				if !errors.Is(err, ErrInsideInTx) {
					t.Errorf("%s = %v, want fn's error", outer, err)
				}
				if !strings.Contains(inner.Error(), "inside InTx use EnqueueTx with its transaction") {
					t.Errorf("message %q does not say what to do", inner)
				}
			})
		}
	}
	// The turn was given back each time.
	if err := within(t, 10*time.Second, "Enqueue after", func() error { _, err := q.Enqueue(ctx, "t", nil); return err }); err != nil {
		t.Fatalf("Enqueue after: %v", err)
	}
	// Inside fn, tx works.
	err = q.InTx(ctx, func(tx *sql.Tx) error { _, err := q.EnqueueTx(ctx, tx, "t", nil); return err })
	if err != nil {
		t.Errorf("EnqueueTx inside InTx: %v", err)
	}
}

// A write that fn waits for in another goroutine cannot be told from any
// other: it fails once the busy timeout is up.
func TestQueue_WriteFromAnotherGoroutineInTx(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{BusyTimeout: 200 * time.Millisecond})
	var inner error
	err := within(t, 10*time.Second, "InTx waiting on an Enqueue", func() error {
		return q.InTx(ctx, func(*sql.Tx) error {
			done := make(chan error)
			go func() { _, err := q.Enqueue(ctx, "t", nil); done <- err }()
			inner = <-done
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(inner, ErrBusy) {
		t.Errorf("Enqueue from a goroutine fn waits for = %v, want ErrBusy", inner)
	}
}

// holdTurnAndLock makes other hold the write turn and SQLite's write lock
// (an InTx that waits) until the test ends.
func holdTurnAndLock(t *testing.T, other *Queue) {
	t.Helper()
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- other.InTx(context.Background(), func(tx *sql.Tx) error {
			if _, err := tx.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('held', '', 0)`); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("hold the write lock: %v", err)
	}
	t.Cleanup(func() {
		close(release)
		if err := <-done; err != nil {
			t.Errorf("the holding InTx: %v", err)
		}
	})
}

func TestQueue_WriteHonoursContext(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	q := mustOpen(t, Config{Dir: dir, BusyTimeout: 10 * time.Second})
	holdTurnAndLock(t, mustOpen(t, Config{Dir: dir}))
	for _, w := range []struct {
		name string
		f    func(ctx context.Context) error
	}{
		{"Enqueue", func(ctx context.Context) error { _, err := q.Enqueue(ctx, "t", nil); return err }},
		{"EnqueueMany", func(ctx context.Context) error { _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}}); return err }},
		{"InTx", func(ctx context.Context) error { return q.InTx(ctx, func(*sql.Tx) error { return nil }) }},
	} {
		t.Run(w.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := within(t, 20*time.Second, w.name, func() error { return w.f(ctx) })
			// Generous: before, the wait for the turn alone ignored ctx for
			// the whole busy timeout.
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%s with a 300ms deadline returned after %v", w.name, d)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s = %v, want context.DeadlineExceeded", w.name, err)
			}
		})
	}
}

func TestQueue_WriteTx(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	clearWake(t, q)
	err := q.WriteTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO snappea_tasks (task, args, created_at) VALUES ('a', '', 1)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, q, "task = 'a'"); n != 1 {
		t.Errorf("committed rows = %d, want 1", n)
	}
	if wakePending(q) {
		t.Error("WriteTx woke the daemon")
	}
	bad := errors.New("bad")
	err = q.WriteTx(ctx, func(tx *sql.Tx) error {
		tx.ExecContext(ctx, `INSERT INTO snappea_tasks (task, args, created_at) VALUES ('b', '', 1)`)
		return bad
	})
	if !errors.Is(err, bad) || countRows(t, q, "task = 'b'") != 0 {
		t.Errorf("WriteTx with a failing fn = %v, %d rows; want its error and a rollback", err, countRows(t, q, "task = 'b'"))
	}
}

func TestOpen_MustExist(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	_, err := Open(ctx, Config{Dir: dir, MustExist: true})
	if !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("Open with MustExist on no database = %v, want ErrNoDatabase", err)
	}
	for _, want := range []string{filepath.Join(dir, DBFile), "daemon creates it", "check the path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with MustExist created the directory (%v)", err)
	}
	mustOpen(t, Config{Dir: dir}) // the daemon's Open creates it
	mustOpen(t, Config{Dir: dir, MustExist: true})
}

func TestQueue_MaxArgsSize(t *testing.T) {
	ctx := context.Background()
	const limit = 1000
	q := mustOpen(t, Config{MaxArgsSize: limit})
	if got := q.Config().MaxArgsSize; got != limit {
		t.Errorf("Config().MaxArgsSize = %d, want %d", got, limit)
	}
	atLimit := json.RawMessage(`"` + strings.Repeat("x", limit-2) + `"`)
	over := json.RawMessage(`"` + strings.Repeat("x", limit-1) + `"`)
	if _, err := q.Enqueue(ctx, "t", atLimit); err != nil {
		t.Fatalf("Enqueue at the limit: %v", err)
	}
	for _, w := range []struct {
		name string
		f    func() error
	}{
		{"Enqueue", func() error { _, err := q.Enqueue(ctx, "t", over); return err }},
		{"Enqueue encoded", func() error { _, err := q.Enqueue(ctx, "t", strings.Repeat("x", limit-1)); return err }},
		{"EnqueueWith", func() error {
			_, err := q.EnqueueWith(ctx, "t", over, registry.Options{Key: "k"})
			return err
		}},
		{"EnqueueMany", func() error { _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}, {Task: "t", Args: over}}); return err }},
		{"EnqueueTx", func() error {
			return q.InTx(ctx, func(tx *sql.Tx) error { _, err := q.EnqueueTx(ctx, tx, "t", over); return err })
		}},
		{"EnqueueManyTx", func() error {
			return q.InTx(ctx, func(tx *sql.Tx) error {
				_, err := q.EnqueueManyTx(ctx, tx, []Job{{Task: "t"}, {Task: "t", Args: over}})
				return err
			})
		}},
	} {
		err := w.f()
		if !errors.Is(err, ErrArgsTooLarge) {
			t.Errorf("%s over the limit = %v, want ErrArgsTooLarge", w.name, err)
			continue
		}
		for _, want := range []string{"1001 bytes", "is 1000"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: message %q lacks %q", w.name, err, want)
			}
		}
	}
	if n := countRows(t, q, "1"); n != 1 {
		t.Errorf("%d rows written, want only the one at the limit", n)
	}
}

package queue

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

// holdTurnEnv makes the test binary a helper process that takes the write
// turn of the database named in it, says "held", and keeps it until killed.
const holdTurnEnv = "SNAPPEA_TEST_HOLD_TURN"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdTurnEnv); path != "" {
		l := openWriteLock(path, time.Minute)
		if err := l.Lock(context.Background()); err != nil || !l.held {
			fmt.Println("could not take the turn:", err)
			os.Exit(1)
		}
		fmt.Println("held")
		select {}
	}
	os.Exit(m.Run())
}

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

func TestQueue_BusyTimeoutIsTheTotal(t *testing.T) {
	ctx := context.Background()
	const busy = 2 * time.Second
	t.Run("other process", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		q := mustOpen(t, Config{Dir: dir, BusyTimeout: busy})
		holdTurnAndLock(t, mustOpen(t, Config{Dir: dir}))
		start := time.Now()
		err := within(t, 20*time.Second, "Enqueue", func() error { _, err := q.Enqueue(ctx, "t", nil); return err })
		// Before: the busy timeout for the turn, then again in SQLite.
		if d := time.Since(start); d > busy*29/20 {
			t.Errorf("Enqueue returned after %v, want about the busy timeout %v", d, busy)
		}
		if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "busy timeout") {
			t.Errorf("Enqueue = %v, want ErrBusy naming the busy timeout", err)
		}
	})
	t.Run("this process, then the database", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		q := mustOpen(t, Config{Dir: dir, BusyTimeout: busy})
		// SQLite's lock, held by a transaction that does not take turns.
		tx, err := mustOpen(t, Config{Dir: dir}).DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		for _, w := range []struct {
			name string
			f    func() error
		}{
			{"Enqueue", func() error { _, err := q.Enqueue(ctx, "t", nil); return err }},
			{"InTx", func() error { return q.InTx(ctx, func(*sql.Tx) error { return nil }) }},
		} {
			// This process's turn, held for 3/4 of the busy timeout: what
			// is left is the wait for SQLite's lock.
			if err := q.writeMu.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(busy*3/4, q.writeMu.Unlock)
			start := time.Now()
			err := within(t, 20*time.Second, w.name, w.f)
			if d := time.Since(start); d > busy*29/20 {
				t.Errorf("%s returned after %v, want about the busy timeout %v", w.name, d, busy)
			}
			if !errors.Is(err, ErrBusy) {
				t.Errorf("%s = %v, want ErrBusy", w.name, err)
			}
		}
	})
}

// A process stopped while it holds the write turn costs other writers a
// few milliseconds, not the busy timeout, per write.
func TestQueue_StoppedTurnHolder(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdTurnEnv+"="+q.Config().DBPath)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s != "held\n" {
			t.Fatalf("helper process: %q, want held", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper process did not take the write turn within 30s")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		start := time.Now()
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatalf("Enqueue %d with the turn's holder stopped: %v", i, err)
		}
		// Generous: the target is a few ms (a benchmark's business); before,
		// each write waited the busy timeout, 5s.
		d := time.Since(start)
		t.Logf("Enqueue %d with the turn's holder stopped: %v", i, d)
		if d > 500*time.Millisecond {
			t.Errorf("Enqueue %d with the turn's holder stopped took %v", i, d)
		}
	}
	// Once the holder is gone, turns are taken again.
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := q.Enqueue(ctx, "t", nil); err != nil {
		t.Fatal(err)
	}
	if err := q.writeMu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	held := q.writeMu.held
	q.writeMu.Unlock()
	if !held {
		t.Error("the turn is not taken again once its stopped holder was killed")
	}
}

// A holder that is not stopped (descheduled, or in a long transaction) is
// given longer than a stopped one, but not the busy timeout.
func TestQueue_RunningTurnHolder(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	q := mustOpen(t, Config{Dir: dir})
	other := mustOpen(t, Config{Dir: dir})
	if err := other.writeMu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer other.writeMu.Unlock()
	for i := range 3 {
		start := time.Now()
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Enqueue %d with the turn held by a running holder took %v", i, d)
		}
	}
}

func TestStopped(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdTurnEnv+"="+filepath.Join(t.TempDir(), "db"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if s, _ := bufio.NewReader(out).ReadString('\n'); s != "held\n" {
		t.Fatalf("helper process: %q, want held", s)
	}
	pid := int64(cmd.Process.Pid)
	if stopped(pid) {
		t.Error("a running process is reported stopped")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !stopped(pid) {
		if time.Now().After(deadline) {
			t.Fatal("a process sent SIGSTOP is not reported stopped within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if stopped(0) || stopped(1<<40) {
		t.Error("no process is reported stopped")
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

func TestQueue_DatabaseGone(t *testing.T) {
	ctx := context.Background()
	for _, how := range []string{"directory removed", "file replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			q := mustOpen(t, Config{Dir: dir})
			q.goneEvery = 0 // look at every write
			if _, err := q.Enqueue(ctx, "t", nil); err != nil {
				t.Fatal(err)
			}
			path := q.Config().DBPath
			switch how {
			case "directory removed":
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			case "file replaced":
				if err := os.WriteFile(path+".new", nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(path+".new", path); err != nil {
					t.Fatal(err)
				}
			}
			for _, w := range []struct {
				name string
				f    func() error
			}{
				{"Enqueue", func() error { _, err := q.Enqueue(ctx, "t", nil); return err }},
				{"EnqueueMany", func() error { _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}}); return err }},
				{"InTx", func() error { return q.InTx(ctx, func(*sql.Tx) error { return nil }) }},
				{"Cancel", func() error { _, err := q.Cancel(ctx, 1); return err }},
			} {
				err := w.f()
				if !errors.Is(err, ErrDatabaseGone) {
					t.Errorf("%s after the database went = %v, want ErrDatabaseGone", w.name, err)
					continue
				}
				for _, want := range []string{path, "removed or replaced", "reopen"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s: message %q lacks %q", w.name, err, want)
					}
				}
			}
		})
	}
}

// The check costs a stat at most every goneEvery.
func TestQueue_DatabaseGoneCheckedOncePerInterval(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	q := mustOpen(t, Config{Dir: dir})
	q.goneEvery = time.Hour
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	// Within the interval the write is not checked (and goes to the
	// unlinked file, as before).
	if _, err := q.Enqueue(ctx, "t", nil); err != nil {
		t.Fatalf("Enqueue within the interval: %v", err)
	}
	q.goneAt.Store(time.Now().Add(-time.Hour).UnixNano())
	if _, err := q.Enqueue(ctx, "t", nil); !errors.Is(err, ErrDatabaseGone) {
		t.Errorf("Enqueue once the interval passed = %v, want ErrDatabaseGone", err)
	}
}

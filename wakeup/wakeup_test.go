package wakeup

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// deadline bounds every wait in these tests; nothing here should take more
// than milliseconds.
const deadline = 5 * time.Second

// testInterval is the CheckInterval of tests that exercise the check.
const testInterval = 20 * time.Millisecond

func mustNew(tb testing.TB, cfg Config) *Watcher {
	tb.Helper()
	w, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { w.Close() })
	return w
}

func mustNotify(tb testing.TB, dir string) {
	tb.Helper()
	if err := Notify(dir); err != nil {
		tb.Fatalf("Notify: %v", err)
	}
}

// waitWake fails the test unless a wake arrives within the deadline.
func waitWake(tb testing.TB, w *Watcher, after string) {
	tb.Helper()
	select {
	case <-w.Wakes():
	case <-time.After(deadline):
		tb.Fatalf("no wake within %v after %s", deadline, after)
	}
}

// waitConsumed receives a wake, and more until, after one, the wake file in
// dir is gone: the watcher has seen every Notify so far.
func waitConsumed(tb testing.TB, w *Watcher, dir, after string) {
	tb.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case <-w.Wakes():
			if _, err := os.Lstat(filepath.Join(dir, FileName)); errors.Is(err, fs.ErrNotExist) {
				return
			}
		case <-timeout:
			tb.Fatalf("wake file not consumed within %v after %s", deadline, after)
		}
	}
}

// drain empties the wakes channel.
func drain(w *Watcher) {
	select {
	case <-w.Wakes():
	default:
	}
}

func entries(tb testing.TB, dir string) []string {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// logCapture is a slog.Handler that passes records to a channel.
type logCapture chan slog.Record

func (c logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c logCapture) WithGroup(string) slog.Handler            { return c }
func (c logCapture) Handle(_ context.Context, r slog.Record) error {
	select {
	case c <- r:
	default: // never block the watcher; tests wait for records soon after they are logged
	}
	return nil
}

func newLogCapture() (*slog.Logger, logCapture) {
	c := make(logCapture, 100)
	return slog.New(c), c
}

// waitLog fails the test unless a record at level whose message starts with
// prefix arrives within the deadline.
func waitLog(tb testing.TB, c logCapture, level slog.Level, prefix string) slog.Record {
	tb.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case r := <-c:
			if r.Level == level && strings.HasPrefix(r.Message, prefix) {
				return r
			}
		case <-timeout:
			tb.Fatalf("no %v log %q within %v", level, prefix, deadline)
		}
	}
}

// exchange swaps the files at a and b atomically.
func exchange(tb testing.TB, a, b string) {
	tb.Helper()
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		tb.Fatalf("exchange %s and %s: %v", a, b, err)
	}
}

func TestNotify(t *testing.T) {
	dir := t.TempDir()
	mustNotify(t, dir)
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatalf("wake file after Notify: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("wake file mode = %v, want 0600", got)
	}
	// A pending wake is not an error, and adds no file.
	mustNotify(t, dir)
	if got := entries(t, dir); len(got) != 1 || got[0] != FileName {
		t.Errorf("entries after two Notify calls = %q, want [%q]", got, FileName)
	}
}

func TestNotify_MissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	mustNotify(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("directory after Notify: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("directory mode = %v, want 0700", got)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Errorf("wake file after Notify: %v", err)
	}
}

func TestNotify_Error(t *testing.T) {
	// A parent that is a regular file fails even for root, unlike a
	// read-only directory.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(file, "wakeup")
	err := Notify(dir)
	if err == nil {
		t.Fatal("Notify under a regular file succeeded")
	}
	want := "wake snappea: create " + filepath.Join(dir, FileName) + ": "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Notify error = %q, want it to start with %q", err, want)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Errorf("Notify error %v does not wrap *fs.PathError", err)
	}
}

func TestNotify_ConcurrentCoalesce(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if err := Notify(dir); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Notify: %v", err)
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != FileName {
		t.Errorf("entries after concurrent Notify calls = %q, want [%q]", got, FileName)
	}
}

func TestNew_Config(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{}, "Config.Dir is required"},
		{"negative interval", Config{Dir: t.TempDir(), CheckInterval: -time.Second}, "Config.CheckInterval is -1s"},
		{"parent is a file", Config{Dir: filepath.Join(file, "wakeup")}, "create wakeup directory " + filepath.Join(file, "wakeup")},
		{"dir is a file", Config{Dir: file}, file},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := New(tt.cfg)
			if err == nil {
				w.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestNew_CreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "wakeup")
	w := mustNew(t, Config{Dir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("directory after New: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("directory mode = %v, want 0700", got)
	}
	mustNotify(t, dir)
	waitConsumed(t, w, dir, "Notify")
}

func TestNew_RemovesStale(t *testing.T) {
	dir := t.TempDir()
	mustNotify(t, dir) // before New: the caller drains the backlog after New
	if err := os.WriteFile(filepath.Join(dir, "junk"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub", "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	w := mustNew(t, Config{Dir: dir})
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("entries after New = %q, want none", got)
	}
	// The stale file is gone, so Notify creates it again and wakes.
	drain(w)
	mustNotify(t, dir)
	waitConsumed(t, w, dir, "Notify after New")
}

func TestWatcher_Notify(t *testing.T) {
	dir := t.TempDir()
	w := mustNew(t, Config{Dir: dir})
	for i := range 3 {
		mustNotify(t, dir)
		waitWake(t, w, "Notify")
		if _, err := os.Lstat(filepath.Join(dir, FileName)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("round %d: wake file after the wake: %v, want it removed before the signal", i, err)
		}
	}
}

func TestWatcher_ConcurrentNotify(t *testing.T) {
	dir := t.TempDir()
	w := mustNew(t, Config{Dir: dir})
	for round := range 5 {
		drain(w)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if err := Notify(dir); err != nil {
					t.Errorf("Notify: %v", err)
				}
			})
		}
		wg.Wait()
		// Every Notify has returned: a wake is owed after the last one.
		waitConsumed(t, w, dir, "concurrent Notify calls")
		if got := entries(t, dir); len(got) != 0 {
			t.Errorf("round %d: entries after the wakes = %q, want none", round, got)
		}
	}
}

func TestWatcher_OwnRemovalDoesNotWake(t *testing.T) {
	dir := t.TempDir()
	handled := make(chan fsnotify.Event, 100)
	// A long check interval: a check finding the file before its create
	// event is handled would add a second, legitimate wake.
	w, err := newWatcher(Config{Dir: dir, CheckInterval: time.Hour}, func(ev fsnotify.Event) {
		handled <- ev
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	mustNotify(t, dir)
	waitWake(t, w, "Notify")
	// The watcher removed the file before that wake; wait until it has
	// handled the removal's event, then no wake may be pending.
	timeout := time.After(deadline)
	for {
		select {
		case ev := <-handled:
			if ev.Name == filepath.Join(dir, FileName) && ev.Has(fsnotify.Remove) {
				select {
				case <-w.Wakes():
					t.Fatal("the watcher's own removal of the wake file woke")
				default:
				}
				return
			}
		case <-timeout:
			t.Fatalf("remove event of the wake file not handled within %v", deadline)
		}
	}
}

func TestWatcher_DirectoryReplaced(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
	}{
		{"deleted", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted and recreated", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"renamed away", func(t *testing.T, dir string) {
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
		}},
		{"renamed away and replaced", func(t *testing.T, dir string) {
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"renamed away and back", func(t *testing.T, dir string) {
			// Atomic exchanges: two plain renames leave a moment without
			// a directory, which the watcher may fill with a new one.
			other := dir + ".other"
			if err := os.Mkdir(other, 0o700); err != nil {
				t.Fatal(err)
			}
			exchange(t, dir, other)
			exchange(t, dir, other)
		}},
	}
	for _, tt := range tests {
		for _, early := range []bool{false, true} {
			name := tt.name
			if early {
				name += ", Notify before the watch is back"
			}
			t.Run(name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "wakeup")
				logger, logs := newLogCapture()
				w := mustNew(t, Config{Dir: dir, CheckInterval: testInterval, Logger: logger})
				tt.change(t, dir)
				if early {
					// Racing the watcher: the file may land in a directory
					// nobody watches yet, and re-establishing must catch it.
					mustNotify(t, dir)
				}
				waitLog(t, logs, slog.LevelWarn, "wakeup directory was deleted or replaced; watching it again")
				if early {
					waitConsumed(t, w, dir, "Notify while the watch was being re-established")
					return
				}
				drain(w)
				mustNotify(t, dir)
				waitConsumed(t, w, dir, "Notify after the watch was re-established")
			})
		}
	}
}

func TestWatcher_ReestablishFailsThenRecovers(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "run")
	dir := filepath.Join(parent, "wakeup")
	logger, logs := newLogCapture()
	w := mustNew(t, Config{Dir: dir, CheckInterval: testInterval, Logger: logger})

	// Replace the parent by a file, atomically so that the watcher cannot
	// recreate it in between: the directory cannot be created again.
	file := parent + ".file"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	exchange(t, parent, file)
	r := waitLog(t, logs, slog.LevelError, "cannot watch the wakeup directory")
	var reason string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			reason = a.Value.String()
		}
		return true
	})
	if !strings.Contains(reason, dir) {
		t.Errorf("logged reason %q does not name the directory %s", reason, dir)
	}

	// The goroutine keeps retrying; once the parent can hold a directory
	// again the watch comes back.
	if err := os.Remove(parent); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, slog.LevelWarn, "wakeup directory was deleted or replaced; watching it again")
	drain(w)
	mustNotify(t, dir)
	waitConsumed(t, w, dir, "Notify after recovery")
}

func TestWatcher_Errors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantLog bool
	}{
		{"overflow", fsnotify.ErrEventOverflow, false},
		{"other", errors.New("inotify read failed"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			logger, logs := newLogCapture()
			w := mustNew(t, Config{Dir: dir, CheckInterval: time.Hour, Logger: logger})
			w.fsw.Errors <- tt.err
			waitWake(t, w, "an fsnotify error")
			if tt.wantLog {
				waitLog(t, logs, slog.LevelWarn, "wakeup watcher error")
			}
		})
	}
}

func TestWatcher_Close(t *testing.T) {
	dir := t.TempDir()
	w, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// Readers stop on their own signal: Close does not close Wakes.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 3 {
		readers.Go(func() {
			for {
				select {
				case <-w.Wakes():
				case <-stop:
					return
				}
			}
		})
	}
	var closers sync.WaitGroup
	for range 3 {
		closers.Go(func() {
			if err := w.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	closers.Wait()
	close(stop)
	readers.Wait()

	if err := w.Close(); err != nil {
		t.Errorf("Close after Close: %v", err)
	}
	select {
	case <-w.done:
	default:
		t.Error("goroutine still running after Close")
	}
	select {
	case _, ok := <-w.Wakes():
		if !ok {
			t.Error("Wakes closed by Close")
		}
	default:
	}
	// Notify still works with no watcher: the wake waits for the next one.
	mustNotify(t, dir)
}

func BenchmarkNotify(b *testing.B) {
	// The coalesced case: a wake is already pending.
	dir := b.TempDir()
	mustNotify(b, dir)
	b.ReportAllocs()
	for b.Loop() {
		if err := Notify(dir); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNotifyRoundTrip(b *testing.B) {
	dir := b.TempDir()
	w := mustNew(b, Config{Dir: dir, CheckInterval: time.Hour})
	b.ReportAllocs()
	for b.Loop() {
		if err := Notify(dir); err != nil {
			b.Fatal(err)
		}
		<-w.Wakes()
	}
}

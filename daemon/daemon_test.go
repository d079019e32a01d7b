package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/pidfile"
	"github.com/snappea/snappea/prefork"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/schedule"
	"github.com/snappea/snappea/stats"
)

// waitFor is how long a test waits for something the daemon does within a
// second or two, before it fails.
const waitFor = 20 * time.Second

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustOpen(t *testing.T, dir string, reg *registry.Registry) *queue.Queue {
	t.Helper()
	q, err := queue.Open(context.Background(), queue.Config{Dir: dir, Registry: reg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// start runs d until the test ends, and returns a channel with Run's
// result.
func start(t *testing.T, d *Daemon) <-chan error {
	t.Helper()
	ran := make(chan error, 1)
	go func() { ran <- d.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		d.Shutdown(ctx)
	})
	return ran
}

func shutdown(t *testing.T, d *Daemon, ran <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run = %v after Shutdown, want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return after Shutdown")
	}
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		panic("unreachable")
	}
}

// walHeader reads the write-ahead log's checkpoint sequence number and
// salt: they change when a writer restarts the log from its beginning,
// which SQLite does only once a checkpoint has copied all of it into the
// database file.
func walHeader(t *testing.T, dbPath string) [3]uint32 {
	t.Helper()
	f, err := os.Open(dbPath + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var h [24]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		t.Fatalf("read the write-ahead log's header: %v", err)
	}
	return [3]uint32{binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:]), binary.BigEndian.Uint32(h[20:])}
}

// The embedded daemon has what 'snappea run' has: a failed attempt is
// retried, a task that fails for good lands in the failed record, the
// write-ahead log is checkpointed, statistics are written at Shutdown and
// schedules fire.
func TestDaemon_Complete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reg := registry.New()

	var flakyRuns atomic.Int32
	flakyDone := make(chan struct{})
	flaky := registry.Register(reg, "flaky", func(ctx context.Context, _ struct{}) error {
		if flakyRuns.Add(1) == 1 {
			return errors.New("first attempt fails")
		}
		close(flakyDone)
		return nil
	}, registry.Options{MaxAttempts: 2})
	doomedRan := make(chan struct{}, 1)
	doomed := registry.Register(reg, "doomed", func(ctx context.Context, _ struct{}) error {
		doomedRan <- struct{}{}
		return errors.New("always fails")
	}, registry.Options{MaxAttempts: 1})
	ticked := make(chan struct{}, 10)
	registry.Register(reg, "tick", func(ctx context.Context, _ struct{}) error {
		select {
		case ticked <- struct{}{}:
		default:
		}
		return nil
	})
	noop := registry.Register(reg, "noop", func(ctx context.Context, _ struct{}) error { return nil })

	q := mustOpen(t, dir, reg)
	d, err := New(Config{Queue: q, Registry: reg, RetryBackoff: 10 * time.Millisecond, Logger: quiet(),
		Schedules: []schedule.Schedule{{Name: "every-second", Spec: "@every 1s", Task: "tick"}}})
	if err != nil {
		t.Fatal(err)
	}
	ran := start(t, d)

	if _, err := flaky.Enqueue(ctx, q, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if _, err := doomed.Enqueue(ctx, q, struct{}{}); err != nil {
		t.Fatal(err)
	}
	wait(t, flakyDone, "the retry of a failed task")
	wait(t, doomedRan, "the task that fails for good")
	wait(t, ticked, "the schedule to fire")

	// Checkpoints: the log restarts from its beginning once the daemon has
	// checkpointed it; producers alone never do (queue.AutoCheckpointPages).
	dbPath := q.Config().DBPath
	first := walHeader(t, dbPath)
	deadline := time.Now().Add(waitFor)
	for walHeader(t, dbPath) == first {
		if time.Now().After(deadline) {
			t.Fatalf("the write-ahead log was not restarted within %v: no checkpoint ran", waitFor)
		}
		if _, err := noop.Enqueue(ctx, q, struct{}{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // pace the writes; the loop's condition is the wait
	}

	shutdown(t, d, ran)

	if runs := flakyRuns.Load(); runs != 2 {
		t.Errorf("flaky ran %d times, want 2 (one retry)", runs)
	}
	fails, err := q.Failures(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(fails) != 1 || fails[0].Task != "doomed" || !strings.Contains(fails[0].Error, "always fails") {
		t.Errorf("failed record = %+v, want the doomed task alone", fails)
	}
	if c := d.Foreman().Counters(); c.Retried != 1 {
		t.Errorf("counters %+v, want Retried 1", c)
	}
	// The statistics writer writes once a minute; what the test ran is in
	// the database because Shutdown flushed it.
	rows, err := stats.Read(ctx, q, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, r := range rows {
		counts[r.Task] += r.Count
	}
	if counts["flaky"] != 2 || counts["doomed"] != 1 || counts["tick"] < 1 {
		t.Errorf("statistics after Shutdown count %v, want flaky 2, doomed 1, tick at least 1", counts)
	}
	entries, err := d.Schedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Last.IsZero() {
		t.Errorf("Schedules = %+v, want every-second having run", entries)
	}
}

// A second daemon on the data directory is refused while the first runs,
// and starts once the first has stopped.
func TestNew_SingleInstance(t *testing.T) {
	dir := t.TempDir()
	reg := registry.New()
	q := mustOpen(t, dir, reg)
	d, err := New(Config{Queue: q, Registry: reg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err != nil || !bytes.Equal(bytes.TrimSpace(pid), []byte(strconv.Itoa(os.Getpid()))) {
		t.Errorf("pidfile = %q, %v; want this process's pid", pid, err)
	}
	ran := start(t, d)

	q2 := mustOpen(t, dir, reg)
	if _, err := New(Config{Queue: q2, Registry: reg, Logger: quiet()}); !errors.Is(err, pidfile.ErrLocked) {
		t.Fatalf("second New = %v, want an error matching pidfile.ErrLocked", err)
	}
	d3, err := New(Config{Queue: q2, Registry: reg, NoLock: true, Logger: quiet()})
	if err != nil {
		t.Fatalf("New with NoLock beside a running daemon = %v", err)
	}
	if err := d3.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	shutdown(t, d, ran)
	if _, err := os.Stat(filepath.Join(dir, PIDFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile after Run returned: %v, want it removed", err)
	}
	d2, err := New(Config{Queue: q2, Registry: reg, Logger: quiet()})
	if err != nil {
		t.Fatalf("New after the first daemon stopped = %v", err)
	}
	d2.Shutdown(context.Background())
}

func TestNew_InvalidConfig(t *testing.T) {
	dir := t.TempDir()
	reg := registry.New()
	q := mustOpen(t, dir, reg)
	lock, err := pidfile.Acquire(filepath.Join(t.TempDir(), LockFile), "")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no queue", Config{Registry: reg}, "Queue is required"},
		{"no registry", Config{Queue: q}, "Registry is required"},
		{"negative checkpoint interval", Config{Queue: q, Registry: reg, CheckpointInterval: -time.Second}, "CheckpointInterval"},
		{"lock and no lock", Config{Queue: q, Registry: reg, Lock: lock, NoLock: true}, "NoLock"},
		{"too many workers", Config{Queue: q, Registry: reg, NoLock: true, Workers: 1 << 20}, "Workers"},
		{"service without a name", Config{Queue: q, Registry: reg, NoLock: true,
			Services: []foreman.Service{{Run: func(context.Context) error { return nil }}}}, "Services[0]"},
		{"schedule of an unknown task", Config{Queue: q, Registry: reg, NoLock: true,
			Schedules: []schedule.Schedule{{Name: "s", Spec: "@every 1s", Task: "nosuch"}}}, "nosuch"},
		{"watch file without a path", Config{Queue: q, Registry: reg, NoLock: true, WatchFiles: []WatchFile{{What: "x"}}}, "WatchFiles[0]"},
		{"isolate all without processes", Config{Queue: q, Registry: reg, NoLock: true, IsolateAll: true}, "IsolateAll"},
		{"processes without a command", Config{Queue: q, Registry: reg, NoLock: true, Processes: &prefork.Config{}}, "Command is required"},
		{"limit of an unknown task", Config{Queue: q, Registry: reg, NoLock: true, MaxRunning: map[string]int{"nosuch": 2}}, "nosuch"},
		{"negative limit", Config{Queue: q, Registry: reg, NoLock: true, MaxRunning: map[string]int{"snappea.noop": -1}}, "snappea.noop"},
		{"retry lost of an unknown task", Config{Queue: q, Registry: reg, NoLock: true, RetryLost: []string{"nosuch"}}, "nosuch"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = quiet()
			d, err := New(tt.cfg)
			if err == nil {
				d.Shutdown(context.Background())
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want ErrInvalidConfig naming %q", err, tt.want)
			}
		})
	}
	// A failed New released what it took: the lock is free again.
	d, err := New(Config{Queue: q, Registry: reg, Logger: quiet()})
	if err != nil {
		t.Fatalf("New after the failed ones = %v", err)
	}
	d.Shutdown(context.Background())
}

// Shutdown before Run releases what New took; Run then does nothing.
func TestDaemon_ShutdownBeforeRun(t *testing.T) {
	dir := t.TempDir()
	reg := registry.New()
	q := mustOpen(t, dir, reg)
	d, err := New(Config{Queue: q, Registry: reg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Run = %v", err)
	}
	if err := d.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Shutdown = %v, want ErrClosed", err)
	}
	if err := d.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v", err)
	}
	d2, err := New(Config{Queue: q, Registry: reg, Logger: quiet()})
	if err != nil {
		t.Fatalf("New after Shutdown = %v: the lock was not released", err)
	}
	d2.Shutdown(context.Background())
}

// Cancelling Run's context lets a running task finish; a Shutdown whose
// context has ended cancels it at once.
func TestDaemon_Stop(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	started := make(chan struct{}, 1)
	cause := make(chan error, 1)
	block := registry.Register(reg, "block", func(ctx context.Context, _ struct{}) error {
		started <- struct{}{}
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return ctx.Err()
	})
	q := mustOpen(t, t.TempDir(), reg)
	d, err := New(Config{Queue: q, Registry: reg, GracefulTimeout: time.Hour, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()
	if _, err := block.Enqueue(ctx, q, struct{}{}); err != nil {
		t.Fatal(err)
	}
	wait(t, started, "the task to start")
	cancel() // graceful: an hour
	select {
	case err := <-cause:
		t.Fatalf("the task's context ended (%v) at a graceful stop", err)
	case <-ran:
		t.Fatal("Run returned while the task ran within its graceful time")
	default:
	}
	done, hard := context.WithCancel(ctx)
	hard()
	if err := d.Shutdown(done); !errors.Is(err, context.Canceled) {
		t.Errorf("hard Shutdown = %v, want context.Canceled", err)
	}
	if err := wait(t, cause, "the task's context to be cancelled"); err == nil {
		t.Error("the task's context has no cause")
	}
	if err := wait(t, ran, "Run to return"); err != nil {
		t.Errorf("Run = %v after a hard stop, want nil", err)
	}
	if err := d.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after the stop = %v", err)
	}
}

// A daemon whose database leaves its path stops, tells DataDirGone, and
// Run returns ErrDataDirGone.
func TestDaemon_DataDirGone(t *testing.T) {
	dir := t.TempDir()
	reg := registry.New()
	q := mustOpen(t, dir, reg)
	told := make(chan error, 1)
	d, err := New(Config{Queue: q, Registry: reg, Logger: quiet(), DataDirGone: func(err error) { told <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ran := start(t, d)
	// The watch starts with Run: wait until the foreman runs it.
	deadline := time.Now().Add(waitFor)
	for !serviceRunning(d, "datadir-watch") {
		if time.Now().After(deadline) {
			t.Fatal("the datadir-watch service did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Rename(q.Config().DBPath, q.Config().DBPath+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, told, "DataDirGone"); !errors.Is(err, ErrDataDirGone) || !strings.Contains(err.Error(), "database") {
		t.Errorf("DataDirGone got %v, want ErrDataDirGone naming the database", err)
	}
	if err := wait(t, ran, "Run to return"); !errors.Is(err, ErrDataDirGone) {
		t.Errorf("Run = %v, want ErrDataDirGone", err)
	}
}

func serviceRunning(d *Daemon, name string) bool {
	for _, s := range d.Foreman().Snapshot().Services {
		if s.Name == name && s.State.String() == "running" {
			return true
		}
	}
	return false
}

// With MetricsAddr, the daemon serves Prometheus metrics, its gauges fed
// by the foreman and the queue.
func TestDaemon_Metrics(t *testing.T) {
	reg := registry.New()
	q := mustOpen(t, t.TempDir(), reg)
	d, err := New(Config{Queue: q, Registry: reg, MetricsAddr: "127.0.0.1:0", Reloads: 3, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ran := start(t, d)
	url := "http://" + d.MetricsAddr().String() + "/metrics"
	var body []byte
	deadline := time.Now().Add(waitFor)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil && bytes.Contains(body, []byte("snappea_up 1")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v\n%s", url, err, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !bytes.Contains(body, []byte("snappea_workers_total 16")) || !bytes.Contains(body, []byte("snappea_reloads_total 3")) {
		t.Errorf("metrics lack the workers or the reloads:\n%s", body)
	}
	shutdown(t, d, ran)
}

// The services a Config's zero values give are those of 'snappea run' with
// its default flags; negative limits turn statistics and the failed
// record's retention off, as the flags' 0 does.
func TestNew_Services(t *testing.T) {
	reg := registry.New()
	registry.RegisterBuiltins(reg)
	q := mustOpen(t, t.TempDir(), reg)
	mine := foreman.Service{Name: "mine", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	for _, tt := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"defaults", Config{}, []string{"datadir-watch", "checkpoint", "stats", "failed-retention"}},
		{"all off", Config{StatsRetention: -1, FailedRetention: -1, FailedMax: -1}, []string{"datadir-watch", "checkpoint"}},
		{"count limit only", Config{StatsRetention: -1, FailedRetention: -1}, []string{"datadir-watch", "checkpoint", "failed-retention"}},
		{"own services first, schedules last", Config{Services: []foreman.Service{mine}, StatsRetention: -1,
			Schedules: []schedule.Schedule{{Name: "s", Spec: "@daily", Task: "snappea.noop"}}},
			[]string{"mine", "datadir-watch", "checkpoint", "failed-retention", "scheduler"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Queue, cfg.Registry, cfg.Logger = q, reg, quiet()
			d, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Shutdown(context.Background())
			var got []string
			for _, s := range d.Foreman().Snapshot().Services {
				got = append(got, s.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("services %q, want %q", got, tt.want)
			}
		})
	}
}

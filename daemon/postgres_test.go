package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage"
)

// openPostgres opens a queue on a schema of its own on the tests'
// PostgreSQL server, dropped when the test ends; without a server the test
// skips.
func openPostgres(t *testing.T, reg *registry.Registry) *queue.Queue {
	t.Helper()
	u := os.Getenv("SNAPPEA_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("no PostgreSQL server for the tests: set SNAPPEA_TEST_DATABASE_URL=postgres://user@host:port/dbname?sslmode=disable, or run .ci/run, which starts one")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "snappea_test_" + hex.EncodeToString(b[:])
	q, err := queue.Open(context.Background(), queue.Config{Dir: t.TempDir(), DatabaseURL: u, Schema: schema,
		Registry: reg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := q.DB().Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		q.Close()
	})
	return q
}

// daemonsUntil polls the table of daemons until ok accepts it.
func daemonsUntil(t *testing.T, b storage.Backend, what string, ok func([]storage.Daemon) bool) []storage.Daemon {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ds, err := b.Daemons(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s; the daemons are %+v", waitFor, what, ds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDaemon_Postgres(t *testing.T) {
	ctx := context.Background()
	reg := registry.New()
	started := make(chan struct{}, 1)
	cancelled := make(chan error, 1)
	block := registry.Register(reg, "block", func(ctx context.Context, _ struct{}) error {
		started <- struct{}{}
		<-ctx.Done()
		cancelled <- ctx.Err()
		return ctx.Err()
	})
	noopRan := make(chan struct{}, 1)
	noop := registry.Register(reg, "noop", func(ctx context.Context, _ struct{}) error {
		noopRan <- struct{}{}
		return nil
	})
	q := openPostgres(t, reg)
	d, err := New(Config{Queue: q, Registry: reg, Workers: 3, PollInterval: time.Hour, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if !serviceNamed(d, "maintenance") || serviceNamed(d, "checkpoint") {
		t.Errorf("services %+v: want maintenance, not checkpoint, on PostgreSQL", d.fm.Snapshot().Services)
	}
	ran := start(t, d)

	// Registered at start, with its host, pid and workers.
	host, _ := os.Hostname()
	daemonsUntil(t, q.Backend(), "the daemon's registration", func(ds []storage.Daemon) bool {
		return len(ds) == 1 && ds[0].Host == host && ds[0].PID == os.Getpid() && ds[0].Workers == 3 && !ds[0].Gone
	})

	// Woken by LISTEN/NOTIFY: the poll interval is an hour.
	if _, err := noop.Enqueue(ctx, q, struct{}{}); err != nil {
		t.Fatal(err)
	}
	wait(t, noopRan, "the task to run after its NOTIFY")

	// A cancel request through the database reaches the running task.
	id, err := block.Enqueue(ctx, q, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, started, "the blocking task to start")
	if err := q.Backend().RequestCancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, cancelled, "the task's context to be cancelled on request"); err != context.Canceled {
		t.Errorf("task context ended with %v, want context.Canceled", err)
	}

	// The heartbeat carries busy and paused.
	d.Foreman().Pause()
	daemonsUntil(t, q.Backend(), "a heartbeat with the daemon paused", func(ds []storage.Daemon) bool {
		return len(ds) == 1 && ds[0].Paused
	})

	// Unregistered at a clean stop.
	shutdown(t, d, ran)
	ds, err := q.Backend().Daemons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 0 {
		t.Errorf("after the stop the daemons are %+v, want none", ds)
	}
}

func serviceNamed(d *Daemon, name string) bool {
	for _, s := range d.fm.Snapshot().Services {
		if s.Name == name {
			return true
		}
	}
	return false
}

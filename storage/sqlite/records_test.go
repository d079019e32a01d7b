package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// A daemon whose heartbeats stopped is shown as gone after DaemonGone and
// removed by Maintenance after DaemonRemove.
func TestBackend_DaemonsGone(t *testing.T) {
	ctx := context.Background()
	b := mustOpenIn(t, t.TempDir(), Config{})
	live, err := b.RegisterDaemon(ctx, storage.Daemon{Host: "h", PID: 1, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := b.RegisterDaemon(ctx, storage.Daemon{Host: "h", PID: 2})
	if err != nil {
		t.Fatal(err)
	}
	stale, err := b.RegisterDaemon(ctx, storage.Daemon{Host: "h", PID: 3})
	if err != nil {
		t.Fatal(err)
	}
	for id, ago := range map[int64]time.Duration{quiet: 2 * DaemonGone, stale: 2 * DaemonRemove} {
		if _, err := b.DB().Exec(`UPDATE snappea_daemons SET last_seen = ? WHERE id = ?`,
			time.Now().Add(-ago).UnixNano(), id); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := b.Daemons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gone := map[int64]bool{}
	for _, d := range ds {
		gone[d.ID] = d.Gone
	}
	if len(ds) != 3 || gone[live] || !gone[quiet] || !gone[stale] {
		t.Fatalf("Daemons = %+v, want %d live and %d, %d gone", ds, live, quiet, stale)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Maintenance(mctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, err := b.Daemons(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Maintenance did not remove the daemon gone for DaemonRemove within 30s: %+v", ds)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Maintenance = %v, want nil when its context ends", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Maintenance did not return within 30s of its context's end")
	}
}

// RequestCancel is for backends whose daemons listen to the database.
func TestBackend_RequestCancelUnsupported(t *testing.T) {
	b := mustOpenIn(t, t.TempDir(), Config{})
	if err := b.RequestCancel(context.Background(), 1); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("RequestCancel = %v, want errors.ErrUnsupported", err)
	}
}

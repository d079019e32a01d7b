package postgres

import (
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// TestWaker_reconnects: the listener's connection killed by the server
// (as at a restart) is reconnected, the reconnect wakes the daemon, and
// notifications arrive again afterwards.
func TestWaker_reconnects(t *testing.T) {
	b := mustOpen(t, Config{})
	ctx := t.Context()
	sw, err := b.Waker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	w := sw.(*Waker)
	listening, _ := w.Listening()
	if !listening {
		t.Fatal("Waker not listening after it returned")
	}
	// The listener's backend, by the LISTEN it ran last.
	res, err := b.DB().ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query = $1`, `LISTEN "`+b.cancChan+`"`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("terminated %d listener connections, want 1", n)
	}
	select {
	case <-w.Wakes():
	case <-time.After(30 * time.Second):
		t.Fatal("no wake within 30s of the listener's connection being killed")
	}
	_, back := w.Listening()
	select {
	case <-back:
	case <-time.After(30 * time.Second):
		t.Fatal("not listening again within 30s")
	}
	if _, err := b.Insert(ctx, nil, []storage.Row{{Task: "after", Args: []byte(`{}`), CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Wakes():
	case <-time.After(30 * time.Second):
		t.Fatal("no wake within 30s of an insert after the reconnect")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

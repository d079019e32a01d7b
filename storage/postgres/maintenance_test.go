package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// TestMaintenance_vacuums: once the backend has claimed VacuumEvery tasks,
// Maintenance VACUUMs the task table, and it returns when ctx ends.
func TestMaintenance_vacuums(t *testing.T) {
	b := mustOpen(t, Config{VacuumEvery: 10})
	ctx, cancel := context.WithCancel(t.Context())
	var rows []storage.Row
	for range 20 {
		rows = append(rows, storage.Row{Task: "t", Args: []byte(`{}`), CreatedAt: time.Now()})
	}
	if _, err := b.Insert(ctx, nil, rows); err != nil {
		t.Fatal(err)
	}
	if ts, err := b.Claim(ctx, 20); err != nil || len(ts) != 20 {
		t.Fatalf("Claim: %d, %v", len(ts), err)
	}
	stopped := make(chan error)
	go func() { stopped <- b.Maintenance(ctx) }()
	var vacuums int64
	deadline := time.Now().Add(30 * time.Second)
	for vacuums == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no VACUUM of the task table within 30s of claiming VacuumEvery tasks")
		}
		if err := b.DB().QueryRowContext(ctx, `SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = $1::regclass`,
			b.q.tasks).Scan(&vacuums); err != nil {
			t.Fatal(err)
		}
		if vacuums == 0 {
			select {
			case err := <-stopped:
				t.Fatalf("Maintenance returned early: %v", err)
			case <-time.After(50 * time.Millisecond): // polling the server's statistics
			}
		}
	}
	if n := b.claimed.Load(); n != 0 {
		t.Errorf("claims counted after the VACUUM: %d, want 0", n)
	}
	cancel()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Maintenance: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Maintenance did not return within 30s of its context ending")
	}
}

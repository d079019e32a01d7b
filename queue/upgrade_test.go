package queue

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/snappea/snappea/migrations"
	"github.com/snappea/snappea/registry"
)

// schemaV1 is the database as the first release wrote it, frozen here: the
// migrations table and the queue, at version 1.
const schemaV1 = `
CREATE TABLE snappea_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at INTEGER NOT NULL
);
INSERT INTO snappea_migrations (version, name, applied_at) VALUES (1, '0001_tasks.sql', 0);
CREATE TABLE snappea_tasks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task       TEXT    NOT NULL,
    args       BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);`

// A database written by the first schema, with tasks pending, is upgraded
// in place by Open, and its tasks are claimed as they were queued.
func TestOpen_UpgradesV1Database(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, DBFile)
	old, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(schemaV1); err != nil {
		t.Fatal(err)
	}
	enqueuedAt := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	for i := range 3 {
		if _, err := old.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', ?, ?)`,
			fmt.Sprint(i), enqueuedAt.UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := migrations.Version(ctx, old); err != nil || v != 1 {
		t.Fatalf("version of the v1 database = %d, %v", v, err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	q := mustOpen(t, Config{Dir: dir})
	s, err := q.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.SchemaVersion != migrations.Latest() || s.Pending != 3 || s.Ready != 3 || s.OldestID != 1 {
		t.Errorf("Stats after upgrade = %+v; want version %d, 3 ready, oldest id 1", s, migrations.Latest())
	}
	// New tasks go after the old ones, and may use every option.
	res := mustEnqueueWith(t, q, "t", 3, registry.Options{Key: "k", MaxAttempts: 2})
	if res.ID != 4 {
		t.Errorf("new task id = %d, want 4", res.ID)
	}
	ts := mustClaim(t, q, 10)
	if len(ts) != 4 {
		t.Fatalf("claimed %d tasks, want 4", len(ts))
	}
	for i, task := range ts[:3] {
		want := Task{ID: int64(i + 1), Name: "t", Args: []byte(fmt.Sprint(i)), EnqueuedAt: enqueuedAt, Attempt: 1}
		if fmt.Sprint(task) != fmt.Sprint(want) {
			t.Errorf("old task %d = %+v, want %+v", i, task, want)
		}
	}
	if ts[3].ID != 4 || ts[3].Key != "k" || ts[3].MaxAttempts != 2 {
		t.Errorf("new task = %+v", ts[3])
	}
}

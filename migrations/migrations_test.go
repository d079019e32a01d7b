package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	_ "modernc.org/sqlite"
)

func mustOpen(t testing.TB) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "m.db") +
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestApply_FreshDatabase(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	if v, err := Version(ctx, db); err != nil || v != 0 {
		t.Fatalf("Version of a new database = %d, %v; want 0, nil", v, err)
	}
	v, err := Apply(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if v != Latest() {
		t.Errorf("Apply = %d, want %d", v, Latest())
	}
	if _, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('x', '{}', 1)`); err != nil {
		t.Errorf("insert into migrated table: %v", err)
	}
	// A second Apply is a no-op.
	if v2, err := Apply(ctx, db); err != nil || v2 != v {
		t.Errorf("second Apply = %d, %v; want %d, nil", v2, err, v)
	}
}

func TestApply_Concurrent(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	db.SetMaxOpenConns(8)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, err := Apply(ctx, db); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM snappea_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != Latest() {
		t.Errorf("%d migration rows, want %d (each applied once)", n, Latest())
	}
}

func TestApply_SchemaTooNew(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	if _, err := Apply(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO snappea_migrations (version, name, applied_at) VALUES (?, 'future.sql', 0)`, Latest()+1); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(ctx, db)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Apply on a newer database: err = %v, want ErrSchemaTooNew", err)
	}
	t.Log(err)
}

func TestApply_StepsInOrder(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	ms := []Migration{
		{Version: 1, Name: "0001_a.sql", SQL: `CREATE TABLE a (x)`},
		{Version: 2, Name: "0002_b.sql", SQL: `ALTER TABLE a ADD COLUMN y`},
	}
	if v, err := apply(ctx, db, ms[:1]); err != nil || v != 1 {
		t.Fatalf("apply first = %d, %v", v, err)
	}
	if _, err := db.Exec(`INSERT INTO a (x) VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if v, err := apply(ctx, db, ms); err != nil || v != 2 {
		t.Fatalf("apply both = %d, %v", v, err)
	}
	var x, y sql.NullInt64
	if err := db.QueryRow(`SELECT x, y FROM a`).Scan(&x, &y); err != nil {
		t.Fatal(err)
	}
	if x.Int64 != 1 || y.Valid {
		t.Errorf("row after upgrade = (%v, %v), want (1, NULL)", x, y)
	}
}

func TestApply_FailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	ms := []Migration{{Version: 1, Name: "0001_bad.sql", SQL: `CREATE TABLE ok (x); CREATE TABLE oops (`}}
	if _, err := apply(ctx, db, ms); err == nil {
		t.Fatal("apply of a broken migration succeeded")
	}
	if v, _ := Version(ctx, db); v != 0 {
		t.Errorf("version after failed migration = %d, want 0", v)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		wantErr bool
	}{
		{"ordered", []string{"d/0002_b.sql", "d/0001_a.sql"}, false},
		// A number may be left free for a change still under review.
		{"gap", []string{"d/0001_a.sql", "d/0003_c.sql"}, false},
		{"duplicate", []string{"d/0001_a.sql", "d/0002_b.sql", "d/002_c.sql"}, true},
		{"no number", []string{"d/init.sql"}, true},
		{"zero", []string{"d/0000_a.sql"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys[f] = &fstest.MapFile{Data: []byte("SELECT 1")}
			}
			ms, err := load(fsys, "d")
			if (err != nil) != tt.wantErr {
				t.Fatalf("load err = %v, wantErr %v", err, tt.wantErr)
			}
			for i := 1; i < len(ms); i++ {
				if ms[i].Version <= ms[i-1].Version {
					t.Errorf("versions out of order: %d then %d", ms[i-1].Version, ms[i].Version)
				}
			}
		})
	}
}

func TestApply_FillsAGapLater(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	a := Migration{Version: 1, Name: "0001_a.sql", SQL: `CREATE TABLE a (x)`}
	b := Migration{Version: 2, Name: "0002_b.sql", SQL: `CREATE TABLE b (x)`}
	c := Migration{Version: 3, Name: "0003_c.sql", SQL: `CREATE TABLE c (x)`}
	if v, err := apply(ctx, db, []Migration{a, c}); err != nil || v != 3 {
		t.Fatalf("apply with a gap = %d, %v; want 3, nil", v, err)
	}
	// A build that has 2 as well applies it, though the database is at 3.
	if v, err := apply(ctx, db, []Migration{a, b, c}); err != nil || v != 3 {
		t.Fatalf("apply after the gap is filled = %d, %v; want 3, nil", v, err)
	}
	if _, err := db.Exec(`INSERT INTO b (x) VALUES (1)`); err != nil {
		t.Errorf("table of the late migration: %v", err)
	}
	// A build without 2 must not run against a database that has it.
	if _, err := apply(ctx, db, []Migration{a, c}); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("apply without a migration the database has = %v, want ErrSchemaTooNew", err)
	}
}

// A database written by the first schema, with tasks in it, upgrades in
// place: its rows keep their values and get the new columns' defaults.
func TestApply_UpgradesFirstSchema(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	ms := SQLite()
	if v, err := apply(ctx, db, ms[:1]); err != nil || v != 1 {
		t.Fatalf("apply version 1 = %d, %v", v, err)
	}
	for i := range 3 {
		if _, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', ?, ?)`,
			fmt.Sprintf(`{"i":%d}`, i), 100+i); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Apply(ctx, db)
	if err != nil || v != Latest() {
		t.Fatalf("Apply = %d, %v; want %d, nil", v, err, Latest())
	}
	rows, err := db.Query(`SELECT id, task, args, created_at, priority, run_at, attempt, max_attempts, timeout_ns, key
		FROM snappea_tasks ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, created, priority, runAt, attempt, maxAttempts, timeout int64
		var task, args string
		var key sql.NullString
		if err := rows.Scan(&id, &task, &args, &created, &priority, &runAt, &attempt, &maxAttempts, &timeout, &key); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"i":%d}`, n); task != "t" || args != want || created != int64(100+n) {
			t.Errorf("row %d = %s %s %d, want t %s %d", id, task, args, created, want, 100+n)
		}
		if priority != 0 || runAt != 0 || attempt != 1 || maxAttempts != 0 || timeout != 0 || key.Valid {
			t.Errorf("row %d options = priority %d run_at %d attempt %d max_attempts %d timeout_ns %d key %v; want 0 0 1 0 0 NULL",
				id, priority, runAt, attempt, maxAttempts, timeout, key)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d rows after the upgrade, want 3", n)
	}
}

package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
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

// A version 4 database (before the queue table was STRICT) upgrades in
// place: rows STRICT accepts are copied with their ids, the AUTOINCREMENT
// counter carries on past ids already claimed, and each row of the wrong
// types becomes one failed record naming the column, not the value.
func TestApply_StrictTasks(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	ms := SQLite()
	if v, err := apply(ctx, db, ms[:4]); err != nil || v != 4 {
		t.Fatalf("apply up to version 4 = %d, %v", v, err)
	}
	const secret = "hunter2"
	insert := func(cols, vals string) int64 {
		t.Helper()
		res, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at` + cols + `) VALUES ('t', '{}', 1` + vals + `)`)
		if err != nil {
			t.Fatalf("insert (%s) (%s): %v", cols, vals, err)
		}
		id, _ := res.LastInsertId()
		return id
	}
	good := insert(", priority, run_at, key", ", 3, 0, 'k'")
	converted := insert(", priority, attempt, max_attempts, timeout_ns, run_at", ", '5', 0, -2, -3, -4") // '5' is 5 already
	bad := map[int64]string{
		insert(", run_at", ", 1733045000.25"):                 "column run_at is REAL, want INTEGER",
		insert(", priority", ", '"+secret+"'"):                "column priority is TEXT, want INTEGER",
		insert(", attempt", ", X'00'"):                        "column attempt is BLOB, want INTEGER",
		insert(", key", ", X'"+fmt.Sprintf("%x", secret)+"'"): "column key is BLOB, want TEXT or NULL",
		insert(", timeout_ns", ", 1.5"):                       "column timeout_ns is REAL, want INTEGER",
		insert(", max_attempts", ", 'x"+secret+"'"):           "column max_attempts is TEXT, want INTEGER",
	}
	for _, q := range []struct{ sql, want string }{
		{`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '{}', '` + secret + `')`, "column created_at is TEXT, want INTEGER"},
		{`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '{"` + secret, "column args is not valid JSON"},
		{`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', 12, 1)`, "column args is INTEGER, want TEXT or BLOB"},
		{`INSERT INTO snappea_tasks (task, args, created_at) VALUES (X'74', '{}', 1)`, "column task is BLOB, want TEXT"},
	} {
		sqlText := q.sql
		if !strings.HasSuffix(sqlText, ")") {
			sqlText += `', 1)`
		}
		res, err := db.Exec(sqlText)
		if err != nil {
			t.Fatalf("%s: %v", sqlText, err)
		}
		id, _ := res.LastInsertId()
		bad[id] = q.want
	}
	last := insert("", "")
	if _, err := db.Exec(`DELETE FROM snappea_tasks WHERE id = ?`, last); err != nil { // claimed
		t.Fatal(err)
	}

	if v, err := Apply(ctx, db); err != nil || v != Latest() {
		t.Fatalf("Apply = %d, %v; want %d, nil", v, err, Latest())
	}
	var sqlText string
	if err := db.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'snappea_tasks'`).Scan(&sqlText); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(strings.TrimSpace(sqlText), "STRICT") {
		t.Errorf("snappea_tasks is not STRICT: %s", sqlText)
	}
	for _, idx := range []string{"snappea_tasks_claim", "snappea_tasks_key"} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ? AND tbl_name = 'snappea_tasks'`, idx).Scan(&n); err != nil || n != 1 {
			t.Errorf("index %s: %d, %v; want it on snappea_tasks", idx, n, err)
		}
	}

	type row struct{ id, priority, runAt, attempt, maxAttempts, timeout int64 }
	var got []row
	rows, err := db.Query(`SELECT id, priority, run_at, attempt, max_attempts, timeout_ns FROM snappea_tasks ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.priority, &r.runAt, &r.attempt, &r.maxAttempts, &r.timeout); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	rows.Close()
	want := []row{{good, 3, 0, 1, 0, 0}, {converted, 5, 0, 1, 0, 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tasks after the upgrade = %v, want %v", got, want)
	}

	failed := map[int64]string{}
	rows, err = db.Query(`SELECT task_id, error, attempts, typeof(failed_at), priority, max_attempts, timeout_ns FROM snappea_failed`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, attempts, priority, maxAttempts, timeout int64
		var msg, failedAt string
		if err := rows.Scan(&id, &msg, &attempts, &failedAt, &priority, &maxAttempts, &timeout); err != nil {
			t.Fatalf("a failed record has a column of the wrong type: %v", err)
		}
		if attempts < 1 || failedAt != "integer" {
			t.Errorf("failed record of task %d: attempts %d, failed_at %s", id, attempts, failedAt)
		}
		if _, dup := failed[id]; dup {
			t.Errorf("task %d recorded twice", id)
		}
		failed[id] = msg
	}
	rows.Close()
	if len(failed) != len(bad) {
		t.Errorf("%d failed records, want %d: %v", len(failed), len(bad), failed)
	}
	for id, want := range bad {
		if !strings.Contains(failed[id], want) {
			t.Errorf("failed record of task %d: %q, want it to say %q", id, failed[id], want)
		}
		if strings.Contains(failed[id], secret) {
			t.Errorf("failed record of task %d quotes the value: %q", id, failed[id])
		}
	}

	// The table now refuses what it copied no row of.
	for _, q := range []string{
		`INSERT INTO snappea_tasks (task, args, created_at, run_at) VALUES ('t', '{}', 1, 1733045000.25)`,
		`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '{}', 'now')`,
		`INSERT INTO snappea_tasks (task, args, created_at, priority) VALUES ('t', '{}', 1, 'high')`,
		`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '{not json', 1)`,
		`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', NULL, 1)`,
		`INSERT INTO snappea_tasks (task, args, created_at, run_at) VALUES ('t', '{}', 1, -1)`,
		`INSERT INTO snappea_tasks (task, args, created_at, attempt) VALUES ('t', '{}', 1, 0)`,
	} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
	// What producers write is accepted: text or blob JSON, empty args.
	for _, args := range []any{`{"a":1}`, []byte(`{"a":1}`), []byte{}} {
		if _, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', ?, 1)`, args); err != nil {
			t.Errorf("insert args %q (%T): %v", args, args, err)
		}
	}
	var next int64
	if err := db.QueryRow(`SELECT max(id) FROM snappea_tasks`).Scan(&next); err != nil || next != last+3 {
		t.Errorf("ids after the upgrade end at %d, %v; want %d (after the claimed %d)", next, err, last+3, last)
	}
}

// An empty queue keeps its AUTOINCREMENT counter through the upgrade too:
// an insert into an AUTOINCREMENT table writes the counter even when it
// copies no row.
func TestApply_StrictTasksEmptyQueue(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	db.SetMaxOpenConns(1)
	if _, err := apply(ctx, db, SQLite()[:4]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '{}', 1), ('t', '{}', 1), ('t', '{}', 1);
		DELETE FROM snappea_tasks`); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ctx, db); err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('t', '{}', 1)`)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := res.LastInsertId(); id != 4 {
		t.Errorf("first id after the upgrade = %d, want 4", id)
	}
}

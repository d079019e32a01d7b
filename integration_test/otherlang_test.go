package integration_test

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/migrations"
)

// The Python producer of the README runs as a real program against the
// real daemon: its tasks run, a delayed one at its time, and its wake file
// is what wakes the daemon (the poll is an hour).
func TestEnqueueFromPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the Python producer example is not tested")
	}
	script, err := filepath.Abs("../examples/python/enqueue.py")
	if err != nil {
		t.Fatal(err)
	}
	dir := dataDir(t)
	d := startDaemon(t, dir, "--poll-interval", "1h")
	py := func(args ...string) result {
		t.Helper()
		cmd := exec.Command(python, append([]string{script, "--dir", dir}, args...)...)
		cmd.Env = cleanEnv()
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			t.Fatalf("enqueue.py %q: %v\n%s%s", args, err, stdout.String(), stderr.String())
		}
		return result{stdout: stdout.String(), stderr: stderr.String()}
	}
	done := func(id int64, what string) record {
		t.Helper()
		return d.waitFor(30*time.Second, what, func(r record) bool { return r.msg() == "task done" && r.int("task_id") == id })
	}

	id := ids(t, py("snappea.echo", `{"msg": "from python"}`).stdout)[0]
	if r := done(id, "the Python task"); r.str("outcome") != "done" || r.str("task") != "snappea.echo" {
		t.Errorf("the Python task: %v, want snappea.echo done", r)
	}

	start := time.Now()
	delayed := ids(t, py("--delay", "2", "--priority", "3", "--key", "k", "--max-attempts", "2", "snappea.noop").stdout)[0]
	if r := py("--key", "k", "snappea.noop"); r.stdout != "" || !strings.Contains(r.stderr, fmt.Sprint(delayed)) {
		t.Errorf("a second task with the pending key: stdout %q stderr %q, want nothing enqueued and task %d named", r.stdout, r.stderr, delayed)
	}
	if r := done(delayed, "the delayed Python task"); r.str("outcome") != "done" {
		t.Errorf("the delayed Python task: %v", r)
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("the delayed task ran after %v, before its 2s delay", took)
	}

	// time.time(), a float in seconds, is refused by the table, with an
	// error that names the column.
	cmd := exec.Command(python, "-c", `
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
try:
    conn.execute("INSERT INTO snappea_tasks (task, args, created_at, run_at) VALUES ('snappea.noop', 'null', ?, ?)",
                 (time.time_ns(), time.time() + 60))
except sqlite3.Error as e:
    print(e)
`, filepath.Join(dir, "snappea.db"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "REAL") || !strings.Contains(string(out), "snappea_tasks.run_at") {
		t.Errorf("a float run_at from Python: %v %s, want the insert refused naming snappea_tasks.run_at", err, out)
	}
	if n := countTasks(t, openDB(t, dir)); n != 0 {
		t.Errorf("%d tasks left, want 0", n)
	}
}

// oldDatabase creates dir/snappea.db at schema version 4, the last whose
// task table took values of any type, as an older snappea left it.
func oldDatabase(t *testing.T, dir string) *sql.DB {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, dir)
	if _, err := db.Exec(`PRAGMA journal_mode = WAL;
		CREATE TABLE snappea_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations.SQLite()[:4] {
		if _, err := db.Exec(m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := db.Exec(`INSERT INTO snappea_migrations VALUES (?, ?, 0)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// loosenTable replaces the task table, under the running daemon, with one
// that takes values of any type (schema version 4's), keeping its rows and
// ids: the way to get rows of the wrong types to the daemon's claim now
// that the table is STRICT.
func loosenTable(t *testing.T, db *sql.DB) {
	t.Helper()
	if _, err := db.Exec(`BEGIN IMMEDIATE;
		CREATE TABLE snappea_tasks_loose (
			id INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT, args BLOB, created_at INTEGER,
			priority INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL DEFAULT 0,
			attempt INTEGER NOT NULL DEFAULT 1, max_attempts INTEGER NOT NULL DEFAULT 0,
			timeout_ns INTEGER NOT NULL DEFAULT 0, key TEXT, serial_key TEXT);
		INSERT INTO snappea_tasks_loose SELECT * FROM snappea_tasks;
		DELETE FROM sqlite_sequence WHERE name = 'snappea_tasks_loose';
		INSERT INTO sqlite_sequence (name, seq) SELECT 'snappea_tasks_loose', seq FROM sqlite_sequence WHERE name = 'snappea_tasks';
		DROP TRIGGER snappea_inflight_claim;
		DROP TABLE snappea_tasks;
		ALTER TABLE snappea_tasks_loose RENAME TO snappea_tasks;
		CREATE TRIGGER snappea_inflight_claim AFTER INSERT ON snappea_inflight
		BEGIN
			DELETE FROM snappea_tasks WHERE id = NEW.id;
		END;
		CREATE INDEX snappea_tasks_claim ON snappea_tasks (run_at, priority DESC, id);
		CREATE UNIQUE INDEX snappea_tasks_key ON snappea_tasks (key) WHERE key IS NOT NULL;
		COMMIT`); err != nil {
		db.Exec(`ROLLBACK`)
		t.Fatalf("loosen the task table: %v", err)
	}
}

// Rows of the wrong types, written with raw SQL as another program would,
// neither stop the daemon nor cost the good tasks around them: in an old
// database, the upgrade at start moves them into the failed tasks; in a
// table that takes any type, the daemon fails each one it meets, once,
// and goes on claiming. Each failure names the column and never the
// value; status and health answer throughout.
func TestBadRowsDoNotStopTheDaemon(t *testing.T) {
	const secret = "hunter2"
	dir := dataDir(t)
	db := oldDatabase(t, dir)
	good := map[int64]bool{}
	bad := map[int64]string{} // the words its failure must have
	row := func(cols, vals string, want string) {
		t.Helper()
		res, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at` + cols + `) VALUES (` + vals + `)`)
		if err != nil {
			t.Fatalf("insert (%s) (%s): %v", cols, vals, err)
		}
		id, _ := res.LastInsertId()
		if want == "" {
			good[id] = true
		} else {
			bad[id] = want
		}
	}
	now := fmt.Sprint(time.Now().UnixNano())
	goodRow := func() { row("", `'snappea.echo', '{"msg":"good"}', `+now, "") }
	writeBad := func() {
		goodRow()
		row(", run_at", `'snappea.noop', '{}', `+now+`, 1733045000.25`, "column run_at is REAL, want INTEGER")
		goodRow()
		row("", `'snappea.noop', '{}', '`+secret+`'`, "column created_at is TEXT, want INTEGER (Unix nanoseconds)")
		goodRow()
		row(", priority", `'snappea.noop', '{}', `+now+`, '`+secret+`'`, "column priority is TEXT, want INTEGER")
		goodRow()
		row("", `'snappea.noop', 7, `+now, "column args is INTEGER, want TEXT or BLOB")
		goodRow()
	}
	writeBad()
	row("", `'snappea.echo', '{"msg":"`+secret+`', `+now, "column args is not valid JSON")
	goodRow()

	d := startDaemon(t, dir, "--poll-interval", "200ms")
	checkRun := func(what string) {
		t.Helper()
		d.waitUntil(30*time.Second, what, func() bool {
			finished := taskIDs(d, "task done")
			for id := range good {
				if finished[id] == 0 {
					return false
				}
			}
			return true
		})
		for id, n := range taskIDs(d, "task done") {
			if good[id] && n != 1 {
				t.Errorf("good task %d done %d times, want 1", id, n)
			}
		}
		waitStatus(t, dir, 30*time.Second, "the queue to empty", func(s status) bool { return s.Pending == 0 })
		fs := map[int64][]string{}
		for _, f := range failedList(t, dir) {
			fs[f.TaskID] = append(fs[f.TaskID], f.Error)
		}
		for id, want := range bad {
			if len(fs[id]) != 1 || !strings.Contains(fs[id][0], want) {
				t.Errorf("bad row %d: failure records %q, want one saying %q", id, fs[id], want)
			}
		}
		if len(fs) != len(bad) {
			t.Errorf("%d tasks have failure records, want the %d bad rows: %v", len(fs), len(bad), fs)
		}
		for id, errs := range fs {
			if strings.Contains(fmt.Sprint(errs), secret) {
				t.Errorf("failure of task %d quotes the value: %q", id, errs)
			}
		}
		if r := snappea(t, "health", "--dir", dir); r.code != 0 {
			t.Errorf("health: exit %d %s%s", r.code, r.stdout, r.stderr)
		}
		select {
		case <-d.done:
			t.Fatalf("the daemon exited (code %d)\n%s", d.exitCode(), d.output())
		default:
		}
	}
	checkRun("the good tasks of the old database")

	loosenTable(t, db)
	writeBad()
	row("", `'snappea.noop', NULL, `+now, "column args is NULL, want TEXT or BLOB")
	goodRow()
	// Over the default MaxArgsSize, 1 MiB: failed, not run.
	row("", `'snappea.echo', '{"msg":"`+strings.Repeat("x", 1<<20)+`"}', `+now, "arguments are 1048586 bytes, over the limit of 1048576")
	goodRow()
	checkRun("the good tasks among bad rows in a loose table")

	for _, r := range d.all(func(r record) bool { return r.msg() == "task discarded" }) {
		if strings.Contains(r.str("err"), secret) {
			t.Errorf("a discard record quotes the value: %v", r)
		}
	}
	d.stop()
}

package integration_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/snappea/snappea/report/sentrytest"
)

// openDB opens the queue database of dir from the test process, as another
// program sharing the file would: a busy timeout, IMMEDIATE transactions.
func openDB(t testing.TB, dir string) *sql.DB {
	t.Helper()
	path := filepath.Join(dir, "snappea.db")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(5000)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return db
}

// insertTask writes a task row directly, bypassing every check snappea
// makes when it enqueues, and returns its id.
func insertTask(t testing.TB, db *sql.DB, task string, args []byte) int64 {
	t.Helper()
	res, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES (?, ?, ?)`,
		task, args, time.Now().UnixNano())
	if err != nil {
		t.Fatalf("insert %s: %v", task, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func countTasks(t testing.TB, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM snappea_tasks`).Scan(&n); err != nil {
		t.Fatalf("count tasks: %v", err)
	}
	return n
}

func TestBadTasksDoNotKillTheDaemon(t *testing.T) {
	const secret = "hunter2"
	// A secret that is a number: encoding/json's errors quoted numbers
	// that did not fit their field.
	const secretNum = "98765432109876543210"
	rcv := sentrytest.NewReceiver()
	t.Cleanup(rcv.Close)
	dir := dataDir(t)
	// Rows written straight into the database raise no wake; the short
	// poll finds them even if no later enqueue did.
	d := startDaemon(t, dir, "--sentry-dsn", rcv.DSN(), "--poll-interval", "200ms")

	type want struct {
		name    string
		outcome string // as the "task done" record and the Sentry tag name it
		msg     string // the error record; "" for a task that succeeds
	}
	tasks := map[int64]want{}
	enqueue := func(w want, args ...string) int64 {
		t.Helper()
		r := mustSnappea(t, append([]string{"enqueue", "--dir", dir}, args...)...)
		id := ids(t, r.stdout)[0]
		tasks[id] = w
		return id
	}
	discarded := want{outcome: "discarded", msg: "task discarded"}
	withName := func(w want, name string) want { w.name = name; return w }

	enqueue(withName(discarded, "no.such.task"), "--no-check", "no.such.task", `{"password":"`+secret+`"}`)
	enqueue(withName(discarded, "snappea.sleep"), "--no-check", "snappea.sleep", `{"ms":"`+secret+`"}`)
	enqueue(withName(discarded, "snappea.sleep"), "--no-check", "snappea.sleep", `{"ms":`+secretNum+`}`)
	enqueue(withName(discarded, "snappea.sleep"), "--no-check", "snappea.sleep", `{"ms":1.`+secretNum+`}`)
	enqueue(withName(discarded, "snappea.echo"), "--no-check", "snappea.echo", `{"msg":{"password":"`+secret+`"}}`)

	db := openDB(t, dir)
	// Arguments that are not JSON are refused by the table itself.
	if _, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES (?, ?, ?)`,
		"snappea.echo", []byte(`{"msg":"`+secret), time.Now().UnixNano()); err == nil || !strings.Contains(err.Error(), "args_is_json") {
		t.Errorf("insert of arguments that are not JSON: err = %v, want the args_is_json constraint", err)
	}
	tasks[insertTask(t, db, "no.such.task.either", []byte(`{"password":"`+secret+`"}`))] = withName(discarded, "no.such.task.either")
	// Empty arguments decode as JSON null: the zero value, a valid sleep.
	tasks[insertTask(t, db, "snappea.sleep", []byte{})] = want{name: "snappea.sleep", outcome: "done"}

	enqueue(want{name: "snappea.fail", outcome: "failed", msg: "task failed"},
		"snappea.fail", `{"msg":"boom","password":"`+secret+`"}`)
	panicID := enqueue(want{name: "snappea.panic", outcome: "panicked", msg: "task panicked"},
		"snappea.panic", `{"msg":"kaboom","password":"`+secret+`"}`)
	probe := enqueue(want{name: "snappea.echo", outcome: "done"}, "snappea.echo", `{"msg":"still alive"}`)

	d.waitUntil(30*time.Second, fmt.Sprintf("all %d tasks to finish", len(tasks)), func() bool {
		finished := taskIDs(d, "task done")
		for id := range tasks {
			if finished[id] == 0 {
				return false
			}
		}
		return true
	})
	select {
	case <-d.done:
		t.Fatalf("the daemon exited (code %d) after running the bad tasks\n%s", d.exitCode(), d.output())
	default:
	}
	outcomes := map[int64]string{}
	for _, r := range d.all(isMsg("task done")) {
		outcomes[r.int("task_id")] = r.str("outcome")
	}
	for id, w := range tasks {
		if outcomes[id] != w.outcome {
			t.Errorf("task %d (%s): outcome %q, want %q", id, w.name, outcomes[id], w.outcome)
		}
		if w.msg == "" {
			continue
		}
		recs := d.all(func(r record) bool { return r.msg() == w.msg && r.int("task_id") == id })
		if len(recs) != 1 {
			t.Errorf("task %d (%s): %d %q records, want 1", id, w.name, len(recs), w.msg)
			continue
		}
		r := recs[0]
		if r.str("level") != "ERROR" || r.str("task") != w.name || r.str("err") == "" {
			t.Errorf("task %d: record %v, want level ERROR, task %q and an err", id, r, w.name)
		}
		if id == panicID && !strings.Contains(r.str("stack"), "panic") {
			t.Errorf("the panic record has no stack: %v", r)
		}
	}
	if outcomes[probe] != "done" {
		t.Fatalf("the probe task did not run to completion: %q", outcomes[probe])
	}

	sum := d.stop()
	for key, n := range map[string]int64{"done": 2, "failed": 1, "panicked": 1, "discarded": 6, "interrupted": 0} {
		if got := sum.int(key); got != n {
			t.Errorf("stopped summary: %s = %d, want %d\n%v", key, got, n, sum)
		}
	}

	// Arguments can hold secrets: the daemon logs them at no level, nor
	// does it quote them in the errors it logs, stores and reports.
	hasSecret := func(s string) bool { return strings.Contains(s, secret) || strings.Contains(s, secretNum) }
	for _, r := range d.all(func(record) bool { return true }) {
		b, _ := json.Marshal(r)
		if hasSecret(string(b)) {
			t.Errorf("a log record contains the task arguments' secret: %s", b)
		}
		if _, ok := r["args"]; ok {
			t.Errorf("a log record has the task arguments: %s", b)
		}
	}
	d.mu.Lock()
	raw := d.raw.String()
	d.mu.Unlock()
	if hasSecret(raw) {
		t.Errorf("the daemon's non-JSON output contains the secret:\n%s", raw)
	}
	for _, f := range failedList(t, dir) {
		if hasSecret(f.Error) {
			t.Errorf("failed task %d's error contains the secret: %q", f.TaskID, f.Error)
		}
	}
	if r := mustSnappea(t, "failed", "list", "--dir", dir); hasSecret(r.stdout) || strings.TrimSpace(r.stdout) == "" {
		t.Errorf("failed list shows the secret or no failures:\n%s", r.stdout)
	}

	// The daemon flushed its reports before it exited, so every event has
	// been received by now.
	reported := map[int64]sentrytest.Event{}
	const events = 8 // the discarded, failed and panicked tasks
	for range events {
		ev, err := rcv.Next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d Sentry events: %v", len(reported), events, err)
		}
		var id int64
		fmt.Sscan(ev.Tags["task_id"], &id)
		if _, dup := reported[id]; dup {
			t.Errorf("task %s reported twice", ev.Tags["task_id"])
		}
		reported[id] = ev
	}
	select {
	case ev := <-rcv.Events():
		t.Errorf("unexpected Sentry event after %d: %s", events, ev.JSON)
	default:
	}
	for id, w := range tasks {
		ev, ok := reported[id]
		if w.msg == "" {
			if ok {
				t.Errorf("task %d (%s) succeeded but was reported: %s", id, w.name, ev.JSON)
			}
			continue
		}
		if !ok {
			t.Errorf("task %d (%s, %s) was not reported to Sentry", id, w.name, w.outcome)
			continue
		}
		if ev.Tags["task"] != w.name || ev.Tags["outcome"] != w.outcome {
			t.Errorf("task %d: Sentry tags %v, want task %q and outcome %q", id, ev.Tags, w.name, w.outcome)
		}
	}
	if ev, ok := reported[panicID]; ok {
		if !panicFrames(ev) {
			t.Errorf("the panic's Sentry event has no frame of the snappea.panic handler: %+v", ev.Exception)
		}
	}
	if err := rcv.Err(); err != nil {
		t.Errorf("the receiver could not decode a request: %v", err)
	}
	for _, b := range rcv.Bodies() {
		if hasSecret(string(b)) {
			t.Errorf("a Sentry request contains the task arguments' secret:\n%s", b)
		}
	}
}

// panicFrames reports whether ev's stack includes the handler of
// snappea.panic, a closure inside registry.RegisterBuiltins.
func panicFrames(ev sentrytest.Event) bool {
	for _, ex := range ev.Exception {
		for _, f := range ex.Frames {
			if strings.HasPrefix(f, "github.com/snappea/snappea/registry.RegisterBuiltins.") {
				return true
			}
		}
	}
	return false
}

func TestReadOnlyDatabase(t *testing.T) {
	asNobody, dir, db := nobodyReadsAQueue(t)

	r := snappeaWith(t, asNobody, "enqueue", "--dir", dir, "snappea.noop")
	if r.code != 1 {
		t.Fatalf("enqueue as nobody: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"read-only", "permission denied", db} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("enqueue as nobody: message %q does not mention %q", r.stderr, want)
		}
	}
	if r.stdout != "" {
		t.Errorf("enqueue as nobody printed ids: %q", r.stdout)
	}
	if s := getStatus(t, dir); s.Pending != 0 {
		t.Errorf("pending after the refused enqueue = %d, want 0", s.Pending)
	}

	r = snappeaWith(t, asNobody, "run", "--dir", dir)
	if r.code != 1 {
		t.Fatalf("run as nobody: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	lock := filepath.Join(dir, "snappea.lock")
	for _, want := range []string{"lock", lock, "permission denied"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("run as nobody: message %q does not mention %q", r.stderr, want)
		}
	}
}

// nobodyReadsAQueue makes a migrated queue that root owns and user nobody
// may read but not write, in a directory nobody can reach, and returns how
// to run snappea as nobody (a copy of the binary nobody may run), the data
// directory and the database. It skips the test when not run as root.
func nobodyReadsAQueue(t *testing.T) (asNobody func(*exec.Cmd), dir, db string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it runs snappea as user nobody against files root owns")
	}
	base := worldReadableDir(t)
	nobodyBin := filepath.Join(base, "snappea")
	copyFile(t, bin, nobodyBin, 0o755)
	asNobody = func(cmd *exec.Cmd) {
		cmd.Path = nobodyBin
		cmd.Args[0] = nobodyBin
		cmd.Dir = base
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	dir = filepath.Join(base, "data")
	mustSnappea(t, "migrate", "--dir", dir)
	db = filepath.Join(dir, "snappea.db")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	return asNobody, dir, db
}

// worldReadableDir returns a new directory that every user may read and
// traverse, skipping the test if its parents do not let them reach it.
func worldReadableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "snappea-shared")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("user nobody cannot traverse %s (mode %v); set TMPDIR to a directory it can reach", p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	return dir
}

func copyFile(t *testing.T, from, to string, perm os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

func TestLockedDatabase(t *testing.T) {
	dir := dataDir(t)
	mustSnappea(t, "migrate", "--dir", dir)
	db := openDB(t, dir)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil) // IMMEDIATE: the write lock, held until rollback
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('snappea.noop', 'null', 0)`); err != nil {
		t.Fatal(err)
	}

	const timeout = 500 * time.Millisecond
	start := time.Now()
	r := snappeaEnv(t, []string{"SNAPPEA_BUSY_TIMEOUT=" + timeout.String()}, "enqueue", "--dir", dir, "snappea.noop")
	took := time.Since(start)
	if r.code != 1 {
		t.Fatalf("enqueue while the database is locked: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"busy", "retry"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("message %q does not mention %q", r.stderr, want)
		}
	}
	if r.stdout != "" {
		t.Errorf("the failed enqueue printed ids: %q", r.stdout)
	}
	// Short of the 5s default, start-up and exit included: the variable was
	// obeyed.
	if took < timeout || took >= 5*time.Second {
		t.Errorf("enqueue gave up after %v, want about the %v busy timeout", took, timeout)
	}
	// WAL: readers are not blocked by the writer.
	if s := getStatus(t, dir); s.Pending != 0 {
		t.Errorf("pending while locked = %d, want 0", s.Pending)
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	mustSnappea(t, "enqueue", "--dir", dir, "--busy-timeout", timeout.String(), "snappea.noop")
	if s := getStatus(t, dir); s.Pending != 1 {
		t.Errorf("pending after the lock was released = %d, want 1", s.Pending)
	}
}

func TestMissingOrBrokenWakeupDir(t *testing.T) {
	t.Run("under a regular file", func(t *testing.T) {
		dir := dataDir(t)
		file := filepath.Join(t.TempDir(), "a-file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(file, "wakeup")
		d := launchDaemon(t, dir, "--wakeup-dir", bad)
		if code := d.wait(30 * time.Second); code != 1 {
			t.Fatalf("exit code %d, want 1\n%s", code, d.output())
		}
		r := d.waitFor(time.Second, "the error", func(r record) bool { return r.str("level") == "ERROR" })
		if !strings.Contains(r.msg()+" "+r.str("err"), bad) {
			t.Errorf("error record does not name %s: %v", bad, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "snappea.pid")); !os.IsNotExist(err) {
			t.Errorf("pidfile left behind by the failed start: %v", err)
		}
	})

	t.Run("deleted, no daemon", func(t *testing.T) {
		dir := dataDir(t)
		mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop")
		wake := filepath.Join(dir, "wakeup")
		if err := os.RemoveAll(wake); err != nil {
			t.Fatal(err)
		}
		r := mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop")
		if strings.Contains(r.stderr, "could not be woken") {
			t.Errorf("enqueue warned: %s", r.stderr)
		}
		if fi, err := os.Stat(wake); err != nil || !fi.IsDir() {
			t.Fatalf("wakeup directory not recreated: %v", err)
		}
		if _, err := os.Stat(filepath.Join(wake, "wake")); err != nil {
			t.Errorf("no wake file left for the next daemon: %v", err)
		}
		if s := getStatus(t, dir); s.Pending != 2 {
			t.Errorf("pending = %d, want 2", s.Pending)
		}
	})
}

func TestSchemaTooNew(t *testing.T) {
	dir := dataDir(t)
	mustSnappea(t, "migrate", "--dir", dir)
	db := openDB(t, dir)
	var v int
	if err := db.QueryRow(`SELECT max(version) FROM snappea_migrations`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO snappea_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		v+1, fmt.Sprintf("%04d_from_the_future.sql", v+1), time.Now().Unix()); err != nil {
		t.Fatal(err)
	}
	mentions := func(what, msg string) {
		t.Helper()
		for _, want := range []string{"newer", "upgrade"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message %q does not mention %q", what, msg, want)
			}
		}
	}

	d := launchDaemon(t, dir)
	if code := d.wait(30 * time.Second); code != 1 {
		t.Fatalf("run: exit code %d, want 1\n%s", code, d.output())
	}
	r := d.waitFor(time.Second, "the error", func(r record) bool { return r.str("level") == "ERROR" })
	mentions("run", r.msg()+" "+r.str("err"))

	res := snappea(t, "enqueue", "--dir", dir, "snappea.noop")
	if res.code != 1 {
		t.Fatalf("enqueue: exit %d, want 1\n%s%s", res.code, res.stdout, res.stderr)
	}
	mentions("enqueue", res.stderr)
	if n := countTasks(t, db); n != 0 {
		t.Errorf("%d tasks enqueued into a database of a newer schema", n)
	}
	var after int
	if err := db.QueryRow(`SELECT max(version) FROM snappea_migrations`).Scan(&after); err != nil || after != v+1 {
		t.Errorf("schema version after the refusals = %d, %v; want %d untouched", after, err, v+1)
	}
}

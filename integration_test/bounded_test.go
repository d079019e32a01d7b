package integration_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/snappea/snappea/control"
)

// holdLockEnv makes the test binary, re-executed, a process that holds a
// database's write lock: it opens the database named by the variable,
// begins an IMMEDIATE transaction, prints "locked" and waits until its
// standard input closes.
const holdLockEnv = "SNAPPEA_INTEGRATION_HOLD_WRITE_LOCK"

func init() {
	if path := os.Getenv(holdLockEnv); path != "" {
		os.Exit(holdWriteLockMain(path))
	}
}

func holdWriteLockMain(path string) int {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		return 1
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		fmt.Fprintln(os.Stderr, "begin immediate:", err)
		return 1
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	conn.ExecContext(context.Background(), "ROLLBACK")
	return 0
}

// holdWriteLock starts another process that holds dbPath's write lock
// until the returned func is called (or the test ends).
func holdWriteLock(t *testing.T, dbPath string) (release func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+dbPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			stdin.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "locked" {
			t.Fatalf("the lock holder printed %q, want \"locked\"", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lock holder did not take the write lock within 30s")
	}
	return release
}

// A stop honours --graceful-timeout while another process holds the
// database's write lock: the claim waiting for it is abandoned and the
// last statistics write is bounded. Before, a stop with a 1s graceful
// timeout took about 10s (the claim's busy timeout, then the statistics').
func TestStop_GracefulTimeoutWithDatabaseLocked(t *testing.T) {
	for _, how := range []string{"TERM", "snappea stop"} {
		t.Run(how, func(t *testing.T) {
			dir := dataDir(t)
			d := startDaemon(t, dir, "--graceful-timeout", "1s", "--poll-interval", "20ms")
			// A finished task, so that the stop has statistics to write.
			mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop")
			d.waitFor(30*time.Second, "the task to run", isMsg("task done"))

			holdWriteLock(t, filepath.Join(dir, "snappea.db"))
			// With the lock held, the daemon's next poll claims and waits
			// for it in SQLite's busy handler (5s by default): its loop
			// stops answering the health check's ping.
			waitClaimWaiting(t, dir)
			start := time.Now()
			if how == "TERM" {
				d.signal(syscall.SIGTERM)
			} else {
				r := snappea(t, "stop", "--dir", dir)
				if r.code != 0 {
					t.Fatalf("snappea stop: exit %d\n%s", r.code, r.stderr)
				}
			}
			if code := d.wait(30 * time.Second); code != 0 {
				t.Fatalf("daemon exited with %d, want 0\n%s", code, d.output())
			}
			took := time.Since(start)
			t.Logf("stopped %v after %s with the database locked", took, how)
			if took > 4*time.Second {
				t.Errorf("the stop took %v with a 1s graceful timeout, want at most about 1s (asserting < 4s)\n%s", took, d.output())
			}
			rec := d.waitFor(time.Second, "the warning about statistics not written", isMsg("could not write the last statistics before the stop deadline; they are lost"))
			if rec.int("tasks") != 1 {
				t.Errorf("the warning counts %d tasks not written, want 1: %v", rec.int("tasks"), rec)
			}
		})
	}
}

// waitClaimWaiting waits until the daemon's loop is inside a claim that
// waits for the database's write lock, which 'snappea health' shows as the
// main loop not answering its ping (2s).
func waitClaimWaiting(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := snappea(t, "health", "--dir", dir)
		if r.code != 0 && strings.Contains(r.stdout, "main loop is not answering") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's loop still answers 30s after the write lock was taken: %d %s%s", r.code, r.stdout, r.stderr)
		}
	}
}

// runBounded runs one snappea command with extra environment, failing the
// test if it has not returned within limit (a command that hangs on a
// frozen daemon would otherwise hold the test until its own timeout).
func runBounded(t *testing.T, limit time.Duration, env []string, args ...string) (result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("snappea %s did not return within %v", strings.Join(args, " "), limit)
	}
	if cmd.ProcessState == nil {
		t.Fatalf("snappea %s: %v", strings.Join(args, " "), err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}, took
}

// Every command that talks to the daemon answers within --control-timeout
// (default 5s) when the daemon is frozen, saying so in words an operator can
// act on; status shows the queue and the schedules from the database. The
// requests left on the socket are not carried out once the daemon runs
// again. Before, each of these commands hung for as long as the daemon was
// stopped.
func TestControlCommands_BoundedWhenDaemonStopped(t *testing.T) {
	dir := dataDir(t)
	sched := filepath.Join(t.TempDir(), "schedules.json")
	if err := os.WriteFile(sched, []byte(`[{"name": "hourly", "spec": "@every 1h", "task": "snappea.noop"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, "--schedules", sched)
	mustSnappea(t, "enqueue", "--dir", dir, "--delay", "1h", "snappea.noop")
	waitFull(t, dir, 30*time.Second, "the schedule stored and the task queued", func(s control.Status) bool {
		return len(s.Schedules) == 1 && s.Pending == 1
	})
	pid := d.pid()
	d.signal(syscall.SIGSTOP)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	want := fmt.Sprintf("daemon pid %d is not answering: stopped or overloaded", pid)
	hint := fmt.Sprintf("'kill -CONT %d'", pid)

	// The default bound, 5s.
	r, took := runBounded(t, 30*time.Second, nil, "status", "--dir", dir)
	t.Logf("status took %v with the daemon stopped", took)
	if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, hint) {
		t.Errorf("status: exit %d, stderr %q; want exit 1 and %q with %q", r.code, r.stderr, want, hint)
	}
	for _, s := range []string{"holds the lock but does not answer", "1 (0 ready, 1 delayed)", "hourly"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("status printed %q, want it to show %q", r.stdout, s)
		}
	}

	// A shorter bound, from the environment twin of --control-timeout.
	env := []string{"SNAPPEA_CONTROL_TIMEOUT=1s"}
	r, _ = runBounded(t, 30*time.Second, env, "status", "--json", "--dir", dir)
	var st control.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 1 || st.Running || st.PID != pid || st.Pending != 1 || len(st.Schedules) != 1 {
		t.Errorf("status --json: exit %d, %+v (%v); want exit 1, not running, pid %d, 1 pending, 1 schedule", r.code, st, err, pid)
	}
	for _, args := range [][]string{
		{"pause"}, {"resume"}, {"workers"}, {"workers", "4"}, {"reload"}, {"health"},
		{"stop", "--now"}, {"cancel", "999999"},
	} {
		// Flags come before arguments.
		r, took := runBounded(t, 30*time.Second, env, append([]string{args[0], "--dir", dir}, args[1:]...)...)
		name := strings.Join(args, " ")
		t.Logf("%s took %v", name, took)
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("%s: exit %d, output %q%q; want exit 1 and %q", name, r.code, r.stdout, r.stderr, want)
		}
	}

	// Running again, the daemon answers the ten requests left on its
	// socket with 408, and they did nothing: not paused, 16 workers, no
	// reload, not stopping.
	d.signal(syscall.SIGCONT)
	late := func(r record) bool { return r.msg() == "control request" && r.int("status") == 408 }
	d.waitUntil(30*time.Second, "the ten requests left on the socket answered 408", func() bool { return d.count(late) >= 10 })
	s := fullStatus(t, dir)
	if !s.Running || s.State != "running" || s.WorkersTotal != 16 || s.Generation != 0 {
		t.Errorf("after CONT: %+v; want running, 16 workers, generation 0", s)
	}
	mustSnappea(t, "health", "--dir", dir)

	// A plain stop of a frozen daemon falls back to TERM, which it acts on
	// once running again.
	d.signal(syscall.SIGSTOP)
	r, _ = runBounded(t, 30*time.Second, env, "stop", "--dir", dir)
	if r.code != 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "sent TERM") {
		t.Errorf("stop: exit %d, stderr %q; want exit 0, %q and the TERM sent instead", r.code, r.stderr, want)
	}
	d.signal(syscall.SIGCONT)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Errorf("daemon exited with %d after the TERM, want 0", code)
	}
}

// The pool size has an upper bound (foreman.MaxWorkers, 10000) at every
// entry point; 10^9 used to kill the daemon with out-of-memory.
func TestWorkers_UpperBound(t *testing.T) {
	dir := dataDir(t)
	for _, args := range [][]string{
		{"run", "--dir", dir, "--workers", "1000000000"},
		{"run", "--dir", dir, "--workers", "10001"},
	} {
		r := snappea(t, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "want 1 to 10000") {
			t.Errorf("snappea %s: exit %d, stderr %q; want 2 and the limit", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	r := snappeaWith(t, func(cmd *exec.Cmd) {
		cmd.Env = append(cmd.Env, "SNAPPEA_WORKERS=1000000000", "SNAPPEA_DIR="+dir)
	}, "run")
	if r.code != 2 || !strings.Contains(r.stderr, "want 1 to 10000") {
		t.Errorf("SNAPPEA_WORKERS=1000000000 snappea run: exit %d, stderr %q; want 2 and the limit", r.code, r.stderr)
	}

	d := startDaemon(t, dir)
	r = snappea(t, "workers", "--dir", dir, "1000000000")
	if r.code != 2 || !strings.Contains(r.stderr, "1 to 10000") {
		t.Errorf("snappea workers 1000000000: exit %d, stderr %q; want 2 and the limit", r.code, r.stderr)
	}
	err := control.Dial(filepath.Join(dir, control.SocketFile)).SetWorkers(t.Context(), 1_000_000_000)
	var se *control.ServerError
	if !errors.As(err, &se) || se.StatusCode != 400 || !strings.Contains(se.Message, "10000") {
		t.Errorf("POST /workers 1000000000 = %v, want a 400 naming the limit", err)
	}
	mustSnappea(t, "workers", "--dir", dir, "10000")
	if s := fullStatus(t, dir); s.WorkersTotal != 10000 {
		t.Errorf("workers_total %d after 'workers 10000', want 10000", s.WorkersTotal)
	}
	d.stop()
}

// A daemon whose data directory is deleted under it notices within a few
// seconds and exits with ExitDataDirGone (5), so that a supervisor starts it
// on the new directory. Before, it went on with an unlinked database that no
// new process could see, and a second daemon started beside it.
func TestDataDirDeleted_DaemonExits(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	waitFull(t, dir, 30*time.Second, "the datadir-watch service running", func(s control.Status) bool {
		for _, svc := range s.Services {
			if svc.Name == "datadir-watch" && svc.State == "running" {
				return true
			}
		}
		return false
	})
	// rm -rf; the daemon may create a file in it meanwhile (a checkpoint's
	// -shm, say), so try again as rm -rf would be.
	for i := 0; ; i++ {
		err := os.RemoveAll(dir)
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatal(err)
		}
	}
	start := time.Now()
	code := d.wait(30 * time.Second)
	t.Logf("exited %v after the data directory was deleted", time.Since(start))
	if code != 5 {
		t.Fatalf("daemon exited with %d, want 5 (data directory gone)\n%s", code, d.output())
	}
	if d.count(func(r record) bool {
		return r.str("level") == "ERROR" && strings.Contains(r.str("err"), "was removed")
	}) != 1 {
		t.Errorf("no error record naming the removed file\n%s", d.output())
	}

	// Started again, it runs on the new directory, which producers and
	// status see.
	d2 := startDaemon(t, dir)
	mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop")
	d2.waitFor(30*time.Second, "the task on the new directory", isMsg("task done"))
	if s := fullStatus(t, dir); !s.Running || s.PID != d2.pid() {
		t.Errorf("status after the restart: %+v, want the new daemon", s)
	}
	d2.stop()
}

// A replaced database file (a restore from backup moved over it, say) is
// noticed the same way.
func TestDataDirDatabaseReplaced_DaemonExits(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	db := filepath.Join(dir, "snappea.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(db+".new", db); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(30 * time.Second); code != 5 {
		t.Fatalf("daemon exited with %d, want 5\n%s", code, d.output())
	}
	if d.count(func(r record) bool { return strings.Contains(r.str("err"), "replaced by another file") }) != 1 {
		t.Errorf("no error record saying the database was replaced\n%s", d.output())
	}
}

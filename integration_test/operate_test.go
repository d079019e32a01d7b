package integration_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/queue"
)

// fullStatus runs 'snappea status --json' and decodes all of it.
func fullStatus(t testing.TB, dir string) control.Status {
	t.Helper()
	r := mustSnappea(t, "status", "--json", "--dir", dir)
	var s control.Status
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	return s
}

// waitFull polls the full status until cond holds.
func waitFull(t testing.TB, dir string, timeout time.Duration, what string, cond func(control.Status) bool) control.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := fullStatus(t, dir)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last status %+v", timeout, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// doneIDs returns the ids of the tasks the daemon logged as done.
func (d *daemon) doneIDs() map[int64]bool {
	out := map[int64]bool{}
	for _, r := range d.all(isMsg("task done")) {
		out[r.int("task_id")] = true
	}
	return out
}

func TestStatus_WhileTasksRun(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir, "--workers", "4")
	mustSnappea(t, "enqueue", "--dir", dir, "--count", "3", "snappea.sleep", `{"ms": 20000}`)
	s := waitFull(t, dir, 10*time.Second, "3 busy workers", func(s control.Status) bool { return s.WorkersBusy == 3 })
	if !s.Running || s.PID != d.pid() || s.DaemonPID != d.pid() || s.State != "running" || s.Generation != 0 ||
		s.WorkersTotal != 4 || s.StartedAt.IsZero() {
		t.Errorf("status = %+v", s)
	}
	if len(s.Active) != 3 {
		t.Fatalf("active = %+v, want 3 entries", s.Active)
	}
	for _, a := range s.Active {
		if a.Task != "snappea.sleep" || a.TaskID == 0 || a.StartedAt.IsZero() || a.ElapsedSeconds < 0 {
			t.Errorf("active entry %+v", a)
		}
	}
	names := map[string]string{}
	for _, sv := range s.Services {
		names[sv.Name] = sv.State
	}
	if names["stats"] != "running" || names["failed-retention"] != "running" {
		t.Errorf("services = %+v, want stats and failed-retention running", s.Services)
	}
	// The keys scripts rely on are there, with these names.
	raw := mustSnappea(t, "status", "--json", "--dir", dir).stdout
	for _, key := range []string{"pid", "started_at", "state", "generation", "workers_total", "workers_busy",
		"active", "counters", "pending", "oldest_age_seconds", "services", "schedules", `"done"`, `"interrupted"`, "elapsed_seconds"} {
		if !strings.Contains(raw, strings.Trim(key, `"`)) {
			t.Errorf("status --json lacks %s:\n%s", key, raw)
		}
	}
	human := mustSnappea(t, "status", "--dir", dir).stdout
	for _, want := range []string{"running, pid " + strconv.Itoa(d.pid()), "3 of 4 busy", "snappea.sleep", "SERVICE"} {
		if !strings.Contains(human, want) {
			t.Errorf("status output lacks %q:\n%s", want, human)
		}
	}
	mustSnappea(t, "stop", "--now", "--wait", "--dir", dir)
	if s := fullStatus(t, dir); s.Running || s.PID != 0 {
		t.Errorf("status after stop = %+v, want no daemon", s)
	}
	if out := mustSnappea(t, "status", "--dir", dir).stdout; !strings.Contains(out, "not running") {
		t.Errorf("status without a daemon:\n%s", out)
	}
}

func TestPause_SignalsAndCommands(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	for _, how := range []string{"signal", "command"} {
		t.Run(how, func(t *testing.T) {
			if how == "signal" {
				d.signal(syscall.SIGTSTP)
			} else {
				mustSnappea(t, "pause", "--dir", dir)
			}
			waitFull(t, dir, 10*time.Second, "state paused", func(s control.Status) bool { return s.State == "paused" })
			want := ids(t, mustSnappea(t, "enqueue", "--dir", dir, "--count", "5", "snappea.noop").stdout)
			// The wakeup reaches a paused daemon, which claims nothing.
			time.Sleep(300 * time.Millisecond)
			if s := fullStatus(t, dir); s.Pending != 5 {
				t.Fatalf("paused daemon: pending %d, want the 5 tasks still queued", s.Pending)
			}
			if how == "signal" {
				d.signal(syscall.SIGCONT)
			} else {
				mustSnappea(t, "resume", "--dir", dir)
			}
			d.waitUntil(10*time.Second, "the tasks queued while paused to run", func() bool {
				done := d.doneIDs()
				for _, id := range want {
					if !done[id] {
						return false
					}
				}
				return true
			})
			if s := fullStatus(t, dir); s.State != "running" || s.Pending != 0 {
				t.Errorf("after resume: %+v", s)
			}
		})
	}
	d.stop()
}

func TestWorkers_GrowAndShrinkUnderLoad(t *testing.T) {
	dir := dataDir(t)
	startDaemon(t, dir, "--workers", "2")
	mustSnappea(t, "enqueue", "--dir", dir, "--count", "12", "snappea.sleep", `{"ms": 1500}`)
	waitFull(t, dir, 10*time.Second, "2 busy", func(s control.Status) bool { return s.WorkersBusy == 2 })

	mustSnappea(t, "workers", "--dir", dir, "6")
	s := waitFull(t, dir, 5*time.Second, "6 busy after growing", func(s control.Status) bool { return s.WorkersBusy == 6 })
	if s.WorkersTotal != 6 {
		t.Errorf("workers_total = %d, want 6", s.WorkersTotal)
	}
	mustSnappea(t, "workers", "--dir", dir, "1")
	// Shrinking cuts nothing off: the 6 running tasks go on, then no more
	// than one runs at a time.
	if s := fullStatus(t, dir); s.WorkersBusy < 2 || s.WorkersTotal != 1 {
		t.Errorf("right after shrinking: busy %d of %d, want the running tasks to go on", s.WorkersBusy, s.WorkersTotal)
	}
	waitFull(t, dir, 10*time.Second, "1 busy after shrinking", func(s control.Status) bool { return s.WorkersBusy == 1 })
	for range 10 {
		if s := fullStatus(t, dir); s.WorkersBusy > 1 {
			t.Fatalf("busy %d with 1 worker", s.WorkersBusy)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := snappea(t, "workers", "--dir", dir, "0"); r.code != 2 {
		t.Errorf("workers 0: exit %d, want 2", r.code)
	}
	out := mustSnappea(t, "workers", "--dir", dir).stdout
	if !strings.Contains(out, "of 1 busy") {
		t.Errorf("workers without N printed %q", out)
	}
	mustSnappea(t, "stop", "--now", "--wait", "--dir", dir)
}

// copyProgram copies the snappea binary to a path of its own, so that a
// test can replace it as a deployment would.
func copyProgram(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snappea")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceProgram puts content at path the way a deployment does: written
// beside it, then renamed over it (a running binary cannot be written).
func replaceProgram(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReload_KeepsPidLockAndQueuedTasks(t *testing.T) {
	dir := dataDir(t)
	prog := copyProgram(t)
	d := launchProgram(t, prog, dir, "--workers", "2", "--graceful-timeout", "20s")
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))

	// A task running at the reload finishes before the exec; tasks queued
	// while paused survive it, and the pause too.
	running := ids(t, mustSnappea(t, "enqueue", "--dir", dir, "snappea.sleep", `{"ms": 1500}`).stdout)
	waitFull(t, dir, 10*time.Second, "the sleep to run", func(s control.Status) bool { return s.WorkersBusy == 1 })
	mustSnappea(t, "pause", "--dir", dir)
	queued := ids(t, mustSnappea(t, "enqueue", "--dir", dir, "--count", "50", "snappea.noop").stdout)

	// A new build of the same program is deployed.
	b, _ := os.ReadFile(bin)
	replaceProgram(t, prog, b)
	d.signal(syscall.SIGHUP)
	s := waitFull(t, dir, 30*time.Second, "generation 1", func(s control.Status) bool { return s.Generation == 1 })
	if s.PID != d.pid() {
		t.Errorf("pid after reload = %d, want %d", s.PID, d.pid())
	}
	if s.State != "paused" || s.Pending != 50 {
		t.Errorf("after reload: state %q, pending %d; want paused with the 50 tasks", s.State, s.Pending)
	}
	if !d.doneIDs()[running[0]] {
		t.Errorf("the task running at the reload did not finish first\n%s", d.output())
	}
	// No second daemon can start: the lock stayed held across the exec.
	if r := snappea(t, "run", "--dir", dir); r.code != 4 {
		t.Errorf("a second daemon during the reloaded one: exit %d, want 4\n%s", r.code, r.stderr)
	}
	mustSnappea(t, "resume", "--dir", dir)
	d.waitUntil(10*time.Second, "the queued tasks to run after the reload", func() bool {
		done := d.doneIDs()
		for _, id := range queued {
			if !done[id] {
				return false
			}
		}
		return true
	})
	if n := d.count(isMsg("foreman started")); n != 2 {
		t.Errorf("%d foreman starts, want 2", n)
	}
	// The command twin, waiting for the new generation.
	mustSnappea(t, "reload", "--wait", "--dir", dir)
	if s := fullStatus(t, dir); s.Generation != 2 || s.PID != d.pid() || s.State != "running" {
		t.Errorf("after 'snappea reload': %+v", s)
	}
	d.stop()
}

func TestReload_BrokenProgramKeepsTheOldRunning(t *testing.T) {
	dir := dataDir(t)
	prog := copyProgram(t)
	d := launchProgram(t, prog, dir)
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	replaceProgram(t, prog, []byte("#!/bin/sh\necho 'this build is broken' >&2\nexit 3\n"))

	d.signal(syscall.SIGHUP)
	rec := d.waitFor(30*time.Second, "the refused reload", isMsg("reload refused; still running unchanged"))
	if !strings.Contains(rec.str("err"), "this build is broken") {
		t.Errorf("refusal does not say why: %v", rec)
	}
	r := snappea(t, "reload", "--dir", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "this build is broken") {
		t.Errorf("snappea reload with a broken program: exit %d, %q", r.code, r.stderr)
	}
	// Refused through the control socket, the daemon logs the same record.
	viaSocket := d.waitFor(30*time.Second, "the refused 'snappea reload'", func(r record) bool {
		return r.msg() == "reload refused; still running unchanged" && r.str("signal") == "control socket"
	})
	if viaSocket.str("level") != "ERROR" || !strings.Contains(viaSocket.str("err"), "this build is broken") ||
		rec.str("level") != "ERROR" || rec.str("signal") != "HUP" {
		t.Errorf("refusals after HUP and through 'snappea reload' differ: %v and %v", rec, viaSocket)
	}
	s := fullStatus(t, dir)
	if s.Generation != 0 || s.State != "running" || s.PID != d.pid() {
		t.Errorf("after refused reloads: %+v", s)
	}
	id := ids(t, mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop").stdout)[0]
	d.waitFor(10*time.Second, "a task after the refused reload", func(r record) bool {
		return r.msg() == "task done" && r.int("task_id") == id
	})
	d.stop()
}

func TestReload_BadFlagsKeepTheOldRunning(t *testing.T) {
	dir := dataDir(t)
	sched := filepath.Join(t.TempDir(), "schedules.json")
	if err := os.WriteFile(sched, []byte(`[]`), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, "--schedules", sched)
	// The configuration goes bad on disk: the new program would not start.
	if err := os.WriteFile(sched, []byte(`[{"name": "x", "spec": "every tuesday"`), 0o644); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	d.waitFor(30*time.Second, "the refused reload", isMsg("reload refused; still running unchanged"))
	if s := fullStatus(t, dir); s.Generation != 0 || s.State != "running" {
		t.Errorf("after a refused reload: %+v", s)
	}
	d.stop()
}

func TestSignals_SecondINTCancelsRunningTasks(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir, "--graceful-timeout", "60s")
	mustSnappea(t, "enqueue", "--dir", dir, "--count", "2", "snappea.sleep", `{"ms": 60000}`)
	waitFull(t, dir, 10*time.Second, "2 busy", func(s control.Status) bool { return s.WorkersBusy == 2 })
	d.signal(syscall.SIGINT)
	d.waitFor(5*time.Second, "the graceful stop", func(r record) bool { return r.msg() == "received signal, stopping" })
	// Within a second it is the same keypress; after one, it escalates.
	time.Sleep(1100 * time.Millisecond)
	start := time.Now()
	d.signal(syscall.SIGINT)
	if code := d.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d after the second INT, want 0", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("exited %v after the second INT, want at once, not after the 60s graceful timeout", took)
	}
	sum := d.waitFor(time.Second, "the summary", isMsg("stopped"))
	if sum.int("interrupted") != 2 {
		t.Errorf("summary %v, want 2 interrupted", sum)
	}
	if d.count(isMsg("second INT: cancelling running tasks now; a third INT exits at once")) != 1 {
		t.Errorf("the escalation was not logged\n%s", d.output())
	}
}

func TestSignals_BurstsNeitherDeadlockNorDoubleExec(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	for range 5 {
		for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTSTP, syscall.SIGCONT, syscall.SIGHUP, syscall.SIGUSR1} {
			d.signal(s)
		}
	}
	// Whatever reload the burst started finishes; a reload never runs twice at once.
	time.Sleep(500 * time.Millisecond)
	s := waitFull(t, dir, 30*time.Second, "a running daemon after the burst", func(s control.Status) bool {
		return s.Running && (s.State == "running" || s.State == "paused")
	})
	if s.Generation > 1 && d.count(isMsg("reload: re-executing")) != s.Generation {
		t.Errorf("generation %d after %d re-executions", s.Generation, d.count(isMsg("reload: re-executing")))
	}
	if d.count(isMsg("reload: re-executing")) > 2 {
		t.Errorf("one burst re-executed %d times\n%s", d.count(isMsg("reload: re-executing")), d.output())
	}
	for range 3 {
		d.signal(syscall.SIGTERM)
		d.signal(syscall.SIGHUP)
	}
	if code := d.wait(30 * time.Second); code != 0 {
		t.Errorf("exit %d after a TERM burst, want 0\n%s", code, d.output())
	}
}

func TestSignals_USR1ReopensLogFile(t *testing.T) {
	dir := dataDir(t)
	logPath := filepath.Join(t.TempDir(), "snappea.log")
	cmd := exec.Command(bin, "run", "--dir", dir, "--log-format", "json", "--log-file", logPath)
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFile := func(path, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if bytes.Contains(b, []byte(want)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got %q:\n%s", path, want, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFile(logPath, "foreman started")
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFile(logPath, "log file reopened")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("daemon: %v", err)
	}
	waitFile(logPath, `"msg":"stopped"`)
	if b, _ := os.ReadFile(logPath + ".1"); bytes.Contains(b, []byte(`"msg":"stopped"`)) {
		t.Error("records after USR1 went to the rotated file")
	}
}

func TestControlSocket_OwnerOnly(t *testing.T) {
	dir := dataDir(t)
	startDaemon(t, dir)
	sock := filepath.Join(dir, control.SocketFile)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}
	// curl speaks to it as to any HTTP server.
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("curl", "-sf", "--unix-socket", sock, "http://snappea/status").Output()
		if err != nil || !bytes.Contains(out, []byte(`"state":"running"`)) {
			t.Errorf("curl /status: %v %s", err, out)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("another user's request needs root to run a client as nobody")
	}
	// Open the way to the socket so that only its own protection is left.
	for p := sock; p != "/"; p = filepath.Dir(p) {
		if p == sock {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(p, fi.Mode().Perm()|0o011)
		}
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl to send a request as nobody")
	}
	cmd := exec.Command("curl", "-s", "--max-time", "5", "--unix-socket", sock, "http://snappea/status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || bytes.Contains(out, []byte("state")) {
		t.Errorf("a request as nobody got an answer: %v %s", err, out)
	}
	// Even with the file opened up, the daemon checks who is calling.
	os.Chmod(sock, 0o666)
	cmd = exec.Command("curl", "-s", "--max-time", "5", "--unix-socket", sock, "http://snappea/status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err = cmd.CombinedOutput()
	if err == nil || bytes.Contains(out, []byte("state")) {
		t.Errorf("a request as nobody through an opened-up socket got an answer: %v %s", err, out)
	}
}

func TestHealth(t *testing.T) {
	t.Run("no daemon", func(t *testing.T) {
		dir := dataDir(t)
		mustSnappea(t, "migrate", "--dir", dir)
		r := snappea(t, "health", "--dir", dir)
		if r.code != 1 || !strings.Contains(r.stderr+r.stdout, "no daemon is running") {
			t.Errorf("health without a daemon: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("busy", func(t *testing.T) {
		dir := dataDir(t)
		startDaemon(t, dir, "--workers", "1", "--stuck-after", "500ms")
		mustSnappea(t, "enqueue", "--dir", dir, "--count", "4", "snappea.sleep", `{"ms": 10000}`)
		waitFull(t, dir, 10*time.Second, "the worker busy", func(s control.Status) bool { return s.WorkersBusy == 1 })
		time.Sleep(time.Second)
		r := snappea(t, "health", "--dir", dir)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "healthy") {
			t.Errorf("busy daemon with a backlog: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		mustSnappea(t, "stop", "--now", "--wait", "--dir", dir)
	})
	t.Run("stuck", func(t *testing.T) {
		dir := dataDir(t)
		startDaemon(t, dir, "--poll-interval", "1h", "--stuck-after", "1s")
		if r := snappea(t, "health", "--dir", dir); r.code != 0 {
			t.Errorf("idle daemon: exit %d %q", r.code, r.stdout)
		}
		// Rows written without a wakeup: the daemon will not look before
		// its hour-long poll. The process is up and the loop answers.
		q, err := queue.Open(context.Background(), queue.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		writeWithoutWakeup(t, q.DB(), 3)
		q.Close()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := snappea(t, "health", "--dir", dir)
			if r.code == 1 {
				if !strings.Contains(r.stdout, "stuck: 3 tasks ready") {
					t.Errorf("stuck queue reason: %q", r.stdout)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("health still passes on a stuck queue: %q", r.stdout)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// Paused on purpose is not stuck.
		mustSnappea(t, "pause", "--dir", dir)
		if r := snappea(t, "health", "--dir", dir); r.code != 0 {
			t.Errorf("paused daemon with a backlog: exit %d %q", r.code, r.stdout)
		}
	})
}

// writeWithoutWakeup inserts n snappea.noop rows straight into the table.
func writeWithoutWakeup(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	for range n {
		if _, err := db.Exec(`INSERT INTO snappea_tasks (task, args, created_at) VALUES ('snappea.noop', 'null', ?)`,
			time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServices_PanickingServiceIsRestarted(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, serviceBin, dir)
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	// It panics twice: restarted after 1s, then after 2s.
	d.waitFor(10*time.Second, "the second restart", func(r record) bool {
		return r.msg() == "service panicked; restarting it" && r.duration("restart_in") == 2*time.Second
	})
	s := waitFull(t, dir, 10*time.Second, "the service running again", func(s control.Status) bool {
		for _, sv := range s.Services {
			if sv.Name == "flaky" && sv.State == "running" && sv.Restarts == 2 {
				return true
			}
		}
		return false
	})
	for _, sv := range s.Services {
		if sv.Name == "flaky" && !strings.Contains(sv.LastError, "failing on purpose") {
			t.Errorf("flaky last error = %q", sv.LastError)
		}
	}
	// The daemon itself kept working.
	id := ids(t, mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop").stdout)[0]
	d.waitFor(10*time.Second, "a task", func(r record) bool { return r.msg() == "task done" && r.int("task_id") == id })
	d.stop()
}

func TestMetrics_Scraped(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir, "--metrics-addr", "127.0.0.1:0")
	addr := d.waitFor(10*time.Second, "the metrics address", isMsg("serving metrics")).str("addr")
	mustSnappea(t, "enqueue", "--dir", dir, "--count", "7", "snappea.noop")
	mustSnappea(t, "enqueue", "--dir", dir, "snappea.fail", `{"msg": "no"}`)
	d.waitUntil(10*time.Second, "8 tasks", func() bool { return d.count(isMsg("task done")) == 8 })
	// "task done" comes before a failed task is recorded and its worker
	// freed.
	waitFull(t, dir, 10*time.Second, "no worker busy", func(s control.Status) bool { return s.WorkersBusy == 0 })

	resp, err := http.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		fam, ok := fams[name]
		if !ok {
			return 0, false
		}
	next:
		for _, m := range fam.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
		return 0, false
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"snappea_tasks_finished_total", map[string]string{"task": "snappea.noop", "outcome": "done"}, 7},
		{"snappea_tasks_finished_total", map[string]string{"task": "snappea.fail", "outcome": "failed"}, 1},
		{"snappea_task_duration_seconds", map[string]string{"task": "snappea.noop"}, 7},
		{"snappea_workers_total", nil, 16},
		{"snappea_workers_busy", nil, 0},
		{"snappea_tasks_pending", nil, 0},
		{"snappea_paused", nil, 0},
	}
	for _, c := range checks {
		got, ok := value(c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	mustSnappea(t, "pause", "--dir", dir)
	resp, err = http.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte("snappea_paused 1")) {
		t.Errorf("after pause, /metrics lacks snappea_paused 1:\n%s", body)
	}
	d.stop()
}

func TestStats_Recorded(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	mustSnappea(t, "enqueue", "--dir", dir, "--count", "5", "snappea.noop")
	mustSnappea(t, "enqueue", "--dir", dir, "snappea.fail", `{"msg": "no"}`)
	d.waitUntil(10*time.Second, "6 tasks", func() bool { return d.count(isMsg("task done")) == 6 })
	d.stop() // the last minute is written at stop
	out := mustSnappea(t, "stats", "--dir", dir).stdout
	for _, want := range []string{"snappea.noop", "snappea.fail"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %s:\n%s", want, out)
		}
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(mustSnappea(t, "stats", "--json", "--dir", dir).stdout), &rows); err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, r := range rows {
		for k, v := range r {
			if strings.EqualFold(k, "count") {
				total += v.(float64)
			}
		}
	}
	if total != 6 {
		t.Errorf("stats --json counts %v tasks, want 6: %v", total, rows)
	}
}

func TestTimeout_HandlerIgnoringItIsShownOverdue(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, serviceBin, dir)
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	r := snappeaWith(t, func(cmd *exec.Cmd) { cmd.Path = serviceBin },
		"enqueue", "--dir", dir, "--timeout", "1s", "test.deaf", `{"ms": 4000}`)
	if r.code != 0 {
		t.Fatalf("enqueue: exit %d %s", r.code, r.stderr)
	}
	id := ids(t, r.stdout)[0]
	// At the deadline the context is cancelled; a second later a handler
	// still running is overdue: shown, counted and logged once.
	s := waitFull(t, dir, 10*time.Second, "the task shown overdue", func(s control.Status) bool {
		return len(s.Active) == 1 && s.Active[0].Overdue
	})
	if s.Active[0].TaskID != id || s.Counters.Overdue != 1 || s.WorkersBusy != 1 {
		t.Errorf("status = %+v, want task %d overdue, counted once, keeping its slot", s, id)
	}
	if s.Active[0].ElapsedSeconds < 2 {
		t.Errorf("shown overdue after %.1fs, want the second after its 1s timeout", s.Active[0].ElapsedSeconds)
	}
	d.waitFor(10*time.Second, "the task to end", func(r record) bool { return r.msg() == "task done" && r.int("task_id") == id })
	if n := d.count(func(r record) bool { return strings.HasPrefix(r.msg(), "task overdue") }); n != 1 {
		t.Errorf("%d overdue records, want 1", n)
	}
	d.stop()
}

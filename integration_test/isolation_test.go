package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/report/sentrytest"
)

// The process pool end to end: the daemon is testdata/procdaemon, whose
// proc.* tasks are isolated, and the tests read every outcome where an
// operator would: the log, 'snappea failed', 'snappea status', Sentry.

// procCmd runs one command of the procdaemon binary, which knows the proc.*
// tasks, and fails the test if it does not succeed.
func procCmd(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, procBin, args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		t.Fatalf("procdaemon %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return result{stdout: out.String(), stderr: errb.String()}
}

// enqueueProc enqueues one task on dir and returns its id.
func enqueueProc(t testing.TB, dir string, args ...string) int64 {
	t.Helper()
	return ids(t, procCmd(t, append([]string{"enqueue", "--dir", dir}, args...)...).stdout)[0]
}

// failedRecord is one entry of 'snappea failed list --json'.
type failedRecord struct {
	TaskID   int64  `json:"task_id"`
	Task     string `json:"task"`
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
}

func failedRecords(t testing.TB, dir string) map[string]failedRecord {
	t.Helper()
	var list []failedRecord
	out := procCmd(t, "failed", "list", "--json", "--dir", dir).stdout
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("failed list --json printed %q: %v", out, err)
	}
	byTask := map[string]failedRecord{}
	for _, f := range list {
		byTask[f.Task] = f
	}
	return byTask
}

// outcomeOf waits for the task's "task done" record and returns its outcome.
func (d *daemon) outcomeOf(id int64) string {
	d.t.Helper()
	r := d.waitFor(60*time.Second, fmt.Sprintf("task %d to finish", id), func(r record) bool {
		return r.msg() == "task done" && r.int("task_id") == id
	})
	return r.str("outcome")
}

// alive reports whether pid is a process that has not exited (a zombie
// has: it only waits to be reaped).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone waits until none of pids is alive.
func waitGone(t testing.TB, what string, pids []int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: processes %v still running after 15s", what, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func procPIDs(s control.Status) []int {
	var out []int
	for _, p := range s.Procs {
		out = append(out, p.PID)
	}
	return out
}

// A child that exits, panics, crashes on another goroutine or is killed by
// SIGSEGV costs only its own task: each lands in the failed record with
// its cause (the exit retried first, having attempts left), is reported to
// Sentry with the child's stderr tail and crash report, the children are
// replaced, and the daemon, and the goroutine and isolated tasks beside,
// go on.
func TestIsolation_ChildCrashes(t *testing.T) {
	rcv := sentrytest.NewReceiver()
	t.Cleanup(rcv.Close)
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "4", "--procs-max", "2", "--sentry-dsn", rcv.DSN())
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))

	exit3 := enqueueProc(t, dir, "--max-attempts", "2", "proc.exit3")
	panicked := enqueueProc(t, dir, "proc.panic")
	gopanic := enqueueProc(t, dir, "proc.gopanic")
	segv := enqueueProc(t, dir, "proc.segv")
	work := enqueueProc(t, dir, "proc.work")
	noop := enqueueProc(t, dir, "snappea.noop")
	for id, want := range map[int64]string{exit3: "failed", panicked: "panicked", gopanic: "failed", segv: "failed", work: "done", noop: "done"} {
		if got := d.outcomeOf(id); got != want {
			t.Errorf("task %d: outcome %s, want %s", id, got, want)
		}
	}
	retry := d.waitFor(30*time.Second, "the retry of proc.exit3", func(r record) bool {
		return r.msg() == "task failed; will retry" && r.int("task_id") == exit3
	})
	if got := d.outcomeOf(retry.int("retry_id")); got != "failed" {
		t.Errorf("retry of proc.exit3: outcome %s, want failed", got)
	}

	failed := failedRecords(t, dir)
	for task, want := range map[string]string{
		"proc.exit3":   "worker process died: exit status 3",
		"proc.panic":   "panic: kaboom in a child",
		"proc.gopanic": "worker process died: exit status 2",
		"proc.segv":    "worker process died:",
	} {
		f, ok := failed[task]
		if !ok || !strings.Contains(f.Error, want) {
			t.Errorf("failed record of %s = %+v, want one with %q", task, f, want)
		}
	}
	if f := failed["proc.exit3"]; f.Attempts != 2 {
		t.Errorf("proc.exit3 failed after %d attempts, want 2", f.Attempts)
	}

	events := map[string]sentrytest.Event{}
	for range 4 {
		ev, err := rcv.Next(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d Sentry events: %v", len(events), err)
		}
		events[ev.Tags["task"]] = ev
	}
	if pc := events["proc.exit3"].Contexts["process"]; pc == nil || pc["cause"] != "exit status 3" {
		t.Errorf("proc.exit3's Sentry process context = %v, want its cause", pc)
	}
	if pc := events["proc.gopanic"].Contexts["process"]; pc == nil ||
		!strings.Contains(fmt.Sprint(pc["crash_report"]), "panic: kaboom in a goroutine") ||
		!strings.Contains(fmt.Sprint(pc["stderr_tail"]), "kaboom in a goroutine") {
		t.Errorf("proc.gopanic's Sentry process context = %v, want the crash report and stderr tail", pc)
	}
	if st := fmt.Sprint(events["proc.panic"].Contexts["panic"]["stack"]); !strings.Contains(st, "main.main") {
		t.Errorf("proc.panic's Sentry panic context = %v, want the child's stack", events["proc.panic"].Contexts["panic"])
	}
	if pc := events["proc.segv"].Contexts["process"]; pc == nil || !strings.Contains(fmt.Sprint(pc["crash_report"], pc["cause"]), "SIGSEGV") {
		t.Errorf("proc.segv's Sentry process context = %v, want SIGSEGV in it", pc)
	}

	s := fullStatus(t, dir)
	if !s.Running || s.PID != d.pid() || s.ProcPool == nil || s.ProcPool.Deaths < 4 || s.ProcPool.Restarts < 1 {
		t.Errorf("status after the crashes: running %v pid %d (want %d), pool %+v; want at least 4 deaths and a restart",
			s.Running, s.PID, d.pid(), s.ProcPool)
	}
	// The daemon still runs isolated tasks.
	if got := d.outcomeOf(enqueueProc(t, dir, "proc.work")); got != "done" {
		t.Errorf("proc.work after the crashes: %s, want done", got)
	}
	st := d.stop()
	if st.int("failed") != 4 || st.int("panicked") != 1 || st.int("done") != 3 {
		t.Errorf("stopped record %v, want 4 failed (proc.exit3 twice), 1 panicked, 3 done", st)
	}
}

// A task that ignores its context is killed at its timeout plus the grace
// period and recorded as timed out; a child killed with -9 fails its task
// with the signal; the slots are freed, and the daemon stays up.
func TestIsolation_HardTimeoutAndKill9(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "2", "--procs-max", "2")
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))

	blocked := enqueueProc(t, dir, "--timeout", "1s", "proc.block")
	s := waitFull(t, dir, 30*time.Second, "proc.block to run in a child", func(s control.Status) bool {
		return len(s.Active) == 1 && s.Active[0].PID != 0
	})
	blockedPID := s.Active[0].PID
	if got := d.outcomeOf(blocked); got != "failed" {
		t.Errorf("proc.block past its timeout: %s, want failed", got)
	}
	if f := failedRecords(t, dir)["proc.block"]; !strings.Contains(f.Error, "timed out after 1s") ||
		!strings.Contains(f.Error, "worker process killed") {
		t.Errorf("failed record of proc.block = %+v, want it timed out and its child killed", f)
	}
	waitGone(t, "the timed-out task's child", []int{blockedPID})

	held := enqueueProc(t, dir, "proc.sleep", `{"ms": 60000}`)
	s = waitFull(t, dir, 30*time.Second, "proc.sleep to run in a child", func(s control.Status) bool {
		return len(s.Active) == 1 && s.Active[0].TaskID == held && s.Active[0].PID != 0
	})
	if err := syscall.Kill(s.Active[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := d.outcomeOf(held); got != "failed" {
		t.Errorf("proc.sleep whose child got kill -9: %s, want failed", got)
	}
	if f := failedRecords(t, dir)["proc.sleep"]; f.Error != "worker process died: killed by SIGKILL" {
		t.Errorf("failed record of proc.sleep = %+v, want the kill", f)
	}
	s = waitFull(t, dir, 30*time.Second, "a replacement child", func(s control.Status) bool {
		return s.WorkersBusy == 0 && len(s.Procs) >= 1 && s.Procs[0].State == "idle"
	})
	if s.ProcPool.Kills < 1 || s.ProcPool.Deaths < 1 {
		t.Errorf("pool after a timeout kill and a kill -9: %+v, want a kill and a death counted", s.ProcPool)
	}
	if got := d.outcomeOf(enqueueProc(t, dir, "proc.work")); got != "done" {
		t.Errorf("proc.work afterwards: %s, want done", got)
	}
	d.stop()
}

// --max-rss-per-proc retires a child after the task that grew it past the
// limit: each 50 MB task runs in a fresh child.
func TestIsolation_RecycledByRSS(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "1", "--procs-max", "1", "--max-rss-per-proc", "40MiB")
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	for range 3 {
		if got := d.outcomeOf(enqueueProc(t, dir, "proc.alloc50")); got != "done" {
			t.Fatalf("proc.alloc50: %s, want done", got)
		}
	}
	if n := d.count(func(r record) bool { return r.msg() == "retiring worker process" && r["rss_bytes"] != nil }); n != 3 {
		t.Errorf("%d children retired for their RSS, want 3\n%s", n, d.output())
	}
	s := waitFull(t, dir, 30*time.Second, "a fresh child", func(s control.Status) bool {
		return len(s.Procs) == 1 && s.Procs[0].State == "idle"
	})
	if s.ProcPool.Starts < 4 || s.ProcPool.Retired < 3 || s.ProcPool.Deaths != 0 || s.Procs[0].RSSBytes > 40<<20 {
		t.Errorf("pool = %+v, procs %+v; want 4 starts, 3 retired, no death, a small child", s.ProcPool, s.Procs)
	}
	d.stop()
}

// --max-tasks-per-proc retires a child after that many tasks.
func TestIsolation_RecycledByTaskCount(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "1", "--procs-max", "1", "--max-tasks-per-proc", "2")
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	pids := map[int]bool{}
	for range 4 {
		id := enqueueProc(t, dir, "proc.sleep", `{"ms": 300}`)
		s := waitFull(t, dir, 30*time.Second, "proc.sleep in a child", func(s control.Status) bool {
			return len(s.Active) == 1 && s.Active[0].TaskID == id && s.Active[0].PID != 0
		})
		pids[s.Active[0].PID] = true
		if got := d.outcomeOf(id); got != "done" {
			t.Fatalf("proc.sleep: %s, want done", got)
		}
	}
	if len(pids) != 2 {
		t.Errorf("4 tasks ran in %d children %v, want 2 (2 tasks each)", len(pids), pids)
	}
	d.stop()
}

// After kill -9 of the daemon no child is left running.
func TestIsolation_DaemonKilledTakesItsChildren(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "4", "--procs-min", "3", "--procs-max", "3")
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	enqueueProc(t, dir, "proc.block")
	s := waitFull(t, dir, 30*time.Second, "3 children, one busy", func(s control.Status) bool {
		return len(s.Procs) == 3 && s.WorkersBusy == 1 && len(s.Active) == 1 && s.Active[0].PID != 0
	})
	pids := procPIDs(s)
	d.signal(syscall.SIGKILL)
	d.wait(10 * time.Second)
	waitGone(t, "the children of a daemon killed with -9", pids)
}

// A stop lets the children finish their tasks in parallel under the one
// graceful deadline (three 4s tasks end within a 10s deadline), then
// terminates the one that ignores its context, and leaves no child behind.
func TestIsolation_StopDrainsChildrenInParallel(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "4", "--procs-min", "4", "--procs-max", "4", "--graceful-timeout", "10s")
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	var sleeps []int64
	for range 3 {
		sleeps = append(sleeps, enqueueProc(t, dir, "proc.sleep", `{"ms": 4000}`))
	}
	enqueueProc(t, dir, "proc.block")
	s := waitFull(t, dir, 30*time.Second, "4 tasks in 4 children", func(s control.Status) bool {
		busy := 0
		for _, p := range s.Procs {
			if p.State == "busy" {
				busy++
			}
		}
		return busy == 4
	})
	pids := procPIDs(s)
	st := d.stop()
	for _, id := range sleeps {
		if !d.doneIDs()[id] {
			t.Errorf("proc.sleep %d did not finish during the drain\n%s", id, d.output())
		}
	}
	if st.int("done") != 3 || st.int("interrupted") != 1 {
		t.Errorf("stopped record %v, want 3 done and 1 interrupted", st)
	}
	ps := d.waitFor(time.Second, "the pool's stop record", func(r record) bool {
		return strings.HasPrefix(r.msg(), "worker processes stopped")
	})
	if ps.int("terminated") != 1 {
		t.Errorf("pool stop record %v, want 1 child terminated at the deadline", ps)
	}
	waitGone(t, "the children after the stop", pids)
}

// A reload drains the children like a stop (the running task finishes in
// its old child), and the re-executed daemon starts its children from the
// new binary.
func TestIsolation_Reload(t *testing.T) {
	dir := dataDir(t)
	b, err := os.ReadFile(procBin)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(t.TempDir(), "procdaemon")
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	d := launchProgram(t, prog, dir, "--workers", "2", "--procs-min", "1", "--graceful-timeout", "20s")
	d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	running := enqueueProc(t, dir, "proc.sleep", `{"ms": 1500}`)
	s := waitFull(t, dir, 30*time.Second, "proc.sleep in a child", func(s control.Status) bool {
		return len(s.Active) == 1 && s.Active[0].PID != 0
	})
	oldPIDs := procPIDs(s)

	replaceProgram(t, prog, b)
	newInode := inode(t, prog)
	d.signal(syscall.SIGHUP)
	s = waitFull(t, dir, 60*time.Second, "generation 1 with a child", func(s control.Status) bool {
		return s.Generation == 1 && len(s.Procs) == 1 && s.Procs[0].State == "idle"
	})
	if !d.doneIDs()[running] {
		t.Errorf("the task running at the reload did not finish in its old child\n%s", d.output())
	}
	for _, p := range oldPIDs {
		if alive(p) {
			t.Errorf("old child %d still running after the reload", p)
		}
	}
	if got := inode(t, "/proc/"+strconv.Itoa(s.Procs[0].PID)+"/exe"); got != newInode {
		t.Errorf("the new child runs inode %d, want the new binary's %d", got, newInode)
	}
	if got := d.outcomeOf(enqueueProc(t, dir, "proc.work")); got != "done" {
		t.Errorf("proc.work after the reload: %s, want done", got)
	}
	d.stop()
}

func inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// 'snappea workers --procs-min/--procs-max' changes the pool while it
// runs, and the metrics count the children.
func TestIsolation_WorkersAndMetrics(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "4", "--procs-max", "2", "--metrics-addr", "127.0.0.1:0")
	addr := d.waitFor(30*time.Second, "the metrics address", isMsg("serving metrics")).str("addr")
	waitFull(t, dir, 30*time.Second, "the first child", func(s control.Status) bool { return len(s.Procs) == 1 })

	r := procCmd(t, "workers", "--dir", dir, "--procs-min", "3", "--procs-max", "4")
	if !strings.Contains(r.stderr, "now keeps 3 to 4 child processes") {
		t.Errorf("workers --procs-min 3 --procs-max 4 said %q", r.stderr)
	}
	s := waitFull(t, dir, 30*time.Second, "3 idle children", func(s control.Status) bool {
		idle := 0
		for _, p := range s.Procs {
			if p.State == "idle" {
				idle++
			}
		}
		return idle == 3
	})
	if s.ProcPool.Min != 3 || s.ProcPool.Max != 4 {
		t.Errorf("pool limits %+v, want 3 to 4", s.ProcPool)
	}
	procCmd(t, "workers", "--dir", dir, "--procs-min", "1", "--procs-max", "1")
	waitFull(t, dir, 30*time.Second, "one child left", func(s control.Status) bool { return len(s.Procs) == 1 })

	held := enqueueProc(t, dir, "proc.sleep", `{"ms": 60000}`)
	s = waitFull(t, dir, 30*time.Second, "proc.sleep in a child", func(s control.Status) bool {
		return len(s.Active) == 1 && s.Active[0].PID != 0
	})
	syscall.Kill(s.Active[0].PID, syscall.SIGKILL)
	d.outcomeOf(held)
	waitFull(t, dir, 30*time.Second, "a replacement", func(s control.Status) bool {
		return len(s.Procs) == 1 && s.Procs[0].State == "idle"
	})

	resp, err := http.Get(addr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`snappea_procs{state="idle"} 1`, "snappea_proc_deaths_total 1", "snappea_proc_restarts_total 1",
		"snappea_proc_retired_total 2", "snappea_procs_rss_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(string(body), "snappea_proc"))
		}
	}
	d.stop()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

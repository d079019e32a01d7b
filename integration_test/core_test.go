package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// taskIDs returns the task_id of every record with message msg.
func taskIDs(d *daemon, msg string) map[int64]int {
	got := map[int64]int{}
	for _, r := range d.all(isMsg(msg)) {
		got[r.int("task_id")]++
	}
	return got
}

func TestProducersInSeparateProcesses(t *testing.T) {
	const producers, each = 4, 5000
	dir := dataDir(t)
	d := startDaemon(t, dir, "--workers", "16")

	var wg sync.WaitGroup
	results := make([]result, producers)
	for i := range producers {
		wg.Go(func() {
			// One transaction per task, as web requests would.
			results[i] = snappea(t, "enqueue", "--dir", dir, "--count", fmt.Sprint(each), "snappea.noop")
		})
	}
	wg.Wait()
	enqueued := map[int64]bool{}
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("producer %d: exit %d: %s", i, r.code, r.stderr)
		}
		for _, id := range ids(t, r.stdout) {
			if enqueued[id] {
				t.Fatalf("id %d handed out twice", id)
			}
			enqueued[id] = true
		}
	}
	if len(enqueued) != producers*each {
		t.Fatalf("producers printed %d ids, want %d", len(enqueued), producers*each)
	}

	d.waitUntil(60*time.Second, "every task to finish", func() bool {
		return d.count(isMsg("task done")) >= producers*each
	})
	sum := d.stop()
	if sum.int("done") != producers*each {
		t.Errorf("stopped summary: done = %d, want %d", sum.int("done"), producers*each)
	}
	ran := taskIDs(d, "task done")
	for id, n := range ran {
		if n != 1 {
			t.Errorf("task %d ran %d times", id, n)
		}
		if !enqueued[id] {
			t.Errorf("task %d ran but was never enqueued", id)
		}
	}
	if len(ran) != len(enqueued) {
		t.Errorf("%d distinct tasks ran, want %d", len(ran), len(enqueued))
	}
	if s := getStatus(t, dir); s.Pending != 0 {
		t.Errorf("pending after the run = %d", s.Pending)
	}
}

func TestGracefulStop(t *testing.T) {
	dir := dataDir(t)
	// One batch, before the daemon starts. Claims are FIFO and never exceed
	// the free workers, so the four workers take the first four tasks (two
	// that finish within the graceful timeout, two that would run for a
	// minute) and the last five stay queued while they run.
	mustSnappea(t, "migrate", "--dir", dir)
	enq := func(n int, args string) []int64 {
		return ids(t, mustSnappea(t, "enqueue", "--dir", dir, "--batch", "--count", fmt.Sprint(n), "snappea.sleep", args).stdout)
	}
	short := enq(2, `{"ms": 2000}`)
	long := enq(2, `{"ms": 60000}`)
	queued := enq(5, `{"ms": 1}`)
	d := startDaemon(t, dir, "--workers", "4", "--graceful-timeout", "4s")
	d.waitUntil(10*time.Second, "four tasks to start", func() bool { return d.count(isMsg("task started")) == 4 })

	start := time.Now()
	d.signal(syscall.SIGTERM)
	d.waitFor(5*time.Second, "the stop to begin", isMsg("received signal, stopping"))
	// A repeated signal changes nothing. (Sent only once the first was
	// handled: the kernel merges a signal into one still pending.)
	d.signal(syscall.SIGTERM)
	if code := d.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0\n%s", code, d.output())
	}
	took := time.Since(start)
	// 4s graceful timeout, then the cancelled sleeps return at once.
	if took < 4*time.Second || took > 4*time.Second+2*time.Second {
		t.Errorf("stopped after %v, want the 4s graceful timeout plus a small margin", took)
	}
	sum := d.waitFor(time.Second, "the stopped record", isMsg("stopped"))
	if sum.int("done") != 2 || sum.int("interrupted") != 2 {
		t.Errorf("summary done=%d interrupted=%d, want 2 and 2\n%s", sum.int("done"), sum.int("interrupted"), d.output())
	}
	outcome := map[int64]string{}
	for _, r := range d.all(isMsg("task done")) {
		outcome[r.int("task_id")] = r.str("outcome")
	}
	for _, id := range short {
		if outcome[id] != "done" {
			t.Errorf("short task %d: outcome %q, want done", id, outcome[id])
		}
	}
	for _, id := range long {
		if outcome[id] != "interrupted" {
			t.Errorf("long task %d: outcome %q, want interrupted", id, outcome[id])
		}
	}
	started := taskIDs(d, "task started")
	for _, id := range queued {
		if started[id] != 0 {
			t.Errorf("queued task %d started after the stop", id)
		}
	}
	if d.count(isMsg("already stopping; the graceful deadline is unchanged")) != 1 {
		t.Error("the second TERM was not logged as changing nothing")
	}
	if s := getStatus(t, dir); s.Pending != 5 || s.DaemonPID != 0 {
		t.Errorf("after stop: %+v, want the 5 queued tasks still pending and no daemon", s)
	}
}

func TestKill9LosesOnlyStartedTasks(t *testing.T) {
	dir := dataDir(t)
	const n = 3000
	enqueued := ids(t, mustSnappea(t, "enqueue", "--dir", dir, "--count", fmt.Sprint(n), "--batch", "snappea.sleep", `{"ms": 2}`).stdout)
	d1 := startDaemon(t, dir, "--workers", "8")
	d1.waitUntil(30*time.Second, "some tasks to finish", func() bool { return d1.count(isMsg("task done")) >= 300 })
	d1.signal(syscall.SIGKILL)
	d1.wait(10 * time.Second)
	started1 := taskIDs(d1, "task started")
	done1 := taskIDs(d1, "task done")
	if len(done1) >= n {
		t.Fatalf("all tasks finished before the kill; nothing tested")
	}

	// The stale pidfile and lock file of the killed daemon do not block it.
	d2 := startDaemon(t, dir, "--workers", "8")
	waitStatus(t, dir, 60*time.Second, "the queue to drain", func(s status) bool { return s.Pending == 0 })
	d2.waitUntil(30*time.Second, "running tasks to finish", func() bool {
		return d2.count(isMsg("task done")) == d2.count(isMsg("task started"))
	})
	d2.stop()
	done2 := taskIDs(d2, "task done")

	// Claims are FIFO, so the first daemon claimed a prefix of the ids and
	// the second everything after it. A lost task must lie in that prefix:
	// claimed (deleted) by the killed daemon, running or about to, never
	// one still queued. It may not have logged "task started" yet, if the
	// kill came between the claim's commit and the log record.
	firstOfD2 := int64(1 << 62)
	for id := range done2 {
		firstOfD2 = min(firstOfD2, id)
	}
	lost := 0
	for _, id := range enqueued {
		ran := done1[id] + done2[id]
		if ran > 1 {
			t.Errorf("task %d ran %d times", id, ran)
		}
		if ran == 0 {
			lost++
			if id > firstOfD2 {
				t.Errorf("task %d was lost, but it was still queued at the kill (the restarted daemon began at %d)", id, firstOfD2)
			}
		}
		if id >= firstOfD2 && done2[id] != 1 {
			t.Errorf("task %d, queued at the kill, did not run after the restart", id)
		}
	}
	for id := range done2 {
		if started1[id] != 0 {
			t.Errorf("task %d started before the kill and again after it", id)
		}
	}
	t.Logf("%d of %d tasks had finished at the kill; %d lost (running at the kill)", len(done1), n, lost)
}

func TestSecondDaemonRefused(t *testing.T) {
	dir := dataDir(t)
	d1 := startDaemon(t, dir)
	d2 := launchDaemon(t, dir)
	if code := d2.wait(30 * time.Second); code != 4 {
		t.Fatalf("second daemon exit code %d, want 4\n%s", code, d2.output())
	}
	msg := d2.waitFor(time.Second, "the refusal", func(r record) bool { return r.str("level") == "ERROR" })
	if !strings.Contains(msg.msg(), fmt.Sprintf("pid %d", d1.pid())) {
		t.Errorf("refusal %q does not name the running pid %d", msg.msg(), d1.pid())
	}
	if s := getStatus(t, dir); s.DaemonPID != d1.pid() {
		t.Errorf("status daemon_pid = %d, want %d", s.DaemonPID, d1.pid())
	}

	// kill -9 leaves a stale pidfile; it must not block the next start.
	d1.signal(syscall.SIGKILL)
	d1.wait(10 * time.Second)
	pidBytes, err := os.ReadFile(filepath.Join(dir, "snappea.pid"))
	if err != nil || strings.TrimSpace(string(pidBytes)) != fmt.Sprint(d1.pid()) {
		t.Fatalf("pidfile after kill -9 = %q, %v; want the dead pid (a stale pidfile)", pidBytes, err)
	}
	if s := getStatus(t, dir); s.DaemonPID != 0 {
		t.Errorf("status after kill -9: daemon_pid = %d, want 0", s.DaemonPID)
	}
	d3 := startDaemon(t, dir)
	if s := getStatus(t, dir); s.DaemonPID != d3.pid() {
		t.Errorf("status daemon_pid = %d, want %d", s.DaemonPID, d3.pid())
	}
	d3.stop()
	if _, err := os.Stat(filepath.Join(dir, "snappea.pid")); !os.IsNotExist(err) {
		t.Errorf("pidfile left after a clean stop: %v", err)
	}
}

func TestStopCommand(t *testing.T) {
	dir := dataDir(t)
	if r := snappea(t, "stop", "--dir", dir); r.code != 1 || !strings.Contains(r.stderr, "no daemon is running") {
		t.Errorf("stop with no daemon: exit %d %q", r.code, r.stderr)
	}
	d := startDaemon(t, dir)
	mustSnappea(t, "stop", "--wait", "--timeout", "30s", "--dir", dir)
	select {
	case <-d.done:
	default:
		t.Fatal("stop --wait returned while the daemon was still running")
	}
	if code := d.exitCode(); code != 0 {
		t.Errorf("daemon exit code %d after stop", code)
	}
}

func TestWakeupDirectoryReplaced(t *testing.T) {
	dir := dataDir(t)
	// A poll interval of an hour: only wakeups can find the tasks in time.
	d := startDaemon(t, dir, "--poll-interval", "1h")
	wake := filepath.Join(dir, "wakeup")
	run := func(what string) {
		t.Helper()
		id := ids(t, mustSnappea(t, "enqueue", "--dir", dir, "snappea.echo", fmt.Sprintf(`{"msg":%q}`, what)).stdout)[0]
		d.waitFor(15*time.Second, what, func(r record) bool { return r.msg() == "task done" && r.int("task_id") == id })
	}
	run("before")

	if err := os.RemoveAll(wake); err != nil {
		t.Fatal(err)
	}
	// The daemon may recreate it first: it re-watches a deleted directory.
	if err := os.MkdirAll(wake, 0o700); err != nil {
		t.Fatal(err)
	}
	run("after the directory was deleted and recreated")

	if err := os.Rename(wake, wake+".old"); err != nil {
		t.Fatal(err)
	}
	run("after the directory was renamed away") // enqueue recreates it

	if err := os.RemoveAll(wake); err != nil {
		t.Fatal(err)
	}
	run("after the directory was deleted for good")
	d.stop()
}

func TestIdleDaemonUsesNoCPU(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir, "--log-level", "info")
	before := cpuTicks(t, d.pid())
	const window = 3 * time.Second
	time.Sleep(window) // a measurement window, not synchronisation
	used := cpuTicks(t, d.pid()) - before
	// Clock ticks are 10ms: a busy loop would use ~300 in 3s.
	if used > 5 {
		t.Errorf("idle daemon used %d clock ticks of CPU in %v", used, window)
	}
	t.Logf("idle daemon used %d clock ticks (10ms each) in %v", used, window)
	d.stop()
}

// cpuTicks reads utime+stime of pid from /proc, in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the ")" that ends the command name; utime and stime are
	// the 14th and 15th fields of the whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var u, s int64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return u + s
}

package integration_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The ledger of tasks in flight, end to end: tasks running when their
// daemon is killed are listed as lost by the next daemon, exactly those;
// a task the daemon is told to retry when lost (--retry-lost) runs again,
// its attempt counted; tasks still running at a graceful stop's deadline
// are recorded lost by the stopping daemon itself.

const (
	lostDied        = "lost: the daemon died while it ran"
	lostInterrupted = "lost: still running at the graceful stop's deadline; the daemon stopped without its result"
)

// backendArgs are the data flags of a test on SQLite (none) or on
// PostgreSQL.
type backendCase struct {
	name string
	args func(t *testing.T) []string
	// gone is how long the next daemon may take to find the killed one's
	// tasks: at once on SQLite (the lock), after the heartbeats on
	// PostgreSQL (15 s gone, then the next heartbeat).
	gone time.Duration
}

var backendCases = []backendCase{
	{"SQLite", func(*testing.T) []string { return nil }, 30 * time.Second},
	{"PostgreSQL", func(t *testing.T) []string { return newPGDatabase(t).args() }, 60 * time.Second},
}

func failedListOn(t *testing.T, dir string, db []string) []failedRecord {
	t.Helper()
	r := mustSnappea(t, append([]string{"failed", "list", "--json", "--dir", dir}, db...)...)
	var out []failedRecord
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("failed list --json printed %q: %v", r.stdout, err)
	}
	return out
}

func lostCount(t *testing.T, dir string, db []string) int64 {
	t.Helper()
	r := mustSnappea(t, append([]string{"status", "--json", "--dir", dir}, db...)...)
	var s struct {
		Lost int64 `json:"lost"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	return s.Lost
}

// removedFromLedger is how many finished tasks' in-flight records d has
// removed.
func removedFromLedger(d *daemon) int64 {
	n := int64(0)
	for _, r := range d.all(isMsg("finished tasks removed from the ledger")) {
		n += r.int("count")
	}
	return n
}

func TestLedger_kill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills daemons and waits for their tasks to be found lost")
	}
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			db := bc.args(t)
			dir := dataDir(t)
			enqueue := func(n int, task, args string) []int64 {
				t.Helper()
				return ids(t, mustSnappea(t, append(append([]string{"enqueue", "--dir", dir}, db...),
					"--count", fmt.Sprint(n), task, args)...).stdout)
			}
			run := func(args ...string) *daemon {
				t.Helper()
				return startDaemon(t, dir, append(append([]string{"--workers", "3"}, db...), args...)...)
			}
			started := func(d *daemon, want []int64, attempt int64) {
				t.Helper()
				d.waitUntil(30*time.Second, fmt.Sprintf("tasks %v to start", want), func() bool {
					for _, id := range want {
						if d.count(func(r record) bool {
							return r.msg() == "task started" && r.int("task_id") == id
						}) == 0 {
							return false
						}
					}
					return true
				})
			}

			// Three quick tasks finish; three long ones are running, and two
			// more wait in the queue, when the daemon is killed.
			quick := enqueue(3, "snappea.noop", "{}")
			long := enqueue(3, "snappea.sleep", `{"ms": 600000}`)
			queued := enqueue(2, "snappea.noop", "{}")
			d1 := run()
			started(d1, long, 1)
			// Their in-flight records removed (in batches, shortly after).
			d1.waitUntil(30*time.Second, "the quick tasks to finish and leave the ledger", func() bool {
				return removedFromLedger(d1) == int64(len(quick))
			})
			d1.signal(syscall.SIGKILL)
			d1.wait(10 * time.Second)

			d2 := run()
			d2.waitUntil(bc.gone, "the killed daemon's tasks to be recorded lost", func() bool {
				return d2.count(isMsg("task lost; recorded failed")) >= len(long)
			})
			var lostIDs []int64
			for _, f := range failedListOn(t, dir, db) {
				if f.Error != lostDied || f.Task != "snappea.sleep" || f.Attempts != 1 {
					t.Errorf("failed record %+v, want snappea.sleep, attempt 1, error %q", f, lostDied)
				}
				lostIDs = append(lostIDs, f.TaskID)
			}
			slices.Sort(lostIDs)
			if !slices.Equal(lostIDs, long) {
				t.Errorf("failed list after kill -9: tasks %v recorded lost, want exactly the running %v", lostIDs, long)
			}
			if n := lostCount(t, dir, db); n != int64(len(long)) {
				t.Errorf("status lost = %d, want %d", n, len(long))
			}
			d2.waitUntil(30*time.Second, "the queued tasks to run and leave the ledger", func() bool {
				done := taskIDs(d2, "task done")
				return done[queued[0]] == 1 && done[queued[1]] == 1 && removedFromLedger(d2) == int64(len(queued))
			})

			// Lost again, with --retry-lost: enqueued again as attempt 2.
			again := enqueue(2, "snappea.sleep", `{"ms": 600000}`)
			started(d2, again, 1)
			d2.signal(syscall.SIGKILL)
			d2.wait(10 * time.Second)
			d3 := run("--retry-lost", "snappea.sleep", "--graceful-timeout", "100ms")
			d3.waitUntil(bc.gone, "the lost tasks to be enqueued again", func() bool {
				return d3.count(isMsg("lost task enqueued again (RetryLost)")) >= len(again)
			})
			var retries []int64
			for _, r := range d3.all(isMsg("lost task enqueued again (RetryLost)")) {
				if r.str("cause") != lostDied || !slices.Contains(again, r.int("task_id")) {
					t.Errorf("retry record %v, want one of tasks %v with cause %q", r, again, lostDied)
				}
				retries = append(retries, r.int("retry_id"))
			}
			d3.waitUntil(30*time.Second, "the retries to start", func() bool {
				for _, id := range retries {
					if d3.count(func(r record) bool { return r.msg() == "task started" && r.int("task_id") == id }) == 0 {
						return false
					}
				}
				return true
			})

			// A stop at the graceful deadline: the retries are lost by
			// this daemon's own stop, and enqueued again once more.
			d3.signal(syscall.SIGTERM)
			if code := d3.wait(30 * time.Second); code != 0 {
				t.Fatalf("daemon exit %d after TERM\n%s", code, d3.output())
			}
			if n := d3.count(func(r record) bool {
				return r.msg() == "lost task enqueued again (RetryLost)" && r.str("cause") == lostInterrupted
			}); n != len(retries) {
				t.Errorf("%d tasks enqueued again at the stop, want the %d still running\n%s", n, len(retries), d3.output())
			}

			// Without --retry-lost, the third attempts are recorded lost at
			// the stop.
			d4 := run("--graceful-timeout", "100ms")
			d4.waitUntil(30*time.Second, "the third attempts to start", func() bool {
				return d4.count(isMsg("task started")) == len(retries)
			})
			d4.signal(syscall.SIGTERM)
			if code := d4.wait(30 * time.Second); code != 0 {
				t.Fatalf("daemon exit %d after TERM\n%s", code, d4.output())
			}
			interrupted := 0
			for _, f := range failedListOn(t, dir, db) {
				if f.Error == lostInterrupted {
					interrupted++
					if f.Attempts != 3 {
						t.Errorf("interrupted record %+v, want attempt 3", f)
					}
				}
			}
			if interrupted != len(retries) {
				t.Errorf("%d failed records of tasks interrupted at the stop, want %d", interrupted, len(retries))
			}
			if n := lostCount(t, dir, db); n != int64(len(long)+len(retries)) {
				t.Errorf("status lost = %d, want %d", n, len(long)+len(retries))
			}
		})
	}
}

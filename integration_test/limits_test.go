package integration_test

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Limits end to end: under load from several producer processes, a task
// name with --max-running never has more running at once, and tasks
// sharing a serial key run one at a time in the order queued, while the
// other tasks go ahead. On PostgreSQL two daemons share the limits.

// span is one task's run as its daemon logged it: from "task started" to
// "task done". The ledger holds the task from before the first record to
// after the second, so spans that overlap more than a limit allows mean
// the limit was broken.
type span struct {
	id         int64
	task       string
	start, end time.Time
}

func spans(t *testing.T, ds ...*daemon) map[int64]*span {
	t.Helper()
	out := map[int64]*span{}
	for _, d := range ds {
		for _, r := range d.all(func(r record) bool { return r.msg() == "task started" || r.msg() == "task done" }) {
			at, err := time.Parse(time.RFC3339Nano, r.str("time"))
			if err != nil {
				t.Fatalf("record %v: time: %v", r, err)
			}
			s := out[r.int("task_id")]
			if s == nil {
				s = &span{id: r.int("task_id"), task: r.str("task")}
				out[s.id] = s
			}
			if r.msg() == "task started" {
				s.start = at
			} else {
				s.end = at
			}
		}
	}
	return out
}

// mostAtOnce is the largest number of spans of pick running at one time.
// A span that ends at the instant another starts does not overlap it.
func mostAtOnce(all map[int64]*span, pick func(*span) bool) int {
	type event struct {
		at    time.Time
		delta int
	}
	var evs []event
	for _, s := range all {
		if pick(s) {
			evs = append(evs, event{s.start, 1}, event{s.end, -1})
		}
	}
	slices.SortFunc(evs, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.delta, b.delta) // ends first
	})
	most, n := 0, 0
	for _, e := range evs {
		n += e.delta
		most = max(most, n)
	}
	return most
}

func TestLimits_underLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemons and producer processes")
	}
	for _, bc := range backendCases {
		t.Run(bc.name, func(t *testing.T) {
			db := bc.args(t)
			daemons := 1
			if bc.name == "PostgreSQL" {
				daemons = 2 // the limits hold across them
			}
			var ds []*daemon
			for range daemons {
				dir := dataDir(t)
				ds = append(ds, launchProgram(t, serviceBin, dir,
					append([]string{"--workers", "8", "--max-running", "snappea.sleep=2"}, db...)...))
			}
			for _, d := range ds {
				d.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
			}
			dir := ds[0].dir

			const limited, serial, free = 3 * 15, 2 * 15, 30
			var wg sync.WaitGroup
			var mu sync.Mutex
			var serialIDs []int64
			producer := func(args ...string) {
				defer wg.Done()
				r := mustSnappea(t, append(append([]string{"enqueue", "--dir", dir}, db...), args...)...)
				if slices.Contains(args, "--serial-key") {
					mu.Lock()
					serialIDs = append(serialIDs, ids(t, r.stdout)...)
					mu.Unlock()
				}
			}
			for range 3 {
				wg.Add(1)
				go producer("--count", "15", "snappea.sleep", `{"ms": 15}`)
			}
			for range 2 {
				wg.Add(1)
				go producer("--no-check", "--serial-key", "project:42", "--count", "15", "test.deaf", `{"ms": 5}`)
			}
			wg.Add(1)
			go producer("--count", fmt.Sprint(free), "snappea.noop", "{}")
			wg.Wait()

			total := limited + serial + free
			for _, d := range ds {
				d.waitUntil(60*time.Second, "every task to run", func() bool {
					n := 0
					for _, d := range ds {
						n += d.count(isMsg("task done"))
					}
					return n >= total
				})
			}
			all := spans(t, ds...)
			if len(all) != total {
				t.Fatalf("%d tasks ran, want %d", len(all), total)
			}
			if n := mostAtOnce(all, func(s *span) bool { return s.task == "snappea.sleep" }); n > 2 {
				t.Errorf("%d tasks of snappea.sleep ran at once, limit 2", n)
			} else {
				t.Logf("at most %d tasks of snappea.sleep at once (limit 2)", n)
			}
			if n := mostAtOnce(all, func(s *span) bool { return s.task == "test.deaf" }); n != 1 {
				t.Errorf("%d tasks of serial key project:42 ran at once, want 1", n)
			}
			// One at a time, in the order queued.
			slices.Sort(serialIDs)
			for i := 1; i < len(serialIDs); i++ {
				prev, cur := all[serialIDs[i-1]], all[serialIDs[i]]
				if cur.start.Before(prev.end) {
					t.Errorf("serial task %d started at %v, before task %d, queued before it, ended at %v",
						cur.id, cur.start, prev.id, prev.end)
				}
			}
		})
	}
}

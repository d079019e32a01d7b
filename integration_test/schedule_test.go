package integration_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/snappea/snappea/control"
)

// echoMsg is what the scheduled snappea.echo logs at each tick.
const echoMsg = "scheduled echo"

// everySecond writes a schedules file with one schedule, "beat", that
// enqueues snappea.echo every second.
func everySecond(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedules.json")
	content := `[{"name": "beat", "spec": "@every 1s", "task": "snappea.echo", "args": {"msg": "` + echoMsg + `"}}]`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tick is one "schedule fired" record: the tick and the task it enqueued.
type tick struct {
	at time.Time
	id int64
}

// ticks returns the ticks the daemon logged for the schedule beat.
func ticks(t testing.TB, d *daemon) []tick {
	t.Helper()
	var out []tick
	for _, r := range d.all(func(r record) bool { return r.msg() == "schedule fired" && r.str("schedule") == "beat" }) {
		at, err := time.Parse(time.RFC3339Nano, r.str("tick"))
		if err != nil {
			t.Fatalf("schedule fired with tick %q: %v", r.str("tick"), err)
		}
		out = append(out, tick{at: at, id: r.int("task_id")})
	}
	return out
}

// echoed counts the scheduled echoes the daemon ran, by task id.
func echoed(d *daemon) map[int64]int {
	got := map[int64]int{}
	for _, r := range d.all(isMsg(echoMsg)) {
		got[r.int("task_id")]++
	}
	return got
}

// waitTicks waits until the daemon has fired n ticks and run their tasks.
func waitTicks(t testing.TB, d *daemon, n int) []tick {
	t.Helper()
	var got []tick
	d.waitUntil(30*time.Second, "scheduled ticks to fire and run", func() bool {
		got = ticks(t, d)
		if len(got) < n {
			return false
		}
		ran := echoed(d)
		for _, tk := range got[:n] {
			if ran[tk.id] == 0 {
				return false
			}
		}
		return true
	})
	return got
}

// storedSchedules runs 'snappea schedules --json' with the file.
func storedSchedules(t testing.TB, dir, file string) []control.Schedule {
	t.Helper()
	r := mustSnappea(t, "schedules", "--json", "--dir", dir, "--schedules", file)
	var out []control.Schedule
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("schedules --json printed %q: %v", r.stdout, err)
	}
	return out
}

// checkOnce fails the test if any tick was taken twice, any task id
// handed out twice, or any task run twice, across all the daemons.
func checkOnce(t testing.TB, ds ...*daemon) []tick {
	t.Helper()
	seenTick := map[int64]bool{}
	seenID := map[int64]bool{}
	ran := map[int64]int{}
	var all []tick
	for _, d := range ds {
		for _, tk := range ticks(t, d) {
			if seenTick[tk.at.UnixNano()] {
				t.Errorf("tick %v fired twice", tk.at)
			}
			if seenID[tk.id] {
				t.Errorf("task id %d enqueued for two ticks", tk.id)
			}
			seenTick[tk.at.UnixNano()], seenID[tk.id] = true, true
			all = append(all, tk)
		}
		for id, n := range echoed(d) {
			ran[id] += n
		}
	}
	for id, n := range ran {
		if n != 1 {
			t.Errorf("scheduled task %d ran %d times", id, n)
		}
	}
	for i := 1; i < len(all); i++ {
		if !all[i].at.After(all[i-1].at) {
			t.Errorf("tick %v fired after tick %v", all[i].at, all[i-1].at)
		}
	}
	return all
}

func TestSchedule_EveryTick(t *testing.T) {
	dir := dataDir(t)
	file := everySecond(t)
	d1 := startDaemon(t, dir, "--schedules", file)
	got := waitTicks(t, d1, 3)
	for i := 1; i < len(got); i++ {
		if step := got[i].at.Sub(got[0].at); step%time.Second != 0 || step <= 0 {
			t.Errorf("tick %v is not a whole number of seconds after %v", got[i].at, got[0].at)
		}
	}

	// status lists the schedule, due after the last tick.
	st := fullStatus(t, dir)
	if len(st.Schedules) != 1 || st.Schedules[0].Name != "beat" || st.Schedules[0].Task != "snappea.echo" ||
		st.Schedules[0].Spec != "@every 1s" || st.Schedules[0].Next.Before(got[len(got)-1].at) {
		t.Errorf("status schedules = %+v, want beat due after its last tick %v", st.Schedules, got[len(got)-1].at)
	}

	// A reload re-executes the daemon: the new program goes on from the
	// stored due time.
	before := len(ticks(t, d1))
	d1.signal(syscall.SIGHUP)
	d1.waitUntil(30*time.Second, "the reloaded daemon to start", func() bool {
		return d1.count(isMsg("foreman started")) >= 2
	})
	waitTicks(t, d1, before+2)
	d1.stop()
	got = checkOnce(t, d1)
	last := got[len(got)-1].at

	// The stored next run survives the stop.
	stored := storedSchedules(t, dir, file)
	if len(stored) != 1 || !stored[0].Next.Equal(last.Add(time.Second)) || !stored[0].Last.Equal(last) {
		t.Fatalf("stored after the stop: %+v, want next %v and last %v", stored, last.Add(time.Second), last)
	}

	// A restart does not fire a tick already taken, and the ticks it
	// missed fire once.
	d2 := startDaemon(t, dir, "--schedules", file)
	got2 := waitTicks(t, d2, 2)
	if got2[0].at.Before(stored[0].Next) {
		t.Errorf("after the restart the first tick was %v, before the stored next run %v", got2[0].at, stored[0].Next)
	}
	d2.stop()
	checkOnce(t, d1, d2)
}

// Daemons on one data directory in turn, each starting as the one before
// exits (cleanly or killed), never fire a tick twice.
func TestSchedule_DaemonsInTurn(t *testing.T) {
	dir := dataDir(t)
	file := everySecond(t)
	var ds []*daemon
	for round := range 4 {
		d := startDaemon(t, dir, "--schedules", file)
		ds = append(ds, d)
		waitTicks(t, d, 2)
		if round == 2 {
			// A crash: whatever a tick committed, task and due time, stays.
			d.signal(syscall.SIGKILL)
			d.wait(30 * time.Second)
			continue
		}
		d.stop()
	}
	all := checkOnce(t, ds...)
	if len(all) < 8 {
		t.Errorf("%d ticks fired in four rounds, want at least 8", len(all))
	}
	// Another daemon cannot start while one runs: they take turns.
	d := startDaemon(t, dir, "--schedules", file)
	if r := snappea(t, "run", "--dir", dir, "--schedules", file); r.code != 4 {
		t.Errorf("a second daemon on the same directory: exit %d, want 4\n%s", r.code, r.stderr)
	}
	waitTicks(t, d, 1)
	d.stop()
	checkOnce(t, append(ds, d)...)
}

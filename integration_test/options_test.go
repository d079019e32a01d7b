package integration_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordTime is when the daemon logged r.
func recordTime(t testing.TB, r record) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, r.str("time"))
	if err != nil {
		t.Fatalf("record %v: time: %v", r, err)
	}
	return ts
}

// isTask matches the records with message msg about the task id.
func isTask(msg string, id int64) func(record) bool {
	return func(r record) bool { return r.msg() == msg && r.int("task_id") == id }
}

// enqueueOne runs `snappea enqueue` with args and returns the one id it
// printed.
func enqueueOne(t testing.TB, dir string, args ...string) int64 {
	t.Helper()
	r := mustSnappea(t, append([]string{"enqueue", "--dir", dir}, args...)...)
	got := ids(t, r.stdout)
	if len(got) != 1 {
		t.Fatalf("enqueue %v printed ids %v, want one\n%s", args, got, r.stderr)
	}
	return got[0]
}

// failedJSON is an entry of `snappea failed list --json`.
type failedJSON struct {
	ID          int64           `json:"id"`
	TaskID      int64           `json:"task_id"`
	Task        string          `json:"task"`
	Error       string          `json:"error"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts"`
	FailedAt    string          `json:"failed_at"`
	Args        json.RawMessage `json:"args"`
}

func failedList(t testing.TB, dir string) []failedJSON {
	t.Helper()
	r := mustSnappea(t, "failed", "list", "--json", "--dir", dir)
	var out []failedJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out == nil {
		t.Fatalf("failed list --json printed %q, want a JSON array: %v", r.stdout, err)
	}
	for _, f := range out {
		if _, err := time.Parse(time.RFC3339, f.FailedAt); err != nil {
			t.Errorf("failed_at %q is not RFC 3339: %v", f.FailedAt, err)
		}
	}
	return out
}

func TestTaskOptionUsageErrors(t *testing.T) {
	tests := []usageError{
		{name: "negative delay", args: []string{"enqueue", "--dir", "DIR", "--delay", "-1s", "snappea.noop"}, want: []string{"delay", "want zero or more"}},
		{name: "delay not a duration", args: []string{"enqueue", "--dir", "DIR", "--delay", "soon", "snappea.noop"}, want: []string{"delay", "duration"}},
		{name: "bad time", args: []string{"enqueue", "--dir", "DIR", "--at", "tomorrow", "snappea.noop"}, want: []string{"-at", "RFC 3339"}},
		{name: "time without offset", args: []string{"enqueue", "--dir", "DIR", "--at", "2030-01-02T15:04:05", "snappea.noop"}, want: []string{"-at", "RFC 3339"}},
		{name: "at and delay", args: []string{"enqueue", "--dir", "DIR", "--at", "2030-01-02T15:04:05Z", "--delay", "1s", "snappea.noop"}, want: []string{"--at", "--delay"}},
		{name: "priority not a number", args: []string{"enqueue", "--dir", "DIR", "--priority", "high", "snappea.noop"}, want: []string{"priority"}},
		{name: "negative timeout", args: []string{"enqueue", "--dir", "DIR", "--timeout", "-5s", "snappea.noop"}, want: []string{"timeout", "want zero or more"}},
		{name: "negative max attempts", args: []string{"enqueue", "--dir", "DIR", "--max-attempts", "-1", "snappea.noop"}, want: []string{"max-attempts", "want zero or more"}},
		{name: "bad environment twin", env: []string{"SNAPPEA_MAX_BACKLOG=lots"}, args: []string{"enqueue", "--dir", "DIR", "snappea.noop"}, want: []string{"SNAPPEA_MAX_BACKLOG", "lots", "want zero or more, a whole number"}},
		{name: "cancel without ID", args: []string{"cancel", "--dir", "DIR"}, want: []string{"ID"}},
		{name: "cancel bad ID", args: []string{"cancel", "--dir", "DIR", "twelve"}, want: []string{"twelve"}},
		{name: "cancel zero", args: []string{"cancel", "--dir", "DIR", "0"}, want: []string{`"0"`}},
		{name: "failed alone", args: []string{"failed", "--dir", "DIR"}, want: []string{"list", "show", "retry", "purge"}},
		{name: "failed bad subcommand", args: []string{"failed", "--dir", "DIR", "frob"}, want: []string{`"frob"`, "list", "show", "retry", "purge"}},
		{name: "failed show without ID", args: []string{"failed", "show", "--dir", "DIR"}, want: []string{"ID"}},
		{name: "failed show bad ID", args: []string{"failed", "show", "--dir", "DIR", "x1"}, want: []string{"x1"}},
		{name: "failed retry nothing", args: []string{"failed", "retry", "--dir", "DIR"}, want: []string{"--all"}},
		{name: "failed retry ID and all", args: []string{"failed", "retry", "--dir", "DIR", "--all", "3"}, want: []string{"--all"}},
		{name: "failed list with a flag of retry", args: []string{"failed", "list", "--dir", "DIR", "--all"}, want: []string{"all"}},
		{name: "failed flag before another's subcommand", args: []string{"failed", "--dir", "DIR", "--all", "list"}, want: []string{"--all"}},
		{name: "failed purge with an argument", args: []string{"failed", "purge", "--dir", "DIR", "7"}, want: []string{"7"}},
	}
	runUsageErrors(t, tests)
}

func TestFailedAndCancelWithoutDatabase(t *testing.T) {
	dir := dataDir(t)
	for _, args := range [][]string{{"failed", "list"}, {"failed", "purge"}, {"cancel", "3"}} {
		r := snappea(t, append(args, "--dir", dir)...)
		if r.code != 1 || !strings.Contains(r.stderr, "--dir") {
			t.Errorf("%v without a database: exit %d, %q; want 1 and a hint at --dir", args, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the data directory was created: %v", err)
	}
}

func TestEnqueueDelayAndAt(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)

	const delay, at = 2 * time.Second, 2500 * time.Millisecond
	before := time.Now()
	delayed := enqueueOne(t, dir, "--delay", delay.String(), "snappea.noop")
	afterDelayed := time.Now()
	due := time.Now().Add(at)
	scheduled := enqueueOne(t, dir, "--at", due.Format(time.RFC3339Nano), "snappea.noop")

	check := func(id int64, earliest, latest time.Time) {
		t.Helper()
		r := d.waitFor(10*time.Second, fmt.Sprintf("task %d to start", id), isTask("task started", id))
		started := recordTime(t, r)
		t.Logf("task %d started %v after it was due at the earliest", id, started.Sub(earliest))
		// The log's times are cut to the millisecond.
		if started.Before(earliest.Truncate(time.Millisecond)) {
			t.Errorf("task %d started %v before it was due", id, earliest.Sub(started))
		}
		// The aim is within 0.5s; the bound leaves room for a loaded machine.
		if started.After(latest) {
			t.Errorf("task %d started %v after it was due", id, started.Sub(earliest))
		}
	}
	check(delayed, before.Add(delay), afterDelayed.Add(delay+time.Second))
	check(scheduled, due, due.Add(time.Second))
}

func TestEnqueuePriority(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir, "--workers", "1")
	mustSnappea(t, "pause", "--dir", dir)

	want := map[int64]string{}
	for _, p := range []struct{ name, priority string }{
		{"default", ""}, {"low", "-5"}, {"high", "10"}, {"mid-a", "5"}, {"mid-b", "5"},
	} {
		args := []string{"snappea.echo", fmt.Sprintf(`{"msg": %q}`, p.name)}
		if p.priority != "" {
			args = append([]string{"--priority", p.priority}, args...)
		}
		want[enqueueOne(t, dir, args...)] = p.name
	}
	mustSnappea(t, "resume", "--dir", dir)
	d.waitUntil(10*time.Second, "every task to start", func() bool { return d.count(isMsg("task started")) == len(want) })

	var order []string
	for _, r := range d.all(isMsg("task started")) {
		order = append(order, want[r.int("task_id")])
	}
	if exp := []string{"high", "mid-a", "mid-b", "default", "low"}; !slices.Equal(order, exp) {
		t.Errorf("tasks started in the order %v, want %v", order, exp)
	}
}

func TestEnqueueTimeout(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	id := enqueueOne(t, dir, "--timeout", "1s", "snappea.sleep", `{"ms": 60000}`)

	started := recordTime(t, d.waitFor(10*time.Second, "the task to start", isTask("task started", id)))
	failed := d.waitFor(10*time.Second, "the task to time out", isTask("task failed", id))
	if took := recordTime(t, failed).Sub(started); took < time.Second || took > 3*time.Second {
		t.Errorf("the task failed %v after it started, want its 1s timeout", took)
	}
	if err := failed.str("err"); !strings.Contains(err, "timed out after 1s") {
		t.Errorf("error %q does not say it timed out after 1s", err)
	}

	fails := failedList(t, dir)
	if len(fails) != 1 || fails[0].TaskID != id || fails[0].Task != "snappea.sleep" || !strings.Contains(fails[0].Error, "timed out") {
		t.Fatalf("failed list: %+v, want task %d that timed out", fails, id)
	}
	if fails[0].Args != nil {
		t.Errorf("failed list shows the arguments (%s); only show should", fails[0].Args)
	}
	r := mustSnappea(t, "failed", "list", "--dir", dir)
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+%d\s+snappea\.sleep\s+1\s.*timed out`, fails[0].ID, id)).MatchString(r.stdout) {
		t.Errorf("failed list:\n%s\nwant a row for failure %d of task %d", r.stdout, fails[0].ID, id)
	}
}

func TestRetriesThenFailedRetry(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	first := enqueueOne(t, dir, "--max-attempts", "3", "snappea.fail", `{"msg": "boom"}`)

	// Follow the attempts: each retry is a new task, named by retry_id.
	id := first
	var starts []time.Time
	var waits []time.Duration
	for attempt := 1; attempt <= 3; attempt++ {
		starts = append(starts, recordTime(t, d.waitFor(10*time.Second, fmt.Sprintf("attempt %d to start", attempt), isTask("task started", id))))
		if attempt == 3 {
			break
		}
		r := d.waitFor(10*time.Second, fmt.Sprintf("attempt %d to be retried", attempt), isTask("task failed; will retry", id))
		waits = append(waits, r.duration("retry_in"))
		id = r.int("retry_id")
	}
	last := d.waitFor(10*time.Second, "the last attempt to fail", isTask("task failed; no attempts left", id))
	if last.int("attempt") != 3 || last.int("max_attempts") != 3 {
		t.Errorf("last failure: attempt %d of %d, want 3 of 3", last.int("attempt"), last.int("max_attempts"))
	}
	// The default backoff: 1s doubling per attempt, less a random half.
	for i, w := range waits {
		lo, hi := time.Second<<i/2, time.Second<<i
		if w < lo || w > hi {
			t.Errorf("backoff after attempt %d: %v, want between %v and %v", i+1, w, lo, hi)
		}
		if gap := starts[i+1].Sub(starts[i]); gap < w || gap > w+time.Second {
			t.Errorf("attempt %d started %v after attempt %d, want its backoff %v and little more", i+2, gap, i+1, w)
		}
	}
	if n := d.count(func(r record) bool { return r.msg() == "task started" }); n != 3 {
		t.Errorf("%d attempts started, want 3", n)
	}

	fails := failedList(t, dir)
	if len(fails) != 1 {
		t.Fatalf("failed list: %+v, want one entry", fails)
	}
	f := fails[0]
	if f.TaskID != id || f.Attempts != 3 || f.MaxAttempts != 3 || f.Error != "boom" || f.Task != "snappea.fail" {
		t.Errorf("failed list: %+v, want task %d, snappea.fail, boom, attempts 3 of 3", f, id)
	}

	// show gives the arguments, on request.
	r := mustSnappea(t, "failed", "show", "--dir", dir, fmt.Sprint(f.ID))
	for _, want := range []string{`{"msg": "boom"}`, "boom", "snappea.fail", "3 of 3", fmt.Sprint(id)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("failed show:\n%s\ndoes not show %s", r.stdout, want)
		}
	}
	r = mustSnappea(t, "failed", "show", fmt.Sprint(f.ID), "--json", "--dir", dir)
	var shown failedJSON
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil {
		t.Fatalf("failed show --json printed %q: %v", r.stdout, err)
	}
	var args struct{ Msg string }
	if err := json.Unmarshal(shown.Args, &args); err != nil || args.Msg != "boom" || shown.ID != f.ID {
		t.Errorf("failed show --json: %s, want failure %d with its args", r.stdout, f.ID)
	}
	if r := snappea(t, "failed", "show", "--dir", dir, "999"); r.code != 1 || !strings.Contains(r.stderr, "999") {
		t.Errorf("failed show 999: exit %d, %q; want 1 naming the ID", r.code, r.stderr)
	}

	// retry queues it again, as a first attempt, and drops the record.
	r = mustSnappea(t, "failed", "retry", "--dir", dir, fmt.Sprint(f.ID))
	again := ids(t, r.stdout)
	if len(again) != 1 {
		t.Fatalf("failed retry printed %q, want the new task id", r.stdout)
	}
	d.waitFor(10*time.Second, "the retried task to run", isTask("task started", again[0]))
	if fails := failedList(t, dir); len(fails) != 0 {
		t.Errorf("failed list after the retry: %+v, want none", fails)
	}
	if r := snappea(t, "failed", "retry", "--dir", dir, fmt.Sprint(f.ID)); r.code != 1 {
		t.Errorf("failed retry of a retried failure: exit %d, want 1\n%s", r.code, r.stderr)
	}
}

func TestFailedRetryAllAndPurge(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	failed := func(n int) {
		t.Helper()
		d.waitUntil(10*time.Second, fmt.Sprintf("%d failures", n), func() bool { return d.count(isMsg("task failed")) == n })
		// The record is written after the log record.
		deadline := time.Now().Add(5 * time.Second)
		for len(failedList(t, dir)) != 2 {
			if time.Now().After(deadline) {
				t.Fatalf("failed list: %+v, want 2 entries", failedList(t, dir))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if r := mustSnappea(t, "failed", "list", "--dir", dir); !strings.Contains(r.stdout, "no failed tasks") {
		t.Errorf("failed list with none: %q", r.stdout)
	}
	mustSnappea(t, "enqueue", "--dir", dir, "--count", "2", "snappea.fail")
	failed(2)
	r := mustSnappea(t, "failed", "list", "--dir", dir, "--limit", "1", "--json")
	var one []failedJSON
	if err := json.Unmarshal([]byte(r.stdout), &one); err != nil || len(one) != 1 {
		t.Errorf("failed list --limit 1 --json printed %q, want one entry", r.stdout)
	}

	r = mustSnappea(t, "failed", "retry", "--all", "--dir", dir)
	if !strings.Contains(r.stdout, "retried 2 failed tasks") {
		t.Errorf("failed retry --all printed %q, want the count", r.stdout)
	}
	failed(4)

	r = mustSnappea(t, "failed", "purge", "--dir", dir)
	if !strings.Contains(r.stdout, "purged 2 failed tasks") {
		t.Errorf("failed purge printed %q, want the count", r.stdout)
	}
	if r := mustSnappea(t, "failed", "list", "--json", "--dir", dir); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("failed list --json after purge printed %q, want []", r.stdout)
	}
}

func TestEnqueueKeyUnderConcurrentProducers(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)
	mustSnappea(t, "pause", "--dir", dir)

	const producers = 8
	var wg sync.WaitGroup
	results := make([]result, producers)
	for i := range producers {
		wg.Go(func() {
			results[i] = snappea(t, "enqueue", "--dir", dir, "--key", "report-7", "snappea.noop")
		})
	}
	wg.Wait()
	var got []int64
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("producer %d: exit %d: %s", i, r.code, r.stderr)
		}
		got = append(got, ids(t, r.stdout)...)
	}
	if len(got) != 1 {
		t.Fatalf("the producers printed ids %v, want exactly one", got)
	}
	holder := got[0]
	for i, r := range results {
		if r.stdout == "" && !strings.Contains(r.stderr, fmt.Sprintf("duplicate of task %d", holder)) {
			t.Errorf("producer %d queued nothing and said %q, want that it duplicates task %d", i, r.stderr, holder)
		}
	}

	// In one transaction, the second and third are duplicates of the first;
	// keys are shared by all task names.
	r := mustSnappea(t, "enqueue", "--dir", dir, "--key", "report-7", "--batch", "--count", "3", "snappea.echo")
	if r.stdout != "" || !strings.Contains(r.stderr, fmt.Sprintf("3 not queued: duplicates of task %d", holder)) {
		t.Errorf("enqueue --batch --count 3 of a held key: printed %q, %q", r.stdout, r.stderr)
	}
	r = mustSnappea(t, "enqueue", "--dir", dir, "--key", "other", "--count", "3", "snappea.noop")
	if n := len(ids(t, r.stdout)); n != 1 || !strings.Contains(r.stderr, "2 not queued") {
		t.Errorf("enqueue --count 3 of a new key: %d ids, %q; want 1 and 2 duplicates", n, r.stderr)
	}

	mustSnappea(t, "resume", "--dir", dir)
	d.waitFor(10*time.Second, "the keyed task to run", isTask("task done", holder))
	// Claimed, the task frees its key.
	next := enqueueOne(t, dir, "--key", "report-7", "snappea.noop")
	d.waitFor(10*time.Second, "the next keyed task to run", isTask("task done", next))
	if n := d.count(isMsg("task started")); n != 3 {
		t.Errorf("%d tasks ran, want 3 (one per key, then the next)", n)
	}
}

func TestCancel(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir)

	// Pending: deleted, never runs.
	mustSnappea(t, "pause", "--dir", dir)
	pending := enqueueOne(t, dir, "snappea.noop")
	r := mustSnappea(t, "cancel", "--dir", dir, fmt.Sprint(pending))
	if want := fmt.Sprintf("cancelled pending task %d", pending); !strings.Contains(r.stdout, want) {
		t.Errorf("cancel printed %q, want %q", r.stdout, want)
	}
	if r := snappea(t, "cancel", "--dir", dir, fmt.Sprint(pending)); r.code != 1 || !strings.Contains(r.stderr, "neither pending nor running") {
		t.Errorf("cancel of a cancelled task: exit %d, %q; want 1 saying it is neither pending nor running", r.code, r.stderr)
	}
	mustSnappea(t, "resume", "--dir", dir)

	// Running: its context is cancelled, and the sleep returns at once.
	running := enqueueOne(t, dir, "snappea.sleep", `{"ms": 60000}`)
	d.waitFor(10*time.Second, "the sleep to start", isTask("task started", running))
	start := time.Now()
	r = mustSnappea(t, "cancel", "--dir", dir, fmt.Sprint(running))
	if want := fmt.Sprintf("cancelled running task %d", running); !strings.Contains(r.stdout, want) {
		t.Errorf("cancel printed %q, want %q", r.stdout, want)
	}
	done := d.waitFor(5*time.Second, "the cancelled sleep to return", isTask("task done", running))
	if done.str("outcome") != "cancelled" {
		t.Errorf("outcome %q, want cancelled", done.str("outcome"))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the cancelled sleep returned after %v", took)
	}
	if r := snappea(t, "cancel", "--dir", dir, fmt.Sprint(running)); r.code != 1 {
		t.Errorf("cancel of a finished task: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if r := snappea(t, "cancel", "--dir", dir, "999999"); r.code != 1 || !strings.Contains(r.stderr, "999999") {
		t.Errorf("cancel of a task never queued: exit %d, %q; want 1 naming it", r.code, r.stderr)
	}

	// The cancelled tasks are not failures.
	marker := enqueueOne(t, dir, "snappea.noop")
	d.waitFor(10*time.Second, "a later task to run", isTask("task done", marker))
	if d.count(isTask("task started", pending)) != 0 {
		t.Errorf("the cancelled pending task %d ran", pending)
	}
	if fails := failedList(t, dir); len(fails) != 0 {
		t.Errorf("failed list: %+v, want none", fails)
	}
	d.stop()

	// Without a daemon, a task that is not pending is not running either.
	if r := snappea(t, "cancel", "--dir", dir, fmt.Sprint(running)); r.code != 1 || !strings.Contains(r.stderr, "no daemon") {
		t.Errorf("cancel without a daemon: exit %d, %q; want 1 saying no daemon runs", r.code, r.stderr)
	}
}

func TestEnqueueOptionsIgnoreTheEnvironment(t *testing.T) {
	// A task's options belong to one enqueue: variables exported for other
	// commands (stop --timeout, failed retry --all, run --batch) must not
	// leak into it, nor may those of one enqueue (--count).
	dir := dataDir(t)
	env := []string{"SNAPPEA_DIR=" + dir, "SNAPPEA_KEY=k", "SNAPPEA_DELAY=1h", "SNAPPEA_TIMEOUT=1s", "SNAPPEA_PRIORITY=3",
		"SNAPPEA_COUNT=5", "SNAPPEA_BATCH=true", "SNAPPEA_NO_CHECK=true"}
	for range 2 {
		r := snappeaEnv(t, env, "enqueue", "snappea.noop")
		if r.code != 0 || len(ids(t, r.stdout)) != 1 || strings.Contains(r.stderr, "due at") || strings.Contains(r.stderr, "duplicate") {
			t.Errorf("enqueue with option variables set: exit %d, %q, %q; want one id, ready now, no key", r.code, r.stdout, r.stderr)
		}
	}
}

func TestBackpressure_EnqueueRefusedPastTheLimit(t *testing.T) {
	dir := dataDir(t)
	r := snappea(t, "enqueue", "--dir", dir, "--max-backlog", "5", "--count", "8", "snappea.noop")
	if r.code != 1 || len(ids(t, r.stdout)) != 5 || !strings.Contains(r.stderr, "backlog is full") {
		t.Fatalf("enqueue 8 with a backlog limit of 5: exit %d, %d ids, %q; want 5 ids then a clear refusal", r.code, len(ids(t, r.stdout)), r.stderr)
	}
	if s := getStatus(t, dir); s.Pending != 5 {
		t.Errorf("pending %d after the refusal, want 5: nothing written past the limit", s.Pending)
	}
	// Once the daemon drains the queue, enqueueing works again.
	d := startDaemon(t, dir)
	waitStatus(t, dir, 10*time.Second, "the backlog drained", func(s status) bool { return s.Pending == 0 })
	r = snappeaEnv(t, []string{"SNAPPEA_MAX_BACKLOG=5"}, "enqueue", "--dir", dir, "--count", "3", "snappea.noop")
	if r.code != 0 || len(ids(t, r.stdout)) != 3 {
		t.Errorf("enqueue after the drain: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	d.stop()
}

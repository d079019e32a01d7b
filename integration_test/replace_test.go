package integration_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// replaceBackend is where TestEnqueueReplace's daemon and producers meet:
// the daemon's data directory, and the flags every command needs.
type replaceBackend struct {
	dir  string   // the daemon's data directory (its control socket)
	args []string // the data flags of a producer
}

func TestEnqueueReplace(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		dir := dataDir(t)
		testEnqueueReplace(t, replaceBackend{dir: dir, args: []string{"--dir", dir}}, nil)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		p := newPGDatabase(t)
		testEnqueueReplace(t, replaceBackend{dir: dataDir(t), args: append([]string{"--dir", dataDir(t)}, p.args()...)}, p.args())
	})
}

// testEnqueueReplace has several producer processes replace one key at
// once, each enqueueing increasing sequence numbers, with a debounce:
// exactly one task runs, with a producer's last number (the last replace
// committed), no sooner than the debounce after the enqueue that wrote
// it. Then a replace of a ready task pushes it back, and a replace while
// the key's task runs queues a new task.
func testEnqueueReplace(t *testing.T, b replaceBackend, daemonArgs []string) {
	d := startDaemon(t, b.dir, append([]string{"--workers", "4"}, daemonArgs...)...)
	enqueue := func(args ...string) result {
		t.Helper()
		return mustSnappea(t, append(append([]string{"enqueue"}, b.args...), args...)...)
	}
	mustSnappea(t, "pause", "--dir", b.dir)

	const producers, each = 4, 5
	const debounce = 2 * time.Second
	started := make(map[string]time.Time) // msg -> when its enqueue process started
	var mu sync.Mutex
	var wg sync.WaitGroup
	ids := make(chan int64, producers*each)
	for p := range producers {
		wg.Go(func() {
			for n := range each {
				msg := fmt.Sprintf("seq %d %d", p, n)
				mu.Lock()
				started[msg] = time.Now()
				mu.Unlock()
				r := snappea(t, append(append([]string{"enqueue"}, b.args...), "--key", "digest", "--replace",
					"--debounce", debounce.String(), "snappea.echo", fmt.Sprintf(`{"msg": %q}`, msg))...)
				if r.code != 0 {
					t.Errorf("producer %d, enqueue %d: exit %d: %s", p, n, r.code, r.stderr)
					return
				}
				var id int64
				if _, err := fmt.Sscan(r.stdout, &id); err != nil {
					t.Errorf("producer %d, enqueue %d printed %q, want an id", p, n, r.stdout)
					return
				}
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	if t.Failed() {
		t.FailNow()
	}
	var holder int64
	for id := range ids {
		if holder == 0 {
			holder = id
		}
		if id != holder {
			t.Fatalf("enqueues of one key printed ids %d and %d, want one task", holder, id)
		}
	}
	mustSnappea(t, "resume", "--dir", b.dir)
	ran := d.waitFor(30*time.Second, "the replaced task to run", isTask("task done", holder))
	if o := ran.str("outcome"); o != "done" {
		t.Errorf("the replaced task's outcome %q, want done\n%s", o, d.output())
	}
	echoes := d.all(func(r record) bool { return strings.HasPrefix(r.msg(), "seq ") })
	if len(echoes) != 1 {
		t.Fatalf("%d tasks of the key ran, want 1: %v", len(echoes), echoes)
	}
	var p, n int
	if _, err := fmt.Sscanf(echoes[0].msg(), "seq %d %d", &p, &n); err != nil {
		t.Fatal(err)
	}
	if n != each-1 {
		t.Errorf("the task ran with producer %d's enqueue %d, want a producer's last (%d): a later replace was lost", p, n, each-1)
	}
	start := recordTime(t, d.waitFor(time.Second, "the task's start", isTask("task started", holder)))
	if due := started[echoes[0].msg()].Add(debounce); start.Before(due) {
		t.Errorf("the task started at %v, before its debounce was over (%v)", start, due)
	}

	// A ready task is pushed back by a debounced replace (the daemon
	// paused, so that it cannot claim the task in between).
	mustSnappea(t, "pause", "--dir", b.dir)
	ready := ids1(t, enqueue("--key", "push", "--replace", "snappea.echo", `{"msg": "push 1"}`))
	replaced := time.Now()
	r := enqueue("--key", "push", "--replace", "--debounce", debounce.String(), "snappea.echo", `{"msg": "push 2"}`)
	mustSnappea(t, "resume", "--dir", b.dir)
	if got := ids1(t, r); got != ready || !strings.Contains(r.stderr, fmt.Sprintf("replaced: task %d", ready)) {
		t.Errorf("debounced replace of ready task %d: printed %d, %q; want that it replaced it", ready, got, r.stderr)
	}
	d.waitFor(30*time.Second, "the pushed-back task to run", isMsg("push 2"))
	pushed := recordTime(t, d.waitFor(time.Second, "its start", isTask("task started", ready)))
	if pushed.Before(replaced.Add(debounce)) {
		t.Errorf("the pushed-back task started at %v, before the debounce from its replace (%v)", pushed, replaced.Add(debounce))
	}
	if d.count(isMsg("push 1")) != 0 {
		t.Error("the task ran with the arguments it was replaced with")
	}

	// While the key's task runs, it holds no key: a replace queues a new
	// task, which runs beside it.
	running := ids1(t, enqueue("--key", "busy", "--replace", "snappea.sleep", `{"ms": 600000}`))
	d.waitFor(30*time.Second, "the sleeping task to start", isTask("task started", running))
	r = enqueue("--key", "busy", "--replace", "snappea.echo", `{"msg": "beside"}`)
	if next := ids1(t, r); next == running || strings.Contains(r.stderr, "replaced") {
		t.Errorf("replace of a running task's key: printed %d, %q; want a new task", next, r.stderr)
	}
	d.waitFor(30*time.Second, "the new task to run beside the running one", isMsg("beside"))
	mustSnappea(t, append(append([]string{"cancel"}, b.args...), fmt.Sprint(running))...)
	d.waitFor(30*time.Second, "the sleeping task to be cancelled", isTask("task done", running))
}

// ids1 is the one id an enqueue printed.
func ids1(t testing.TB, r result) int64 {
	t.Helper()
	got := ids(t, r.stdout)
	if len(got) != 1 {
		t.Fatalf("enqueue printed ids %v, want one\n%s", got, r.stderr)
	}
	return got[0]
}

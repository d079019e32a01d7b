package foreman

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// errDied is what a child's death looks like to the foreman.
var errDied = errors.New("worker process died: killed by SIGKILL")

// fakeProcesses is a ProcessRunner that runs nothing: each task's outcome
// comes from its name, and "proc.hold" waits for release or its context.
type fakeProcesses struct {
	mu      sync.Mutex
	tasks   []ProcessTask
	release chan struct{}
}

func (p *fakeProcesses) RunProcess(ctx context.Context, t ProcessTask) error {
	p.mu.Lock()
	p.tasks = append(p.tasks, t)
	p.mu.Unlock()
	t.Started(4242)
	switch t.Name {
	case "proc.die":
		return errDied
	case "proc.panic":
		return &PanicError{Value: "kaboom", Stack: []byte("goroutine 1 [running]:\nmain.handler()")}
	case "proc.hold":
		select {
		case <-p.release:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

func (p *fakeProcesses) got() []ProcessTask {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProcessTask(nil), p.tasks...)
}

func registerProcTasks(r *registry.Registry) {
	for _, name := range []string{"proc.die", "proc.panic", "proc.hold", "proc.ok"} {
		registry.Register(r, name, func(context.Context, struct{}) error {
			panic("an isolated task ran on a goroutine")
		}, registry.Options{Isolated: true, Timeout: time.Hour})
	}
}

// Isolated tasks go to the ProcessRunner with their attempt, budget,
// timeout and arguments; the others run on goroutines; both share the
// slots; a child's death is a failure retried while attempts remain, then
// recorded and reported; a panic in a child is a panic; the child's pid
// shows in the snapshot while the task runs.
func TestForeman_IsolatedTasksRunInProcesses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		procs := &fakeProcesses{release: make(chan struct{})}
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 2, Store: store, Processes: procs}, registerProcTasks)
		store.src, store.wake = h.src, h.wake.wake
		h.src.addTask(queue.Task{Name: "proc.die", Args: []byte(`{}`), MaxAttempts: 2}, 1)
		h.src.addTask(queue.Task{Name: "proc.panic", Args: []byte(`{}`), MaxAttempts: 3}, 1)
		h.src.addTask(queue.Task{Name: registry.NoopTask, Args: []byte(`{}`)}, 1)
		h.start()
		waitFor(t, "the death's last attempt and the panic to be recorded", func() bool { return store.fails() == 2 })

		h.src.add("proc.hold", `{"x":1}`, 1)
		h.wake.wake()
		waitFor(t, "proc.hold to run", func() bool {
			s := h.f.Snapshot()
			return len(s.Active) == 1 && s.Active[0].PID == 4242
		})
		close(procs.release)
		waitFor(t, "proc.hold to finish", func() bool { return h.f.Counters().Done == 2 })
		h.stop()
		h.wait(t)

		var names []string
		for _, pt := range procs.got() {
			names = append(names, pt.Name)
			if pt.Timeout != time.Hour || pt.Attempt < 1 {
				t.Errorf("%s: got %+v, want the definition's timeout and an attempt", pt.Name, pt)
			}
		}
		slices.Sort(names)
		if got, want := strings.Join(names, ","), "proc.die,proc.die,proc.hold,proc.panic"; got != want {
			t.Errorf("tasks run in processes = %s, want %s (noop on a goroutine)", got, want)
		}
		for _, pt := range procs.got() {
			if pt.Name == "proc.hold" && string(pt.Args) != `{"x":1}` {
				t.Errorf("proc.hold args = %q, want the task's", pt.Args)
			}
		}
		if r := store.retried(); len(r) != 1 || r[0].Name != "proc.die" || r[0].Attempt != 1 {
			t.Errorf("retries = %+v, want proc.die's first attempt", r)
		}
		c := h.f.Counters()
		if c.Failed != 2 || c.Retried != 1 || c.Panicked != 1 || c.Done != 2 {
			t.Errorf("counters = %+v, want 2 failed (1 retried), 1 panicked, 2 done", c)
		}
		fails := store.failures()
		if len(fails) != 2 || !slices.Contains(fails, errDied.Error()) {
			t.Errorf("failed records = %q, want the death's cause among them", fails)
		}
		if errs, _ := h.rep.snapshot(); len(errs) != 2 {
			t.Errorf("%d reports, want 2 (the death for good, the panic)", len(errs))
		}
	})
}

// IsolateAll sends every task to the ProcessRunner; a task's timeout and an
// operator's cancel reach it through its context.
func TestForeman_IsolateAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		procs := &fakeProcesses{release: make(chan struct{})}
		h := newHarness(t, Config{Workers: 2, Processes: procs, IsolateAll: true}, nil)
		h.src.add(registry.NoopTask, `{}`, 1)
		h.src.addTask(queue.Task{Name: "proc.hold", Timeout: time.Second}, 1)
		h.src.addTask(queue.Task{Name: "proc.hold"}, 1)
		h.start()
		waitFor(t, "the timeout to end one", func() bool { return h.f.Counters().Failed == 1 })
		active := h.f.Snapshot().Active
		if len(active) != 1 {
			t.Fatalf("%d active, want the one without a timeout", len(active))
		}
		h.f.Cancel(active[0].ID)
		waitFor(t, "the cancel to end the other", func() bool { return h.f.Counters().Cancelled == 1 })
		h.stop()
		h.wait(t)
		if n := len(procs.got()); n != 3 {
			t.Errorf("%d tasks run in processes, want all 3", n)
		}
		if c := h.f.Counters(); c.Done != 1 {
			t.Errorf("counters = %+v, want the noop done", c)
		}
	})
}

// Without a ProcessRunner an isolated task fails rather than run
// unprotected on a goroutine; IsolateAll without one is a bad config.
func TestForeman_IsolatedWithoutProcesses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 1, Store: store}, registerProcTasks)
		h.src.add("proc.ok", `{}`, 1)
		h.start()
		waitFor(t, "the task to fail", func() bool { return store.fails() == 1 })
		h.stop()
		h.wait(t)
		if f := store.failures(); !strings.Contains(f[0], "no process runner") {
			t.Errorf("failure = %q, want it to say there is no process runner", f[0])
		}
	})
	_, err := New(Config{Source: &fakeSource{}, Waker: make(fakeWaker), Runner: registry.New(), IsolateAll: true})
	if err == nil || !strings.Contains(err.Error(), "IsolateAll") {
		t.Errorf("New with IsolateAll and no Processes: err = %v, want one naming IsolateAll", err)
	}
}

package foreman

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// blockers registers "block", a task that runs until released or until its
// context ends, and counts how many run at once.
type blockers struct {
	mu      sync.Mutex
	running int
	peak    int
	release chan struct{}
}

func (b *blockers) register(r *registry.Registry) {
	b.release = make(chan struct{})
	registry.Register(r, "block", func(ctx context.Context, _ struct{}) error {
		b.mu.Lock()
		b.running++
		b.peak = max(b.peak, b.running)
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			b.running--
			b.mu.Unlock()
		}()
		select {
		case <-b.release:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
}

func (b *blockers) now() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running
}

func TestForeman_PauseAndResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2, StartPaused: true}, nil)
		h.src.add(registry.NoopTask, ``, 3)
		h.start()
		time.Sleep(10 * time.Second) // three polls
		synctest.Wait()
		if c := h.f.Counters(); c.Done != 0 || h.f.State() != Paused {
			t.Fatalf("started paused: %+v, state %v; want nothing run", c, h.f.State())
		}
		if h.f.Pause() {
			t.Error("Pause on a paused foreman returned true")
		}
		if !h.f.Resume() {
			t.Error("Resume returned false")
		}
		waitFor(t, "3 tasks after resume", func() bool { return h.f.Counters().Done == 3 })

		// Pausing lets running tasks finish but claims no more.
		h.src.add(registry.SleepTask, `{"ms": 1000}`, 2)
		h.wake.wake()
		synctest.Wait()
		h.f.Pause()
		h.src.add(registry.NoopTask, ``, 1)
		h.wake.wake()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if c := h.f.Counters(); c.Done != 5 || h.src.pending() != 1 {
			t.Errorf("paused with 2 running: %+v, %d pending; want 5 done, 1 pending", c, h.src.pending())
		}
		h.f.Resume()
		waitFor(t, "the task queued while paused", func() bool { return h.f.Counters().Done == 6 })
		h.stop()
		h.wait(t)
		if h.f.State() != Stopping {
			t.Errorf("state after stop = %v", h.f.State())
		}
	})
}

// The bound itself is accepted (on a queue with nothing to claim: growing
// takes effect at once, and tasks would start).
func TestForeman_SetWorkersToTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1}, nil)
		h.src.workers = MaxWorkers
		h.start()
		synctest.Wait()
		if err := h.f.SetWorkers(MaxWorkers); err != nil {
			t.Errorf("SetWorkers(MaxWorkers) = %v", err)
		}
		synctest.Wait()
		if s := h.f.Snapshot(); s.Workers != MaxWorkers {
			t.Errorf("workers = %d, want %d", s.Workers, MaxWorkers)
		}
		h.stop()
		h.wait(t)
	})
}

func TestForeman_SetWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b blockers
		h := newHarness(t, Config{Workers: 1}, b.register)
		h.src.workers = 8
		h.src.add("block", ``, 8)
		h.start()
		synctest.Wait()
		if n := b.now(); n != 1 {
			t.Fatalf("%d running with 1 worker", n)
		}
		if err := h.f.SetWorkers(0); err == nil {
			t.Error("SetWorkers(0) accepted")
		}
		for _, n := range []int{MaxWorkers + 1, 1_000_000_000} {
			if err := h.f.SetWorkers(n); err == nil || !strings.Contains(err.Error(), "10000") {
				t.Errorf("SetWorkers(%d) = %v, want an error naming the limit", n, err)
			}
		}
		// Growing takes effect at once.
		if err := h.f.SetWorkers(4); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := b.now(); n != 4 {
			t.Fatalf("%d running after growing to 4", n)
		}
		if s := h.f.Snapshot(); s.Workers != 4 || s.Busy != 4 || len(s.Active) != 4 {
			t.Errorf("snapshot = workers %d busy %d active %d, want 4/4/4", s.Workers, s.Busy, len(s.Active))
		}
		// Shrinking lets the running tasks finish: no task is cut off,
		// and nothing new starts until fewer than 2 run.
		h.f.SetWorkers(2)
		synctest.Wait()
		if n := b.now(); n != 4 {
			t.Fatalf("%d running right after shrinking, want the 4 still running", n)
		}
		for range 3 {
			b.release <- struct{}{}
		}
		synctest.Wait()
		if n := b.now(); n != 2 {
			t.Errorf("%d running after 3 of 4 finished with 2 workers, want 2", n)
		}
		close(b.release)
		waitFor(t, "all 8", func() bool { return h.f.Counters().Done == 8 })
		h.stop()
		h.wait(t)
	})
}

func TestForeman_CancelRunningTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b blockers
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 2, Store: store}, b.register)
		h.src.addTask(queue.Task{Name: "block", MaxAttempts: 5}, 2)
		h.start()
		synctest.Wait()
		if h.f.Cancel(99) {
			t.Error("Cancel of a task that is not running returned true")
		}
		if !h.f.Cancel(1) {
			t.Fatal("Cancel(1) returned false")
		}
		waitFor(t, "the cancelled task to end", func() bool { return h.f.Counters().Cancelled == 1 })
		if s := h.f.Snapshot(); len(s.Active) != 1 || s.Active[0].ID != 2 {
			t.Errorf("active after cancel = %+v, want task 2 only", s.Active)
		}
		close(b.release)
		h.stop()
		h.wait(t)
		if store.retries() != 0 || store.fails() != 0 {
			t.Errorf("a cancelled task was retried or recorded failed: %d retries, %d fails", store.retries(), store.fails())
		}
		if errs, _ := h.rep.snapshot(); len(errs) != 0 {
			t.Errorf("a cancelled task was reported: %v", errs)
		}
	})
}

func TestForeman_TimeoutAndOverdue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		var sawDeadline atomic.Bool
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 2, Store: store}, func(r *registry.Registry) {
			registry.Register(r, "polite", func(ctx context.Context, _ struct{}) error {
				<-ctx.Done()
				return ctx.Err()
			})
			registry.Register(r, "deaf", func(ctx context.Context, _ struct{}) error {
				if _, ok := ctx.Deadline(); ok {
					sawDeadline.Store(true)
				}
				<-release
				return nil
			})
		})
		h.src.addTask(queue.Task{Name: "polite", Timeout: 2 * time.Second}, 1)
		h.src.addTask(queue.Task{Name: "deaf", Timeout: 2 * time.Second}, 1)
		h.start()
		start := time.Now()
		waitFor(t, "the polite task to time out", func() bool { return h.f.Counters().Failed == 1 })
		// waitFor looks every millisecond.
		if d := time.Since(start); d < 2*time.Second || d > 2*time.Second+2*time.Millisecond {
			t.Errorf("timed out after %v, want 2s", d)
		}
		if !sawDeadline.Load() {
			t.Error("the handler's context had no deadline")
		}
		if fails := store.failures(); len(fails) != 1 || !strings.Contains(fails[0], "timed out after 2s") {
			t.Errorf("recorded failures = %q, want one saying it timed out", fails)
		}
		s := h.f.Snapshot()
		if len(s.Active) != 1 || s.Active[0].Overdue || s.Active[0].Deadline != start.Add(2*time.Second) {
			t.Errorf("active at 2s = %+v, want the deaf task with its deadline, not overdue yet", s.Active)
		}
		// Overdue once it ignored the deadline for HardStopWait.
		time.Sleep(time.Second)
		synctest.Wait()
		s = h.f.Snapshot()
		if len(s.Active) != 1 || !s.Active[0].Overdue || s.Counters.Overdue != 1 {
			t.Errorf("at 3s: active %+v counters %+v, want the deaf task overdue and counted", s.Active, s.Counters)
		}
		if s.Busy != 1 {
			t.Errorf("busy = %d: an overdue task keeps its slot", s.Busy)
		}
		time.Sleep(time.Minute)
		if c := h.f.Counters(); c.Overdue != 1 {
			t.Errorf("overdue counted %d times, want once", c.Overdue)
		}
		release <- struct{}{}
		h.stop()
		h.wait(t)
	})
}

func TestForeman_DefaultsFromTaskDefinition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 1, Store: store}, func(r *registry.Registry) {
			registry.Register(r, "slow", func(ctx context.Context, _ struct{}) error {
				<-ctx.Done()
				return ctx.Err()
			}, registry.Options{Timeout: time.Second, MaxAttempts: 2})
		})
		h.src.add("slow", `{}`, 1)
		h.start()
		waitFor(t, "a retry", func() bool { return store.retries() == 1 })
		h.stop()
		h.wait(t)
		if r := store.retried(); r[0].Timeout != time.Second || r[0].MaxAttempts != 2 || r[0].Attempt != 1 {
			t.Errorf("retried task = %+v, want the definition's timeout and attempts", r[0])
		}
	})
}

func TestForeman_RetriesBackOffThenFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 1, Store: store, RetryBackoff: 10 * time.Second, RetryBackoffMax: 30 * time.Second}, nil)
		store.src, store.wake = h.src, h.wake.wake
		h.src.addTask(queue.Task{Name: registry.FailTask, Args: []byte(`{"msg":"nope"}`), MaxAttempts: 4}, 1)
		h.start()
		waitFor(t, "the last attempt to fail for good", func() bool { return store.fails() == 1 })
		h.stop()
		h.wait(t)

		r := store.retried()
		if len(r) != 3 {
			t.Fatalf("%d retries, want 3 (4 attempts)", len(r))
		}
		// Attempt n waits RetryBackoff·2^(n-1), capped, minus up to half.
		for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second} {
			wait := store.waits[i]
			if wait < want/2 || wait > want {
				t.Errorf("retry %d waited %v, want within [%v, %v]", i+1, wait, want/2, want)
			}
			if r[i].Attempt != i+1 {
				t.Errorf("retry %d came from attempt %d", i+1, r[i].Attempt)
			}
		}
		c := h.f.Counters()
		if c.Failed != 4 || c.Retried != 3 {
			t.Errorf("counters = %+v, want 4 failed, 3 retried", c)
		}
		// Only the final failure is reported.
		if errs, _ := h.rep.snapshot(); len(errs) != 1 {
			t.Errorf("%d reports, want 1 (the final failure)", len(errs))
		}
	})
}

func TestForeman_PanicsAndDiscardsAreNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 2, Store: store}, nil)
		h.src.addTask(queue.Task{Name: registry.PanicTask, Args: []byte(`{"msg":"bug"}`), MaxAttempts: 3}, 1)
		h.src.addTask(queue.Task{Name: "no.such.task", Args: []byte(`{}`), MaxAttempts: 3}, 1)
		h.start()
		waitFor(t, "both to be recorded", func() bool { return store.fails() == 2 })
		h.stop()
		h.wait(t)
		if store.retries() != 0 {
			t.Errorf("%d retries of a panic or an unknown task, want 0", store.retries())
		}
	})
}

func TestForeman_DelayedTasksRunWhenDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan time.Time, 2)
		h := newHarness(t, Config{PollInterval: time.Hour}, func(r *registry.Registry) {
			registry.Register(r, "stamp", func(ctx context.Context, _ struct{}) error {
				started <- time.Now()
				return nil
			})
		})
		begin := time.Now()
		h.src.addAt("stamp", begin.Add(90*time.Second))
		h.start()
		synctest.Wait()
		// A task delayed less than the first is queued later: the wake
		// must re-arm the timer for the earlier time.
		h.src.addAt("stamp", begin.Add(30*time.Second))
		h.wake.wake()
		for _, want := range []time.Duration{30 * time.Second, 90 * time.Second} {
			if got := (<-started).Sub(begin); got != want {
				t.Errorf("delayed task started at %v, want %v (a timer, not the 1h poll)", got, want)
			}
		}
		h.stop()
		h.wait(t)
	})
}

func TestForeman_ServicesRestartAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var runs atomic.Int32
		stopped := make(chan struct{})
		h := newHarness(t, Config{Services: []Service{
			{Name: "flaky", Run: func(ctx context.Context) error {
				if runs.Add(1) <= 2 {
					panic("flaky service")
				}
				<-ctx.Done()
				close(stopped)
				return nil
			}},
			{Name: "oneshot", Run: func(ctx context.Context) error { return nil }},
		}}, nil)
		h.start()
		// Restarted after 1s, then after 2s.
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		s := h.f.Snapshot().Services
		if len(s) != 2 || s[0].State != ServiceRunning || s[0].Restarts != 2 || !strings.Contains(s[0].LastError, "flaky service") {
			t.Errorf("services = %+v, want flaky running after 2 restarts", s)
		}
		if s[1].State != ServiceExited {
			t.Errorf("oneshot state = %v, want exited", s[1].State)
		}
		if errs, _ := h.rep.snapshot(); len(errs) != 2 {
			t.Errorf("%d reports, want 2 (one per panic)", len(errs))
		}
		h.stop()
		h.wait(t)
		select {
		case <-stopped:
		default:
			t.Error("Run returned before the service stopped")
		}
		if s := h.f.Snapshot().Services; s[0].State != ServiceStopped {
			t.Errorf("flaky after stop = %v, want stopped", s[0].State)
		}
	})
}

func TestForeman_Ping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		if err := h.f.Ping(context.Background()); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Ping before Run = %v, want ErrNotRunning", err)
		}
		h.start()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := h.f.Ping(ctx); err != nil {
			t.Errorf("Ping = %v", err)
		}
		h.stop()
		h.wait(t)
		if err := h.f.Ping(context.Background()); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Ping after Run = %v, want ErrNotRunning", err)
		}
	})
}

func TestForeman_SnapshotIdleSince(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.src.add(registry.SleepTask, `{"ms": 5000}`, 1)
		h.start()
		synctest.Wait()
		if s := h.f.Snapshot(); !s.IdleSince.IsZero() || s.Busy != 1 || s.StartedAt.IsZero() {
			t.Errorf("while busy: %+v", s)
		}
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if s := h.f.Snapshot(); s.Busy != 0 || time.Since(s.IdleSince) != time.Second {
			t.Errorf("idle since %v ago (busy %d), want 1s", time.Since(s.IdleSince), s.Busy)
		}
		h.stop()
		h.wait(t)
	})
}

// fakeStore records retries and failures; with src set, retries go back
// into the fake queue as delayed tasks, as queue.Queue would.
type fakeStore struct {
	mu    sync.Mutex
	src   *fakeSource
	wake  func()
	retry []queue.Task
	waits []time.Duration
	fail  []string
}

func (s *fakeStore) Retry(ctx context.Context, t *queue.Task, at time.Time) (int64, error) {
	s.mu.Lock()
	s.retry = append(s.retry, *t)
	s.waits = append(s.waits, time.Until(at))
	s.mu.Unlock()
	if s.src == nil {
		return 0, nil
	}
	s.src.mu.Lock()
	defer s.src.mu.Unlock()
	s.src.nextID++
	next := *t
	next.ID, next.Attempt = s.src.nextID, t.Attempt+1
	s.src.delayed = append(s.src.delayed, delayedTask{at, next})
	s.wake()
	return next.ID, nil
}

func (s *fakeStore) Fail(ctx context.Context, t *queue.Task, cause error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, cause.Error())
	return nil
}

func (s *fakeStore) retries() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.retry) }
func (s *fakeStore) fails() int   { s.mu.Lock(); defer s.mu.Unlock(); return len(s.fail) }
func (s *fakeStore) retried() []queue.Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]queue.Task(nil), s.retry...)
}
func (s *fakeStore) failures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.fail...)
}

// A claimed row that cannot be run (queue.Task.Err) is never started: it
// is discarded, recorded as failed once with its error, reported, never
// retried, and the tasks claimed with it run.
func TestForeman_BadRow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 4, Store: store}, nil)
		rowErr := fmt.Errorf("%w: column created_at is TEXT, want INTEGER (Unix nanoseconds)", queue.ErrBadRow)
		h.src.add(registry.NoopTask, ``, 1)
		// A name that would run, to show it is not run.
		h.src.addTask(queue.Task{Name: registry.FailTask, Args: []byte(`{"msg":"ran"}`), MaxAttempts: 3, Err: rowErr}, 1)
		h.src.add(registry.NoopTask, ``, 1)
		h.start()
		waitFor(t, "the three tasks", func() bool { return h.f.Counters().Done == 2 && h.f.Counters().Discarded == 1 })
		h.stop()
		h.wait(t)
		if c := h.f.Counters(); c.Failed != 0 {
			t.Errorf("counters = %+v, want the bad row discarded, not failed", c)
		}
		if f := store.failures(); len(f) != 1 || f[0] != rowErr.Error() {
			t.Errorf("failure records = %q, want one: %q", f, rowErr)
		}
		if n := store.retries(); n != 0 {
			t.Errorf("%d retries of the bad row, want 0", n)
		}
		errs, ids := h.rep.snapshot()
		if len(errs) != 1 || !errors.Is(errs[0], queue.ErrBadRow) || ids[0] != 2 {
			t.Errorf("reports = %v for tasks %v, want the bad row's error for task 2", errs, ids)
		}
	})
}

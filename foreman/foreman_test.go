package foreman

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// fakeSource is an in-memory queue that checks the foreman never claims
// more tasks than it has free slots.
type fakeSource struct {
	t       testing.TB
	mu      sync.Mutex
	tasks   []queue.Task
	nextID  int64
	workers int
	claims  int
	err     error // returned by Claim while set
	stopped bool  // set by the test after a stop: Claim must not be called

	delayed  []delayedTask // not claimable before due; Promote moves them
	promotes int
}

type delayedTask struct {
	due time.Time
	t   queue.Task
}

// addAt queues a task that becomes claimable at due.
func (s *fakeSource) addAt(name string, due time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	s.delayed = append(s.delayed, delayedTask{due, queue.Task{ID: s.nextID, Name: name, Args: []byte("{}"), EnqueuedAt: time.Now()}})
	return s.nextID
}

func (s *fakeSource) Promote(ctx context.Context, now time.Time) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.promotes++
	var next time.Time
	kept := s.delayed[:0]
	for _, d := range s.delayed {
		if !d.due.After(now) {
			s.tasks = append(s.tasks, d.t)
			continue
		}
		kept = append(kept, d)
		if next.IsZero() || d.due.Before(next) {
			next = d.due
		}
	}
	s.delayed = kept
	return next, nil
}

func (s *fakeSource) add(name string, args string, n int) {
	s.addTask(queue.Task{Name: name, Args: []byte(args)}, n)
}

// addTask queues n copies of t with fresh ids.
func (s *fakeSource) addTask(t queue.Task, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.nextID++
		t.ID, t.EnqueuedAt = s.nextID, time.Now()
		s.tasks = append(s.tasks, t)
	}
}

func (s *fakeSource) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tasks)
}

func (s *fakeSource) Claim(ctx context.Context, n int) ([]queue.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims++
	if s.stopped {
		s.t.Errorf("Claim(%d) called after intake stopped", n)
	}
	if s.err != nil {
		return nil, s.err
	}
	if n <= 0 || n > s.workers {
		s.t.Errorf("Claim(%d) with %d workers", n, s.workers)
	}
	n = min(n, len(s.tasks))
	out := append([]queue.Task(nil), s.tasks[:n]...)
	s.tasks = s.tasks[n:]
	return out, nil
}

type fakeWaker chan struct{}

func (w fakeWaker) Wakes() <-chan struct{} { return w }
func (w fakeWaker) wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

type recordingReporter struct {
	mu   sync.Mutex
	errs []error
	ids  []int64
}

func (r *recordingReporter) Report(err error, t *queue.Task) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
	if t != nil {
		r.ids = append(r.ids, t.ID)
	} else {
		r.ids = append(r.ids, 0)
	}
}

func (r *recordingReporter) snapshot() ([]error, []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...), append([]int64(nil), r.ids...)
}

type harness struct {
	src  *fakeSource
	wake fakeWaker
	reg  *registry.Registry
	rep  *recordingReporter
	f    *Foreman
	errc chan error
	stop context.CancelFunc
}

func newHarness(t *testing.T, cfg Config, register func(*registry.Registry)) *harness {
	t.Helper()
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	h := &harness{
		src:  &fakeSource{t: t, workers: cfg.Workers},
		wake: make(fakeWaker, 1),
		reg:  registry.New(),
		rep:  &recordingReporter{},
	}
	registry.RegisterBuiltins(h.reg)
	if register != nil {
		register(h.reg)
	}
	cfg.Source, cfg.Waker, cfg.Runner, cfg.Reporter = h.src, h.wake, h.reg, h.rep
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.f = f
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.errc = make(chan error, 1)
	go func() { h.errc <- h.f.Run(ctx) }()
}

func (h *harness) wait(t *testing.T) {
	t.Helper()
	if err := <-h.errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// waitFor polls cond in a synctest bubble, where sleeping costs no real
// time, and fails the test if a virtual minute passes first.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNew_Validates(t *testing.T) {
	ok := Config{Source: &fakeSource{}, Waker: make(fakeWaker), Runner: registry.New()}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no source", func(c *Config) { c.Source = nil }},
		{"no waker", func(c *Config) { c.Waker = nil }},
		{"no runner", func(c *Config) { c.Runner = nil }},
		{"negative workers", func(c *Config) { c.Workers = -1 }},
		{"negative batch", func(c *Config) { c.Batch = -1 }},
		{"negative poll", func(c *Config) { c.PollInterval = -time.Second }},
		{"workers over MaxWorkers", func(c *Config) { c.Workers = MaxWorkers + 1 }},
		{"a billion workers", func(c *Config) { c.Workers = 1_000_000_000 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted a bad config")
			}
		})
	}
	f, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.Workers != 16 || f.cfg.Batch != 0 || f.cfg.PollInterval != 3*time.Second || f.cfg.GracefulTimeout != 10*time.Second {
		t.Errorf("defaults = %+v", f.cfg)
	}
}

func TestForeman_RunsEveryTaskOnceWithinSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		seen := map[int64]int{}
		running, peak := 0, 0
		h := newHarness(t, Config{Workers: 4, Batch: 3}, func(r *registry.Registry) {
			registry.Register(r, "t", func(ctx context.Context, _ struct{}) error {
				info, _ := registry.InfoFrom(ctx)
				mu.Lock()
				seen[info.ID]++
				running++
				peak = max(peak, running)
				mu.Unlock()
				time.Sleep(time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
				return nil
			})
		})
		h.src.add("t", "{}", 100) // backlog before start
		h.start()
		synctest.Wait()
		h.src.add("t", "{}", 50)
		h.wake.wake()
		waitFor(t, "150 tasks to run", func() bool { return h.f.Counters().Done == 150 })
		h.stop()
		h.wait(t)
		for id := int64(1); id <= 150; id++ {
			if seen[id] != 1 {
				t.Errorf("task %d ran %d times", id, seen[id])
			}
		}
		if peak > 4 {
			t.Errorf("peak concurrency %d > 4 workers", peak)
		}
		if c := h.f.Counters(); c != (Counters{Done: 150}) {
			t.Errorf("counters = %+v", c)
		}
	})
}

func TestForeman_PollFindsWorkWithoutWakeup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{PollInterval: 2 * time.Second}, nil)
		h.start()
		synctest.Wait() // asleep, backlog empty
		h.src.add(registry.NoopTask, "", 3)
		start := time.Now()
		waitFor(t, "the poll to find 3 tasks", func() bool { return h.f.Counters().Done == 3 })
		if waited := time.Since(start); waited > 2*time.Second+50*time.Millisecond {
			t.Errorf("queued work found after %v, want within the 2s poll", waited)
		}
		h.stop()
		h.wait(t)
	})
}

func TestForeman_IdleDoesNotClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{PollInterval: time.Second}, nil)
		h.start()
		time.Sleep(10*time.Second + time.Millisecond)
		h.stop()
		h.wait(t)
		// One claim at start, one per poll: no busy loop.
		if h.src.claims > 12 {
			t.Errorf("%d claims in 10s idle with a 1s poll", h.src.claims)
		}
	})
}

func TestForeman_BadTasksAreCountedAndReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{}, nil)
		h.src.add("no.such.task", "{}", 1)                 // 1: discarded
		h.src.add(registry.SleepTask, `{"ms": "long"}`, 1) // 2: discarded, bad type
		h.src.add(registry.SleepTask, `{not json`, 1)      // 3: discarded, bad JSON
		h.src.add(registry.FailTask, `{"msg":"boom"}`, 1)  // 4: failed
		h.src.add(registry.PanicTask, `{"msg":"oh"}`, 1)   // 5: panicked
		h.src.add(registry.NoopTask, ``, 1)                // 6: done
		h.start()
		waitFor(t, "all six tasks to finish", func() bool {
			return h.f.Counters() == (Counters{Done: 1, Failed: 1, Panicked: 1, Discarded: 3})
		})
		h.stop()
		h.wait(t)
		errs, ids := h.rep.snapshot()
		if len(errs) != 5 {
			t.Fatalf("%d reports, want 5: %v", len(errs), errs)
		}
		byID := map[int64]error{}
		for i, id := range ids {
			byID[id] = errs[i]
		}
		if !errors.Is(byID[1], registry.ErrUnknownTask) {
			t.Errorf("task 1: %v, want ErrUnknownTask", byID[1])
		}
		for _, id := range []int64{2, 3} {
			if !errors.Is(byID[id], registry.ErrBadArgs) {
				t.Errorf("task %d: %v, want ErrBadArgs", id, byID[id])
			}
		}
		var pe *PanicError
		if !errors.As(byID[5], &pe) || pe.Value != "oh" || len(pe.PCs) == 0 || len(pe.Stack) == 0 {
			t.Errorf("task 5: %#v, want a *PanicError with value and stack", byID[5])
		}
		if byID[4] == nil || byID[4].Error() != "boom" {
			t.Errorf("task 4: %v, want boom", byID[4])
		}
	})
}

func TestForeman_GracefulStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2, GracefulTimeout: 10 * time.Second}, nil)
		h.src.add(registry.SleepTask, `{"ms": 3000}`, 5)
		h.start()
		synctest.Wait() // two running, three queued
		time.Sleep(time.Second)
		h.stop()
		synctest.Wait()
		h.src.mu.Lock()
		h.src.stopped = true
		h.src.mu.Unlock()
		start := time.Now()
		h.wait(t)
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("stop took %v, want the 2s the running tasks had left", d)
		}
		if c := h.f.Counters(); c != (Counters{Done: 2}) {
			t.Errorf("counters = %+v, want 2 done", c)
		}
		if n := h.src.pending(); n != 3 {
			t.Errorf("%d tasks left queued, want 3", n)
		}
	})
}

func TestForeman_GracefulTimeoutInterrupts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release) // after Run returned: the bubble must end with no goroutine left
		h := newHarness(t, Config{Workers: 3, GracefulTimeout: 2 * time.Second}, func(r *registry.Registry) {
			// Ignores its context: abandoned after HardStopWait.
			registry.Register(r, "stubborn", func(ctx context.Context, _ struct{}) error {
				<-release
				return nil
			})
		})
		h.src.add(registry.SleepTask, `{"ms": 500}`, 1)   // finishes in time
		h.src.add(registry.SleepTask, `{"ms": 60000}`, 1) // cut off, returns on cancel
		h.src.add("stubborn", ``, 1)                      // cut off, never returns
		h.src.add(registry.SleepTask, `{"ms": 60000}`, 1) // stays queued
		h.start()
		synctest.Wait()
		h.stop()
		start := time.Now()
		h.wait(t)
		// 2s graceful + 1s HardStopWait for the stubborn one.
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("stop took %v, want 3s", d)
		}
		if c := h.f.Counters(); c != (Counters{Done: 1, Interrupted: 2}) {
			t.Errorf("counters = %+v, want 1 done, 2 interrupted", c)
		}
		if errs, _ := h.rep.snapshot(); len(errs) != 0 {
			t.Errorf("interrupted tasks were reported as errors: %v", errs)
		}
		if n := h.src.pending(); n != 1 {
			t.Errorf("%d tasks left queued, want 1", n)
		}
	})
}

func TestForeman_RepeatedStopDoesNotExtendDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 1, GracefulTimeout: 5 * time.Second}, nil)
		h.src.add(registry.SleepTask, `{"ms": 60000}`, 1)
		h.start()
		synctest.Wait()
		start := time.Now()
		h.stop()
		time.Sleep(4 * time.Second)
		// A later Shutdown with a longer deadline must not extend the first.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := h.f.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		h.wait(t)
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("stopped after %v, want the first deadline, 5s", d)
		}
	})
}

func TestForeman_Shutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2}, nil)
		h.src.add(registry.SleepTask, `{"ms": 1000}`, 1)
		h.src.add(registry.SleepTask, `{"ms": 60000}`, 1)
		h.start()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err := h.f.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
		}
		h.wait(t)
		if c := h.f.Counters(); c != (Counters{Done: 1, Interrupted: 1}) {
			t.Errorf("counters = %+v", c)
		}
		// Idempotent, and quick once stopped.
		if err := h.f.Shutdown(context.Background()); err != nil {
			t.Errorf("second Shutdown = %v", err)
		}
		if err := h.f.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
			t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
		}
	})
}

func TestForeman_ShutdownCleanWhenTasksFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2}, nil)
		h.src.add(registry.SleepTask, `{"ms": 1000}`, 2)
		h.start()
		synctest.Wait()
		if err := h.f.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		h.wait(t)
		if c := h.f.Counters(); c != (Counters{Done: 2}) {
			t.Errorf("counters = %+v", c)
		}
	})
}

func TestForeman_ClaimErrorsRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{PollInterval: time.Minute}, nil)
		h.src.err = fmt.Errorf("claim tasks: %w", queue.ErrBusy)
		h.src.add(registry.NoopTask, ``, 2)
		h.start()
		time.Sleep(time.Second)
		synctest.Wait()
		h.src.mu.Lock()
		h.src.err = nil
		h.src.mu.Unlock()
		time.Sleep(2 * time.Second)
		if c := h.f.Counters(); c.Done != 2 {
			t.Errorf("after the database recovered: %+v, want 2 done (retries must not wait for the 1m poll)", c)
		}
		h.stop()
		h.wait(t)
		errs, ids := h.rep.snapshot()
		if len(errs) == 0 || !errors.Is(errs[0], queue.ErrBusy) || ids[0] != 0 {
			t.Errorf("reports = %v %v, want the claim error with no task", errs, ids)
		}
	})
}

func TestOutcome_String(t *testing.T) {
	for o, want := range map[Outcome]string{Done: "done", Failed: "failed", Panicked: "panicked",
		Discarded: "discarded", Interrupted: "interrupted", Cancelled: "cancelled", Outcome(9): "Outcome(9)"} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(o), got, want)
		}
	}
}

func TestForeman_ClaimsCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 16}, nil)
		h.src.add(registry.SleepTask, `{"ms": 1}`, 320)
		h.start()
		waitFor(t, "320 tasks", func() bool { return h.f.Counters().Done == 320 })
		h.stop()
		h.wait(t)
		// Full claims of 16 would take 20, half batches 40; claims of
		// single freed slots 320. Handlers that finish in the same instant
		// may reach the loop in any grouping, so anything from full to half
		// batches is right.
		if h.src.claims > 45 {
			t.Errorf("%d claims for 320 tasks with 16 workers, want 20 to 40", h.src.claims)
		}
	})
}

func TestForeman_FreedSlotIsFilledWithinClaimDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan time.Time, 1)
		h := newHarness(t, Config{Workers: 16}, func(r *registry.Registry) {
			registry.Register(r, "probe", func(ctx context.Context, _ struct{}) error {
				started <- time.Now()
				return nil
			})
		})
		h.src.add(registry.SleepTask, `{"ms": 1000}`, 1)
		h.src.add(registry.SleepTask, `{"ms": 60000}`, 15)
		h.src.add("probe", ``, 1)
		h.start()
		begin := time.Now()
		got := <-started
		// One slot frees at 1s; the other 15 stay busy. The queued task
		// must not wait for half the pool to free up.
		if wait := got.Sub(begin); wait < time.Second || wait > time.Second+claimDelay {
			t.Errorf("queued task started after %v, want within %v of the slot freeing at 1s", wait, claimDelay)
		}
		h.stop()
		h.wait(t)
	})
}

// reclaimingSource is a fakeSource that can reclaim disk space, and
// records the order of claims and reclaims.
type reclaimingSource struct {
	*fakeSource
	mu         sync.Mutex
	reclaimErr error // returned by ReclaimSpace while set
	events     []string
}

func (s *reclaimingSource) Claim(ctx context.Context, n int) ([]queue.Task, error) {
	ts, err := s.fakeSource.Claim(ctx, n)
	s.record("claim", err)
	return ts, err
}

func (s *reclaimingSource) ReclaimSpace(ctx context.Context) error {
	s.mu.Lock()
	err := s.reclaimErr
	s.mu.Unlock()
	s.record("reclaim", err)
	return err
}

func (s *reclaimingSource) record(what string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		what += " failed"
	}
	s.events = append(s.events, what)
}

func (s *reclaimingSource) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func TestForeman_ReclaimsSpaceBeforeClaimingAfterDiskFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{PollInterval: time.Second}, nil)
		full := fmt.Errorf("claim tasks: %w", queue.ErrFull)
		src := &reclaimingSource{fakeSource: h.src, reclaimErr: full}
		h.f.cfg.Source = src
		h.src.add(registry.NoopTask, "", 5)
		h.src.mu.Lock()
		h.src.err = full
		h.src.mu.Unlock()
		h.start()
		waitFor(t, "a reclaim to fail", func() bool { return slices.Contains(src.snapshot(), "reclaim failed") })
		// Room is made, but the log's space is not given back yet: the
		// foreman must not claim (and use the room up) meanwhile.
		h.src.mu.Lock()
		h.src.err = nil
		h.src.mu.Unlock()
		time.Sleep(5 * time.Second)
		src.mu.Lock()
		src.reclaimErr = nil
		src.mu.Unlock()
		waitFor(t, "5 tasks to run", func() bool { return h.f.Counters().Done == 5 })
		h.stop()
		h.wait(t)

		ev := src.snapshot()
		if ev[0] != "claim failed" {
			t.Fatalf("events %v, want a failed claim first", ev)
		}
		ok := slices.Index(ev, "reclaim")
		if ok < 0 {
			t.Fatalf("events %v: no successful reclaim", ev)
		}
		for i, e := range ev[1:ok] {
			if e != "reclaim failed" {
				t.Errorf("event %d is %q, between the failed claim and the successful reclaim: want only reclaims (all %v)", i+1, e, ev)
			}
		}
		if ok+1 >= len(ev) || ev[ok+1] != "claim" {
			t.Errorf("events %v: want a claim right after the reclaim", ev)
		}
	})
}

func TestForeman_NoReclaimAfterOtherClaimErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{PollInterval: time.Second}, nil)
		src := &reclaimingSource{fakeSource: h.src}
		h.f.cfg.Source = src
		h.src.add(registry.NoopTask, "", 3)
		h.src.mu.Lock()
		h.src.err = fmt.Errorf("claim tasks: %w", queue.ErrBusy)
		h.src.mu.Unlock()
		h.start()
		waitFor(t, "a claim to fail", func() bool { return slices.Contains(src.snapshot(), "claim failed") })
		h.src.mu.Lock()
		h.src.err = nil
		h.src.mu.Unlock()
		waitFor(t, "3 tasks to run", func() bool { return h.f.Counters().Done == 3 })
		h.stop()
		h.wait(t)
		if ev := src.snapshot(); slices.Contains(ev, "reclaim") || slices.Contains(ev, "reclaim failed") {
			t.Errorf("events %v: reclaimed space after a busy database, want only after a full disk", ev)
		}
	})
}

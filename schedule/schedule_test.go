package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// clock is a settable Now in UTC, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func at(s string) time.Time {
	t, err := time.Parse(time.DateTime, s)
	if err != nil {
		panic(err)
	}
	return t
}

// mustQueue opens a queue on dir, a new one per call: two calls on one dir
// are two processes' handles on the same database file.
func mustQueue(t testing.TB, dir string, cfg ...queue.Config) *queue.Queue {
	t.Helper()
	var c queue.Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	c.Dir = dir
	q, err := queue.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustNew returns a Scheduler on q whose stored state is synced, as Run
// does at its start.
func mustNew(t testing.TB, q *queue.Queue, c *clock, schedules ...Schedule) *Scheduler {
	t.Helper()
	s, err := New(Config{Queue: q, Schedules: schedules, Logger: testLogger(t), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.sync(context.Background(), s.entries); err != nil {
		t.Fatal(err)
	}
	return s
}

// pending counts the queued tasks.
func pending(t testing.TB, q *queue.Queue) int64 {
	t.Helper()
	st, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}

// claimAll takes every ready task off the queue.
func claimAll(t testing.TB, q *queue.Queue) []queue.Task {
	t.Helper()
	ts, err := q.Claim(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func mustList(t testing.TB, s *Scheduler) []Entry {
	t.Helper()
	es, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestParseSpec(t *testing.T) {
	for _, spec := range []string{
		"*/5 * * * *", "0 6 * * 1-5", "@hourly", "@daily", "@weekly", "@monthly", "@yearly",
		"@every 30s", "@every 1h30m", "CRON_TZ=Europe/Paris 0 9 * * *", "CRON_TZ=UTC @every 5s",
	} {
		if _, err := parseSpec(spec); err != nil {
			t.Errorf("parseSpec(%q) = %v, want nil", spec, err)
		}
	}
	for _, tc := range []struct{ spec, want string }{
		{"", "empty"},
		{"* * * *", "expected exactly 5 fields"},
		{"61 * * * *", "61"},
		{"*/5 * * * * *", "expected exactly 5 fields"},
		{"@sometimes", "unrecognized descriptor"},
		{"@every 500ms", "at least 1s"},
		{"@every 1.5s", "whole seconds"},
		{"@every -1s", "at least 1s"},
		{"@every soon", "failed to parse duration"},
		{"CRON_TZ=Nowhere/Special 0 9 * * *", "bad location"},
		{"TZ=0", "does not parse"}, // panics inside the parser
		{"TZ=TZ=TZ=", "does not parse"},
	} {
		_, err := parseSpec(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrBadSchedule) {
			t.Errorf("parseSpec(%q) = %v, want an ErrBadSchedule containing %q", tc.spec, err, tc.want)
		}
	}
}

func TestNew_errors(t *testing.T) {
	q := mustQueue(t, t.TempDir())
	reg := registry.New()
	registry.RegisterBuiltins(reg)
	ok := Schedule{Name: "ok", Spec: "@hourly", Task: registry.EchoTask, Args: json.RawMessage(`{"msg":"hi"}`)}
	for _, tc := range []struct {
		name   string
		scheds []Schedule
		want   string
		is     error
	}{
		{"no name", []Schedule{{Spec: "@hourly", Task: "t"}}, "schedules[0]", ErrBadSchedule},
		{"twice", []Schedule{ok, ok}, `schedule "ok": the name is used twice`, ErrBadSchedule},
		{"no task", []Schedule{{Name: "a", Spec: "@hourly"}}, `schedule "a": task is empty`, ErrBadSchedule},
		{"bad spec", []Schedule{{Name: "a", Spec: "every hour", Task: registry.NoopTask}}, `schedule "a": spec "every hour"`, ErrBadSchedule},
		{"never fires", []Schedule{{Name: "a", Spec: "0 0 30 2 *", Task: registry.NoopTask}}, "never fires", ErrBadSchedule},
		{"bad json", []Schedule{{Name: "a", Spec: "@hourly", Task: registry.NoopTask, Args: json.RawMessage(`{`)}}, "not valid JSON", ErrBadSchedule},
		{"run at", []Schedule{{Name: "a", Spec: "@hourly", Task: registry.NoopTask,
			Options: registry.Options{RunAt: time.Now()}}}, "RunAt", ErrBadSchedule},
		{"bad options", []Schedule{{Name: "a", Spec: "@hourly", Task: registry.NoopTask,
			Options: registry.Options{Timeout: -time.Second}}}, `schedule "a"`, registry.ErrBadOptions},
		{"debounce", []Schedule{{Name: "a", Spec: "@hourly", Task: registry.NoopTask,
			Options: registry.Options{Key: "k", OnDuplicate: registry.Replace, Debounce: time.Minute}}}, `schedule "a": bad task options: Debounce is set`, registry.ErrBadOptions},
		{"replace without a key", []Schedule{{Name: "a", Spec: "@hourly", Task: registry.NoopTask,
			Options: registry.Options{OnDuplicate: registry.Replace}}}, `schedule "a": bad task options: OnDuplicate Replace needs a Key`, registry.ErrBadOptions},
		{"unknown task", []Schedule{{Name: "a", Spec: "@hourly", Task: "no.such"}}, `schedule "a": unknown task "no.such"`, registry.ErrUnknownTask},
		{"bad args", []Schedule{{Name: "a", Spec: "@hourly", Task: registry.SleepTask, Args: json.RawMessage(`{"ms":"x"}`)}}, `schedule "a"`, registry.ErrBadArgs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Config{Queue: q, Registry: reg, Schedules: tc.scheds})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Errorf("New = %v, want an error containing %q matching %v", err, tc.want, tc.is)
			}
			if err := Validate(tc.scheds, reg); err == nil || !errors.Is(err, tc.is) {
				t.Errorf("Validate = %v, want an error matching %v", err, tc.is)
			}
		})
	}
	if _, err := New(Config{Schedules: []Schedule{ok}}); err == nil || !strings.Contains(err.Error(), "Queue") {
		t.Errorf("New without a Queue = %v, want an error naming Queue", err)
	}
	if _, err := New(Config{Queue: q, Registry: reg, Schedules: []Schedule{ok}}); err != nil {
		t.Errorf("New(ok) = %v", err)
	}
	// Without a registry, the task is not checked.
	if err := Validate([]Schedule{{Name: "a", Spec: "@hourly", Task: "no.such"}}, nil); err != nil {
		t.Errorf("Validate without a registry = %v, want nil", err)
	}
	// Every problem is reported.
	err := Validate([]Schedule{{Name: "a", Spec: "x", Task: "t"}, {Name: "b", Spec: "@hourly"}}, nil)
	if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("Validate(two bad) = %v, want both named", err)
	}
}

func TestScheduler_cron(t *testing.T) {
	q := mustQueue(t, t.TempDir())
	c := newClock(at("2024-05-01 12:01:30"))
	s := mustNew(t, q, c, Schedule{Name: "five", Spec: "*/5 * * * *", Task: "t", Args: json.RawMessage(`{"n":1}`)})
	ctx := context.Background()

	// A new schedule waits for its first tick.
	if next := s.step(ctx); !next.Equal(at("2024-05-01 12:05:00")) {
		t.Fatalf("step at 12:01:30 = %v, want 12:05", next)
	}
	if n := pending(t, q); n != 0 {
		t.Fatalf("%d tasks before the first tick, want 0", n)
	}
	for _, now := range []string{"12:05:00", "12:07:00", "12:10:00.5", "12:14:59", "12:15:01"} {
		c.set(at("2024-05-01 " + now))
		s.step(ctx)
	}
	ts := claimAll(t, q)
	if len(ts) != 3 {
		t.Fatalf("%d tasks after the ticks at 12:05, 12:10 and 12:15, want 3", len(ts))
	}
	for _, tk := range ts {
		if tk.Name != "t" || string(tk.Args) != `{"n":1}` {
			t.Errorf("task %s %s, want t {\"n\":1}", tk.Name, tk.Args)
		}
	}
	es := mustList(t, s)
	if len(es) != 1 || !es[0].Next.Equal(at("2024-05-01 12:20:00")) || !es[0].Last.Equal(at("2024-05-01 12:15:00")) {
		t.Errorf("List = %+v, want next 12:20 and last 12:15", es)
	}
	if es[0].Name != "five" || es[0].Spec != "*/5 * * * *" || es[0].Task != "t" {
		t.Errorf("List = %+v, want five, its spec and task", es)
	}
}

func TestScheduler_every(t *testing.T) {
	q := mustQueue(t, t.TempDir())
	c := newClock(at("2024-05-01 12:00:00").Add(300 * time.Millisecond))
	s := mustNew(t, q, c, Schedule{Name: "half", Spec: "@every 30s", Task: "t"})
	ctx := context.Background()
	first := s.step(ctx)
	if want := at("2024-05-01 12:00:30"); !first.Equal(want) {
		t.Fatalf("first tick %v, want %v (on the second)", first, want)
	}
	for range 4 {
		c.set(s.step(ctx))
		s.step(ctx)
	}
	if n := pending(t, q); n != 4 {
		t.Errorf("%d tasks after 4 ticks, want 4", n)
	}
	if next := s.step(ctx); !next.Equal(at("2024-05-01 12:02:30")) {
		t.Errorf("next = %v, want 12:02:30", next)
	}
	// Args default to null, which decodes as the zero value.
	if ts := claimAll(t, q); string(ts[0].Args) != "null" {
		t.Errorf("args %q, want null", ts[0].Args)
	}
}

func TestScheduler_restart(t *testing.T) {
	dir := t.TempDir()
	c := newClock(at("2024-05-01 12:01:30"))
	sc := Schedule{Name: "five", Spec: "*/5 * * * *", Task: "t"}
	ctx := context.Background()

	q1 := mustQueue(t, dir)
	s1 := mustNew(t, q1, c, sc)
	c.set(at("2024-05-01 12:05:00"))
	s1.step(ctx)
	q1.Close()

	// Restarted in the same tick's minute: the tick is not fired again, and
	// the next one is the stored one.
	c.set(at("2024-05-01 12:05:20"))
	q2 := mustQueue(t, dir)
	s2 := mustNew(t, q2, c, sc)
	if next := s2.step(ctx); !next.Equal(at("2024-05-01 12:10:00")) {
		t.Errorf("after a restart next = %v, want 12:10", next)
	}
	if n := pending(t, q2); n != 1 {
		t.Errorf("%d tasks, want 1: the restart fired the tick again", n)
	}

	// A changed task keeps the due time; a changed spec counts from now.
	sc.Task = "t2"
	s3 := mustNew(t, q2, c, sc)
	if es := mustList(t, s3); !es[0].Next.Equal(at("2024-05-01 12:10:00")) || es[0].Task != "t2" {
		t.Errorf("with another task: %+v, want next 12:10 and task t2", es[0])
	}
	sc.Spec = "*/7 * * * *"
	// Before Run syncs, List already shows the due time Run will set.
	s4, err := New(Config{Queue: q2, Schedules: []Schedule{sc}, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if es := mustList(t, s4); !es[0].Next.Equal(at("2024-05-01 12:07:00")) {
		t.Errorf("List before sync with another spec: next %v, want 12:07", es[0].Next)
	}
	s4 = mustNew(t, q2, c, sc)
	if es := mustList(t, s4); !es[0].Next.Equal(at("2024-05-01 12:07:00")) || !es[0].Last.Equal(at("2024-05-01 12:05:00")) {
		t.Errorf("with another spec: %+v, want next 12:07 and last 12:05 kept", es[0])
	}

	// A schedule no longer configured keeps its row, and is not listed.
	other := mustNew(t, q2, c, Schedule{Name: "other", Spec: "@hourly", Task: "t"})
	if es := mustList(t, other); len(es) != 1 || es[0].Name != "other" {
		t.Errorf("List = %+v, want only other", es)
	}
	all, err := Read(ctx, q2.Backend())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "five" || all[1].Name != "other" || all[0].Task != "t2" || all[0].Spec != sc.Spec {
		t.Errorf("Read = %+v, want five (with its new spec and task) and other", all)
	}
}

// Two schedulers on one database, each with its own Queue, as two
// processes would be, take the same ticks at the same moments: every tick
// is enqueued once.
func TestScheduler_race(t *testing.T) {
	dir := t.TempDir()
	c := newClock(at("2024-05-01 12:00:00"))
	scheds := []Schedule{
		{Name: "every", Spec: "@every 10s", Task: "a"},
		{Name: "cron", Spec: "* * * * *", Task: "b"},
	}
	s1 := mustNew(t, mustQueue(t, dir), c, scheds...)
	q2 := mustQueue(t, dir)
	s2 := mustNew(t, q2, c, scheds...)
	ctx := context.Background()
	const minutes = 5
	for range minutes * 6 {
		c.advance(10 * time.Second)
		var wg sync.WaitGroup
		wg.Go(func() { s1.step(ctx) })
		wg.Go(func() { s2.step(ctx) })
		wg.Wait()
	}
	got := map[string]int{}
	for _, tk := range claimAll(t, q2) {
		got[tk.Name]++
	}
	if got["a"] != minutes*6 || got["b"] != minutes {
		t.Errorf("tasks %v, want a:%d and b:%d, one per tick", got, minutes*6, minutes)
	}
}

func TestScheduler_missed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    string
		catchUp bool
		down    time.Duration // from the tick at 12:05
		want    int
		last    string
		next    string
	}{
		{"cron once", "*/5 * * * *", false, 57 * time.Minute, 1, "13:00:00", "13:05:00"},
		{"cron catch up", "*/5 * * * *", true, 57 * time.Minute, 11, "13:00:00", "13:05:00"},
		{"every once", "@every 1m", false, 10*time.Minute + 30*time.Second, 1, "12:15:00", "12:16:00"},
		{"every catch up", "@every 1m", true, 10*time.Minute + 30*time.Second, 10, "12:15:00", "12:16:00"},
		{"every capped", "@every 1s", true, time.Hour, CatchUpLimit, "13:05:00", "13:05:01"},
		{"cron capped", "* * * * *", true, 3 * time.Hour, CatchUpLimit, "15:05:00", "15:06:00"},
		{"long down", "* * * * *", false, 365 * 24 * time.Hour, 1, "", "12:06:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			c := newClock(at("2024-05-01 12:04:00"))
			sc := Schedule{Name: "s", Spec: tc.spec, Task: "t", CatchUp: tc.catchUp}
			q1 := mustQueue(t, dir)
			s1 := mustNew(t, q1, c, sc)
			c.set(at("2024-05-01 12:05:00"))
			s1.step(ctx)
			claimAll(t, q1)
			q1.Close()

			c.set(at("2024-05-01 12:05:00").Add(tc.down))
			q2 := mustQueue(t, dir)
			s2 := mustNew(t, q2, c, sc)
			s2.step(ctx)
			if n := len(claimAll(t, q2)); n != tc.want {
				t.Errorf("%d tasks for the missed ticks, want %d", n, tc.want)
			}
			es := mustList(t, s2)
			day := c.Now().Format(time.DateOnly) + " "
			if tc.last != "" && !es[0].Last.Equal(at(day+tc.last)) {
				t.Errorf("last %v, want %s", es[0].Last, tc.last)
			}
			if !es[0].Next.Equal(at(day + tc.next)) {
				t.Errorf("next %v, want %s", es[0].Next, tc.next)
			}
			// Taken: a step at the same moment fires nothing more.
			s2.step(ctx)
			if n := pending(t, q2); n != 0 {
				t.Errorf("%d tasks after a second step, want 0", n)
			}
		})
	}
}

func TestScheduler_key(t *testing.T) {
	q := mustQueue(t, t.TempDir())
	c := newClock(at("2024-05-01 12:00:00"))
	s := mustNew(t, q, c, Schedule{Name: "k", Spec: "@every 1m", Task: "t", Options: registry.Options{Key: "only-one", Priority: 5}})
	ctx := context.Background()
	for range 3 {
		c.advance(time.Minute)
		s.step(ctx)
	}
	ts := claimAll(t, q)
	if len(ts) != 1 || ts[0].Priority != 5 || ts[0].Key != "only-one" {
		t.Fatalf("tasks %+v, want one with priority 5 and its key: later ticks skipped while it is pending", ts)
	}
	// The skipped ticks were taken all the same.
	if es := mustList(t, s); !es[0].Next.Equal(at("2024-05-01 12:04:00")) {
		t.Errorf("next %v, want 12:04", es[0].Next)
	}
	c.advance(time.Minute)
	s.step(ctx)
	if n := pending(t, q); n != 1 {
		t.Errorf("%d tasks once the key is free, want 1", n)
	}
}

// A tick that cannot be enqueued is not taken: it is retried with a
// backoff and fires once the queue accepts it.
func TestScheduler_retry(t *testing.T) {
	// The queue checks tasks against a registry that lacks the task until
	// it is registered below.
	reg := registry.New()
	q := mustQueue(t, t.TempDir(), queue.Config{Registry: reg})
	c := newClock(at("2024-05-01 12:00:00"))
	s := mustNew(t, q, c, Schedule{Name: "r", Spec: "@every 1m", Task: "late"})
	ctx := context.Background()
	c.set(at("2024-05-01 12:01:00"))
	next := s.step(ctx)
	if want := at("2024-05-01 12:01:01"); !next.Equal(want) {
		t.Errorf("after a failed tick next = %v, want a retry at %v", next, want)
	}
	if es := mustList(t, s); !es[0].Next.Equal(at("2024-05-01 12:01:00")) {
		t.Errorf("stored next %v, want the failed tick 12:01 still due", es[0].Next)
	}
	c.set(next)
	if next := s.step(ctx); !next.Equal(at("2024-05-01 12:01:03")) {
		t.Errorf("after a second failure next = %v, want 12:01:03 (backoff doubled)", next)
	}
	registry.Register(reg, "late", func(context.Context, struct{}) error { return nil })
	c.set(at("2024-05-01 12:01:03"))
	if next := s.step(ctx); !next.Equal(at("2024-05-01 12:02:00")) {
		t.Errorf("after the retry worked next = %v, want 12:02", next)
	}
	if n := pending(t, q); n != 1 {
		t.Errorf("%d tasks, want the retried tick's", n)
	}
}

func TestScheduler_Run(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		q, err := queue.Open(context.Background(), queue.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		s, err := New(Config{Queue: q, Logger: testLogger(t), Schedules: []Schedule{
			{Name: "ten", Spec: "@every 10s", Task: "a"},
			{Name: "hourly", Spec: "@hourly", Task: "b"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()

		// The clock moves only while every goroutine is blocked: a Run
		// that polled instead of sleeping would hang here.
		time.Sleep(time.Hour + time.Second)
		synctest.Wait()
		got := map[string]int{}
		for _, tk := range claimAll(t, q) {
			got[tk.Name]++
		}
		if got["a"] != 360 || got["b"] != 1 {
			t.Errorf("tasks after an hour %v, want a:360 b:1", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}

		// Run again: it picks up where it stopped.
		ctx, cancel = context.WithCancel(context.Background())
		go func() { done <- s.Run(ctx) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := pending(t, q); n != 1 {
			t.Errorf("%d tasks 10s after a restart, want 1", n)
		}
		cancel()
		<-done
	})
}

func TestScheduler_Run_noSchedules(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		q, err := queue.Open(context.Background(), queue.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		s, err := New(Config{Queue: q, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

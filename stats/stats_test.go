package stats

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/storage/sqlite"
)

func mustOpen(t testing.TB) *sqlite.Backend {
	t.Helper()
	return openIn(t, t.TempDir(), 5*time.Second)
}

// openIn opens the SQLite backend of the database in dir, closed at the
// test's end.
func openIn(t testing.TB, dir string, busy time.Duration) *sqlite.Backend {
	t.Helper()
	b, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "snappea.db"),
		WakeupDir: filepath.Join(dir, "wakeup"), BusyTimeout: busy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// clock is a settable Now, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// logs records what a Recorder logs.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func mustNew(t testing.TB, cfg Config) *Recorder {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRead(t testing.TB, db Store, since time.Time) []Row {
	t.Helper()
	rows, err := Read(context.Background(), db, since)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func finish(r *Recorder, name string, o foreman.Outcome, d time.Duration) {
	r.Finished(&queue.Task{Name: name}, o, d)
}

// noon is a minute boundary.
var noon = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// row builds an expected Row.
func row(minute time.Time, task string, count, failures int64, total, max time.Duration, backlog int64) Row {
	return Row{Minute: minute, Task: task, Count: count, Failures: failures, Total: total, Max: max, Backlog: backlog}
}

func checkRows(t *testing.T, got, want []Row) {
	t.Helper()
	eq := func(a, b Row) bool {
		return a.Minute.Equal(b.Minute) && a.Task == b.Task && a.Count == b.Count && a.Failures == b.Failures &&
			a.Total == b.Total && a.Max == b.Max && a.Backlog == b.Backlog
	}
	if !slices.EqualFunc(got, want, eq) {
		t.Errorf("rows:\n got %v\nwant %v", got, want)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Store") {
		t.Errorf("New without Store: err = %v, want one naming Store", err)
	}
	r := mustNew(t, Config{Store: mustOpen(t)})
	if r.cfg.Retention != DefaultRetention {
		t.Errorf("default Retention = %v, want %v", r.cfg.Retention, DefaultRetention)
	}
}

func TestMinuteOf(t *testing.T) {
	for _, c := range []struct {
		in   time.Time
		want int64
	}{
		{noon, noon.Unix()},
		{noon.Add(59*time.Second + 999*time.Millisecond), noon.Unix()},
		{noon.Add(-time.Nanosecond), noon.Unix() - 60},
		{time.Unix(-1, 0), -60},
		{time.Unix(0, 0), 0},
	} {
		if got := snappea.MinuteOf(c.in); got != c.want {
			t.Errorf("MinuteOf(%v) = %d, want %d", c.in.UTC(), got, c.want)
		}
	}
}

func TestIsFailure(t *testing.T) {
	for o, want := range map[foreman.Outcome]bool{
		foreman.Done: false, foreman.Failed: true, foreman.Panicked: true,
		foreman.Discarded: true, foreman.Interrupted: false,
	} {
		if got := IsFailure(o); got != want {
			t.Errorf("IsFailure(%v) = %v, want %v", o, got, want)
		}
	}
}

func TestRecorder_write(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	clk := newClock(noon.Add(10 * time.Second))
	r := mustNew(t, Config{Store: db, Now: clk.Now})

	finish(r, "a", foreman.Done, 10*time.Millisecond)
	finish(r, "a", foreman.Failed, 30*time.Millisecond)
	finish(r, "a", foreman.Panicked, 5*time.Millisecond)
	finish(r, "b", foreman.Discarded, 0)
	finish(r, "b", foreman.Interrupted, time.Second)

	t.Run("current minute is not written", func(t *testing.T) {
		if err := r.write(ctx, false); err != nil {
			t.Fatal(err)
		}
		checkRows(t, mustRead(t, db, time.Time{}), nil)
	})
	t.Run("ended minute is written", func(t *testing.T) {
		clk.set(noon.Add(61 * time.Second))
		finish(r, "a", foreman.Done, time.Millisecond) // in 12:01, not written yet
		if err := r.write(ctx, false); err != nil {
			t.Fatal(err)
		}
		checkRows(t, mustRead(t, db, time.Time{}), []Row{
			row(noon, "a", 3, 2, 45*time.Millisecond, 30*time.Millisecond, -1),
			row(noon, "b", 2, 1, time.Second, time.Second, -1),
		})
	})
	t.Run("Flush writes the current minute", func(t *testing.T) {
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		got := mustRead(t, db, noon.Add(time.Minute+30*time.Second)) // since: within 12:01
		checkRows(t, got, []Row{row(noon.Add(time.Minute), "a", 1, 0, time.Millisecond, time.Millisecond, -1)})
	})
}

// A minute written twice, by one recorder or by a second one after a
// restart, adds up.
func TestRecorder_Flush_AddsUp(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	clk := newClock(noon.Add(10 * time.Second))
	r := mustNew(t, Config{Store: db, Now: clk.Now})

	finish(r, "a", foreman.Done, 20*time.Millisecond)
	finish(r, "a", foreman.Failed, 10*time.Millisecond)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	clk.advance(10 * time.Second)
	finish(r, "a", foreman.Done, 5*time.Millisecond)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Nothing new: a flush writes no duplicate.
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := mustNew(t, Config{Store: db, Now: clk.Now})
	finish(restarted, "a", foreman.Failed, 50*time.Millisecond)
	if err := restarted.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkRows(t, mustRead(t, db, noon), []Row{row(noon, "a", 4, 2, 85*time.Millisecond, 50*time.Millisecond, -1)})
}

func TestRecorder_Backlog(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	clk := newClock(noon.Add(10 * time.Second))
	var backlog atomic.Int64
	failBacklog := atomic.Bool{}
	lg := &logs{}
	r := mustNew(t, Config{Store: db, Now: clk.Now, Logger: slog.New(lg),
		Backlog: func(ctx context.Context) (int64, error) {
			if failBacklog.Load() {
				return 0, sql.ErrConnDone
			}
			return backlog.Load(), nil
		}})

	finish(r, "a", foreman.Done, time.Millisecond)
	backlog.Store(7)
	clk.set(noon.Add(time.Minute + time.Second))
	if err := r.write(ctx, false); err != nil { // samples for 12:00
		t.Fatal(err)
	}
	backlog.Store(3)
	clk.set(noon.Add(2*time.Minute + time.Second))
	if err := r.write(ctx, false); err != nil { // 12:01: a sample, no task
		t.Fatal(err)
	}
	backlog.Store(9)
	if err := r.Flush(ctx); err != nil { // 12:02, partial
		t.Fatal(err)
	}
	backlog.Store(4)
	clk.advance(10 * time.Second)
	if err := r.Flush(ctx); err != nil { // 12:02 again: replaces the sample
		t.Fatal(err)
	}
	failBacklog.Store(true)
	clk.set(noon.Add(3*time.Minute + time.Second))
	finish(r, "a", foreman.Done, time.Millisecond)
	if err := r.Flush(ctx); err != nil { // 12:03: a task, no sample
		t.Fatal(err)
	}
	checkRows(t, mustRead(t, db, noon), []Row{
		row(noon, "a", 1, 0, time.Millisecond, time.Millisecond, 7),
		row(noon.Add(time.Minute), "", 0, 0, 0, 0, 3),
		row(noon.Add(2*time.Minute), "", 0, 0, 0, 0, 4),
		row(noon.Add(3*time.Minute), "a", 1, 0, time.Millisecond, time.Millisecond, -1),
	})
	if n := lg.count("WARN sampling the task backlog failed"); n != 1 {
		t.Errorf("%d warnings about the backlog, want 1; logs: %q", n, lg.msgs)
	}
}

func TestRecorder_Retention(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		retention time.Duration
		want      []string // tasks left after a write 8 days later
	}{
		{"default prunes after 7 days", 0, []string{"new"}},
		{"longer retention keeps", 9 * 24 * time.Hour, []string{"old", "new"}},
		{"negative keeps forever", -1, []string{"old", "new"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := mustOpen(t)
			clk := newClock(noon)
			r := mustNew(t, Config{Store: db, Now: clk.Now, Retention: c.retention,
				Backlog: func(context.Context) (int64, error) { return 1, nil }})
			finish(r, "old", foreman.Done, time.Millisecond)
			if err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			clk.advance(8 * 24 * time.Hour)
			finish(r, "new", foreman.Done, time.Millisecond)
			if err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, row := range mustRead(t, db, time.Time{}) {
				got = append(got, row.Task)
				if row.Backlog != 1 {
					t.Errorf("%s: backlog %d, want 1 (samples are pruned with their minute)", row.Task, row.Backlog)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("tasks left: %q, want %q", got, c.want)
			}
		})
	}
}

// failWrites makes every insert into the stats table fail until the
// returned function is called.
func failWrites(t *testing.T, b *sqlite.Backend) (restore func()) {
	t.Helper()
	if _, err := b.DB().Exec(`CREATE TRIGGER fail_stats BEFORE INSERT ON snappea_stats
		BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := b.DB().Exec(`DROP TRIGGER fail_stats`); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecorder_Flush_FailureKeepsCounts(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	clk := newClock(noon.Add(10 * time.Second))
	r := mustNew(t, Config{Store: db, Now: clk.Now, Backlog: func(context.Context) (int64, error) { return 5, nil }})

	finish(r, "a", foreman.Done, 10*time.Millisecond)
	restore := failWrites(t, db)
	if err := r.Flush(ctx); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Flush with failing writes: err = %v, want the trigger's error", err)
	}
	checkRows(t, mustRead(t, db, time.Time{}), nil)

	// Counted meanwhile, in the same minute and the next: added to what
	// was kept.
	finish(r, "a", foreman.Failed, 30*time.Millisecond)
	clk.advance(time.Minute)
	finish(r, "a", foreman.Done, time.Millisecond)
	restore()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkRows(t, mustRead(t, db, time.Time{}), []Row{
		row(noon, "a", 2, 1, 40*time.Millisecond, 30*time.Millisecond, 5),
		row(noon.Add(time.Minute), "a", 1, 0, time.Millisecond, time.Millisecond, 5),
	})
}

// Counts kept after a failed write are dropped once they are older than
// the retention: a database that stays broken does not grow memory
// without bound.
func TestRecorder_Flush_FailureDropsExpired(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	clk := newClock(noon)
	r := mustNew(t, Config{Store: db, Now: clk.Now, Retention: time.Hour})
	restore := failWrites(t, db)
	finish(r, "old", foreman.Done, time.Millisecond)
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded with failing writes")
	}
	clk.advance(2 * time.Hour)
	finish(r, "new", foreman.Done, time.Millisecond)
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded with failing writes")
	}
	restore()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := mustRead(t, db, time.Time{})
	if len(got) != 1 || got[0].Task != "new" {
		t.Errorf("rows %v, want only the recent one", got)
	}
}

func TestRecorder_Finished_Concurrent(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	clk := newClock(noon)
	r := mustNew(t, Config{Store: db, Now: clk.Now})
	const goroutines, each = 8, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			name := []string{"a", "b", "c"}[g%3]
			for i := range each {
				finish(r, name, foreman.Outcome(i%5), time.Duration(i)*time.Microsecond)
				if g == 0 && i%100 == 0 {
					clk.advance(20 * time.Second)
				}
			}
		})
	}
	// Writes race with the counting.
	wg.Go(func() {
		for range 20 {
			if err := r.write(ctx, false); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var total, failures int64
	var maxd time.Duration
	for _, s := range Summarize(mustRead(t, db, time.Time{})) {
		total += s.Count
		failures += s.Failures
		maxd = max(maxd, s.Max)
	}
	if total != goroutines*each {
		t.Errorf("counted %d tasks, want %d", total, goroutines*each)
	}
	// Outcomes cycle through done, failed, panicked, discarded,
	// interrupted: three in five are failures.
	if want := int64(goroutines * each * 3 / 5); failures != want {
		t.Errorf("counted %d failures, want %d", failures, want)
	}
	if want := (each - 1) * time.Microsecond; maxd != want {
		t.Errorf("max duration %v, want %v", maxd, want)
	}
}

// Run, on the fake clock of a synctest bubble: it writes each minute just
// after it ends, logs a failed write and retries it a minute later, and
// flushes the current minute when its context ends.
func TestRecorder_Run(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := openIn(t, t.TempDir(), 5*time.Second)
		lg := &logs{}
		r := mustNew(t, Config{Store: db, Logger: slog.New(lg)})
		start := time.Now() // 2000-01-01 00:00 UTC in a bubble: a minute boundary
		if start.Unix()%60 != 0 {
			t.Fatalf("bubble starts at %v, not at a minute boundary", start)
		}

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()

		time.Sleep(30 * time.Second)
		finish(r, "a", foreman.Done, time.Millisecond)
		time.Sleep(30*time.Second + writeDelay - time.Nanosecond)
		synctest.Wait()
		checkRows(t, mustRead(t, db, start), nil) // not yet
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		checkRows(t, mustRead(t, db, start), []Row{row(start, "a", 1, 0, time.Millisecond, time.Millisecond, -1)})

		// 00:01:01: a task in minute 1, a write at 00:02:01 that fails, the
		// retry at 00:03:01 that succeeds.
		finish(r, "a", foreman.Failed, 2*time.Millisecond)
		restore := failWrites(t, db)
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := lg.count("WARN writing task statistics failed"); n != 1 {
			t.Fatalf("%d warnings of a failed write, want 1; logs: %q", n, lg.msgs)
		}
		restore()
		time.Sleep(time.Minute)
		synctest.Wait()
		minute1 := start.Add(time.Minute)
		checkRows(t, mustRead(t, db, minute1), []Row{row(minute1, "a", 1, 1, 2*time.Millisecond, 2*time.Millisecond, -1)})

		// 00:03:01 + 20s: a task in the current minute, then a stop.
		time.Sleep(20 * time.Second)
		finish(r, "b", foreman.Done, 3*time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		minute3 := start.Add(3 * time.Minute)
		checkRows(t, mustRead(t, db, minute3), []Row{row(minute3, "b", 1, 0, 3*time.Millisecond, 3*time.Millisecond, -1)})
	})
}

// A final flush that fails is Run's error: those counts are lost.
func TestRecorder_Run_FinalFlushFails(t *testing.T) {
	db := mustOpen(t)
	r := mustNew(t, Config{Store: db})
	failWrites(t, db)
	finish(r, "a", foreman.Done, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err == nil || !strings.Contains(err.Error(), "final flush") {
		t.Errorf("Run = %v, want the final flush's error", err)
	}
}

func TestSummarize(t *testing.T) {
	m0, m1 := noon, noon.Add(time.Minute)
	for _, c := range []struct {
		name string
		rows []Row
		want []TaskSummary
	}{
		{"none", nil, nil},
		{"backlog only", []Row{row(m0, "", 0, 0, 0, 0, 4)}, nil},
		{"adds up per task, sorted", []Row{
			row(m0, "", 0, 0, 0, 0, 4),
			row(m0, "b", 2, 1, 4*time.Second, 3*time.Second, -1),
			row(m0, "a", 1, 0, time.Second, time.Second, -1),
			row(m1, "b", 2, 0, 2*time.Second, time.Second, -1),
		}, []TaskSummary{
			{Task: "a", Count: 1, Total: time.Second, Mean: time.Second, Max: time.Second},
			{Task: "b", Count: 4, Failures: 1, Total: 6 * time.Second, Mean: 1500 * time.Millisecond, Max: 3 * time.Second},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Summarize(c.rows); !slices.Equal(got, c.want) {
				t.Errorf("Summarize:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestRecorder_untilNextWrite(t *testing.T) {
	for _, c := range []struct {
		now  time.Duration // after noon
		want time.Duration
	}{
		{0, writeDelay},
		{writeDelay / 2, writeDelay / 2},
		{writeDelay, time.Minute},
		{30 * time.Second, 30*time.Second + writeDelay},
		{time.Minute - time.Nanosecond, writeDelay + time.Nanosecond},
	} {
		clk := newClock(noon.Add(c.now))
		r := &Recorder{now: clk.Now}
		if got := r.untilNextWrite(); got != c.want {
			t.Errorf("at noon+%v: untilNextWrite = %v, want %v", c.now, got, c.want)
		}
	}
}

func BenchmarkRecorder_Finished(b *testing.B) {
	r := mustNew(b, Config{Store: mustOpen(b)})
	tasks := []queue.Task{{Name: "email.send"}, {Name: "thumbnail"}, {Name: "digest.daily"}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Finished(&tasks[i%len(tasks)], foreman.Done, time.Millisecond)
		i++
	}
}

func BenchmarkRecorder_Finished_Parallel(b *testing.B) {
	r := mustNew(b, Config{Store: mustOpen(b)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		t := &queue.Task{Name: "email.send"}
		for pb.Next() {
			r.Finished(t, foreman.Done, time.Millisecond)
		}
	})
}

// A clock that goes back puts counts in their own minute all the same.
func TestRecorder_Finished_ClockBack(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t)
	clk := newClock(noon.Add(time.Minute + 10*time.Second))
	r := mustNew(t, Config{Store: db, Now: clk.Now})
	finish(r, "a", foreman.Done, time.Millisecond)
	clk.set(noon.Add(50 * time.Second))
	finish(r, "a", foreman.Done, 2*time.Millisecond)
	finish(r, "a", foreman.Done, 3*time.Millisecond)
	clk.set(noon.Add(time.Minute + 20*time.Second))
	finish(r, "a", foreman.Done, 4*time.Millisecond)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkRows(t, mustRead(t, db, time.Time{}), []Row{
		row(noon, "a", 2, 0, 5*time.Millisecond, 3*time.Millisecond, -1),
		row(noon.Add(time.Minute), "a", 2, 0, 5*time.Millisecond, 4*time.Millisecond, -1),
	})
}

func TestRow_JSON(t *testing.T) {
	b, err := json.Marshal(row(noon, "a", 2, 1, 3*time.Millisecond, 2*time.Millisecond, 4))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"minute":"2024-05-01T12:00:00Z","task":"a","count":2,"failures":1,"total_ns":3000000,"max_ns":2000000,"backlog":4}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
}

// While another connection holds the write lock, the final flush gives up
// after Config.StopFlushTimeout, not after the busy timeout, and says what
// it could not write.
func TestRecorder_Run_FinalFlushBoundedWhileLocked(t *testing.T) {
	dir := t.TempDir()
	db := openIn(t, dir, time.Minute)
	other, err := queue.OpenDB(t.Context(), filepath.Join(dir, "snappea.db"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), `ROLLBACK`)

	r := mustNew(t, Config{Store: db, StopFlushTimeout: 100 * time.Millisecond})
	finish(r, "a", foreman.Done, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err = r.Run(ctx)
	// Without the bound the flush waits the default 10s.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v with the database locked, want about StopFlushTimeout (100ms)", d)
	}
	if err == nil || !strings.Contains(err.Error(), "not written: 1 finished tasks in 1 rows") {
		t.Errorf("Run = %v, want the final flush's error saying what was not written", err)
	}
	if rows, tasks := r.Unwritten(); rows != 1 || tasks != 1 {
		t.Errorf("Unwritten = %d rows, %d tasks; want 1, 1", rows, tasks)
	}
}

// Through a Queue, a write takes its turn with the queue's other writers:
// the daemon passes its Queue as the Store.
func TestRecorder_QueueStore(t *testing.T) {
	ctx := context.Background()
	q, err := queue.Open(ctx, queue.Config{Dir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	clk := newClock(noon.Add(10 * time.Second))
	r := mustNew(t, Config{Store: q, Now: clk.Now})
	finish(r, "a", foreman.Done, 10*time.Millisecond)
	// Inside a write transaction of the queue's, the Recorder's write
	// fails at once instead of waiting for itself.
	if err := q.WriteTx(ctx, func(*sql.Tx) error { return r.Flush(ctx) }); !errors.Is(err, queue.ErrInsideInTx) {
		t.Errorf("Flush inside the queue's WriteTx = %v, want ErrInsideInTx: the write does not take the queue's turn", err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkRows(t, mustRead(t, q, time.Time{}), []Row{row(noon, "a", 1, 0, 10*time.Millisecond, 10*time.Millisecond, -1)})
}

package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/metrics"
	"github.com/snappea/snappea/queue"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func mustNew(t testing.TB, cfg metrics.Config) *metrics.Metrics {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	m, err := metrics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mustServe serves m on a free loopback port until the test ends and
// returns its base URL.
func mustServe(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	ln, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve = %v, want nil after its context ended", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// scrape gets base/metrics and parses the exposition.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return mfs
}

// family returns the family named name, failing the test if it is
// missing or of another type.
func family(t *testing.T, mfs map[string]*dto.MetricFamily, name string, typ dto.MetricType) *dto.MetricFamily {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no %s in the scrape", name)
	}
	if mf.GetType() != typ {
		t.Fatalf("%s is a %v, want a %v", name, mf.GetType(), typ)
	}
	return mf
}

// series returns the metric of mf with exactly the labels given as
// name, value pairs, or nil.
func series(mf *dto.MetricFamily, labels ...string) *dto.Metric {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
				continue next
			}
		}
		return m
	}
	return nil
}

func checkValue(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func finish(m *metrics.Metrics, name string, o foreman.Outcome, d time.Duration) {
	m.Finished(&queue.Task{Name: name}, o, d)
}

func TestMetrics_Scrape(t *testing.T) {
	m := mustNew(t, metrics.Config{Snapshot: func(ctx context.Context) (metrics.Snapshot, error) {
		return metrics.Snapshot{Pending: 5, Ready: 3, OldestAge: 90 * time.Second,
			WorkersBusy: 2, WorkersTotal: 16, Paused: true, Reloads: 4}, nil
	}})
	finish(m, "email", foreman.Done, 500*time.Microsecond)
	finish(m, "email", foreman.Done, 20*time.Millisecond)
	finish(m, "email", foreman.Failed, 3*time.Second)
	finish(m, "thumb", foreman.Panicked, 10*time.Minute)
	mfs := scrape(t, mustServe(t, m))

	t.Run("finished", func(t *testing.T) {
		mf := family(t, mfs, "snappea_tasks_finished_total", dto.MetricType_COUNTER)
		for _, c := range []struct {
			task, outcome string
			want          float64
		}{
			{"email", "done", 2},
			{"email", "failed", 1},
			{"email", "panicked", 0}, // present from the first finish
			{"email", "discarded", 0},
			{"email", "interrupted", 0},
			{"thumb", "panicked", 1},
			{"thumb", "done", 0},
		} {
			s := series(mf, "task", c.task, "outcome", c.outcome)
			if s == nil {
				t.Errorf("no series for task %s, outcome %s", c.task, c.outcome)
				continue
			}
			checkValue(t, c.task+" "+c.outcome, s.GetCounter().GetValue(), c.want)
		}
	})
	t.Run("duration", func(t *testing.T) {
		mf := family(t, mfs, "snappea_task_duration_seconds", dto.MetricType_HISTOGRAM)
		for _, c := range []struct {
			task    string
			count   uint64
			sum     float64
			buckets map[float64]uint64 // cumulative, by upper bound
		}{
			{"email", 3, 3.0205, map[float64]uint64{0.001: 1, 0.01: 1, 0.025: 2, 2.5: 2, 5: 3, 300: 3}},
			{"thumb", 1, 600, map[float64]uint64{0.001: 0, 300: 0}},
		} {
			s := series(mf, "task", c.task)
			if s == nil {
				t.Errorf("no histogram for task %s", c.task)
				continue
			}
			h := s.GetHistogram()
			if h.GetSampleCount() != c.count {
				t.Errorf("%s: count %d, want %d", c.task, h.GetSampleCount(), c.count)
			}
			checkValue(t, c.task+" sum", h.GetSampleSum(), c.sum)
			found := 0
			for _, b := range h.GetBucket() {
				if want, ok := c.buckets[b.GetUpperBound()]; ok {
					found++
					if b.GetCumulativeCount() != want {
						t.Errorf("%s: bucket le=%v holds %d, want %d", c.task, b.GetUpperBound(), b.GetCumulativeCount(), want)
					}
				}
			}
			if found != len(c.buckets) {
				t.Errorf("%s: found %d of the buckets %v", c.task, found, c.buckets)
			}
		}
	})
	t.Run("snapshot", func(t *testing.T) {
		for _, c := range []struct {
			name string
			typ  dto.MetricType
			want float64
		}{
			{"snappea_up", dto.MetricType_GAUGE, 1},
			{"snappea_tasks_pending", dto.MetricType_GAUGE, 5},
			{"snappea_tasks_ready", dto.MetricType_GAUGE, 3},
			{"snappea_oldest_task_age_seconds", dto.MetricType_GAUGE, 90},
			{"snappea_workers_busy", dto.MetricType_GAUGE, 2},
			{"snappea_workers_total", dto.MetricType_GAUGE, 16},
			{"snappea_paused", dto.MetricType_GAUGE, 1},
			{"snappea_reloads_total", dto.MetricType_COUNTER, 4},
		} {
			mf := family(t, mfs, c.name, c.typ)
			s := series(mf)
			if s == nil {
				t.Errorf("%s has no unlabelled series", c.name)
				continue
			}
			v := s.GetGauge().GetValue()
			if c.typ == dto.MetricType_COUNTER {
				v = s.GetCounter().GetValue()
			}
			checkValue(t, c.name, v, c.want)
		}
	})
	if mfs["snappea_procs"] != nil || mfs["snappea_proc_starts_total"] != nil {
		t.Error("process pool series without a pool (Snapshot.Procs nil)")
	}
	t.Run("runtime and process", func(t *testing.T) {
		family(t, mfs, "go_goroutines", dto.MetricType_GAUGE)
		if runtime.GOOS == "linux" {
			family(t, mfs, "process_start_time_seconds", dto.MetricType_GAUGE)
		}
	})
}

// The pool's children: by state (every state, 0 included), RSS, and the
// counters of starts, deaths, kills and recycling.
func TestMetrics_Scrape_procs(t *testing.T) {
	m := mustNew(t, metrics.Config{Snapshot: func(ctx context.Context) (metrics.Snapshot, error) {
		return metrics.Snapshot{Procs: &metrics.Procs{ByState: map[string]int{"idle": 2, "busy": 1},
			RSSBytes: 3 << 20, MaxRSSBytes: 2 << 20, Starts: 6, Deaths: 2, Kills: 1, SIGKILLs: 1, Restarts: 3, Retired: 2}}, nil
	}})
	mfs := scrape(t, mustServe(t, m))
	mf := family(t, mfs, "snappea_procs", dto.MetricType_GAUGE)
	for state, want := range map[string]float64{"starting": 0, "idle": 2, "busy": 1, "retiring": 0} {
		s := series(mf, "state", state)
		if s == nil {
			t.Errorf("snappea_procs has no state=%s series", state)
			continue
		}
		checkValue(t, "snappea_procs "+state, s.GetGauge().GetValue(), want)
	}
	for _, c := range []struct {
		name string
		typ  dto.MetricType
		want float64
	}{
		{"snappea_procs_rss_bytes", dto.MetricType_GAUGE, 3 << 20},
		{"snappea_procs_max_rss_bytes", dto.MetricType_GAUGE, 2 << 20},
		{"snappea_proc_starts_total", dto.MetricType_COUNTER, 6},
		{"snappea_proc_deaths_total", dto.MetricType_COUNTER, 2},
		{"snappea_proc_kills_total", dto.MetricType_COUNTER, 1},
		{"snappea_proc_sigkills_total", dto.MetricType_COUNTER, 1},
		{"snappea_proc_restarts_total", dto.MetricType_COUNTER, 3},
		{"snappea_proc_retired_total", dto.MetricType_COUNTER, 2},
	} {
		s := series(family(t, mfs, c.name, c.typ))
		if s == nil {
			t.Errorf("%s has no unlabelled series", c.name)
			continue
		}
		v := s.GetGauge().GetValue()
		if c.typ == dto.MetricType_COUNTER {
			v = s.GetCounter().GetValue()
		}
		checkValue(t, c.name, v, c.want)
	}
}

// logs records what Metrics logs at warn and above.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func TestMetrics_SnapshotFails(t *testing.T) {
	lg := &logs{}
	m := mustNew(t, metrics.Config{
		Snapshot: func(ctx context.Context) (metrics.Snapshot, error) {
			return metrics.Snapshot{}, errors.New("database is locked")
		},
		Logger: slog.New(lg),
	})
	finish(m, "email", foreman.Done, time.Millisecond)
	base := mustServe(t, m)
	for range 2 {
		mfs := scrape(t, base)
		checkValue(t, "snappea_up", series(family(t, mfs, "snappea_up", dto.MetricType_GAUGE)).GetGauge().GetValue(), 0)
		for _, name := range []string{"snappea_tasks_pending", "snappea_tasks_ready", "snappea_oldest_task_age_seconds",
			"snappea_workers_busy", "snappea_workers_total", "snappea_paused", "snappea_reloads_total"} {
			if mfs[name] != nil {
				t.Errorf("%s is in the scrape after a failed snapshot", name)
			}
		}
		family(t, mfs, "snappea_tasks_finished_total", dto.MetricType_COUNTER)
		family(t, mfs, "go_goroutines", dto.MetricType_GAUGE)
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if len(lg.msgs) != 1 || !strings.Contains(lg.msgs[0], "state failed") {
		t.Errorf("logged %q, want one warning for two failing scrapes", lg.msgs)
	}
}

func TestMetrics_NoSnapshot(t *testing.T) {
	mfs := scrape(t, mustServe(t, mustNew(t, metrics.Config{})))
	for _, name := range []string{"snappea_up", "snappea_tasks_pending"} {
		if mfs[name] != nil {
			t.Errorf("%s is in the scrape without a Snapshot", name)
		}
	}
	family(t, mfs, "go_goroutines", dto.MetricType_GAUGE)
}

func TestMetrics_Listen(t *testing.T) {
	m := mustNew(t, metrics.Config{})
	t.Run("busy port", func(t *testing.T) {
		ln, err := m.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addr := ln.Addr().String()
		ln2, err := m.Listen(addr)
		if err == nil {
			ln2.Close()
			t.Fatalf("Listen on the busy %s succeeded", addr)
		}
		if !strings.Contains(err.Error(), addr) || !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Listen on the busy %s: err = %v, want EADDRINUSE naming the address", addr, err)
		}
	})
	t.Run("bad address", func(t *testing.T) {
		_, err := m.Listen("localhost")
		if err == nil || !strings.Contains(err.Error(), "localhost") {
			t.Errorf("Listen(%q): err = %v, want one naming the address", "localhost", err)
		}
	})
}

func TestMetrics_Serve(t *testing.T) {
	m := mustNew(t, metrics.Config{})
	ln, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx, ln) }()

	for _, c := range []struct {
		path   string
		status int
		body   string
	}{
		{"/", http.StatusOK, "/metrics"},
		{"/metrics", http.StatusOK, "go_goroutines"},
		{"/nope", http.StatusNotFound, ""},
	} {
		resp, err := http.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(b), c.body) {
			t.Errorf("GET %s: %s %.80q, want %d with %q", c.path, resp.Status, b, c.status, c.body)
		}
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of its context ending")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Serve returned", ln.Addr())
	}
}

func TestMetrics_Serve_Fails(t *testing.T) {
	m := mustNew(t, metrics.Config{})
	ln, err := m.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := m.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Serve on a closed listener: err = %v, want one naming the address", err)
	}
}

// sum adds up the values of a counter or the counts of a histogram.
func sum(mf *dto.MetricFamily) float64 {
	var n float64
	for _, m := range mf.GetMetric() {
		n += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return n
}

func gather(t *testing.T, m *metrics.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	return byName
}

func TestMetrics_Finished_Concurrent(t *testing.T) {
	m := mustNew(t, metrics.Config{})
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				finish(m, fmt.Sprintf("task%d", (g*each+i)%20), foreman.Outcome(i%5), time.Millisecond)
			}
		})
	}
	// Scrapes race with the counting.
	wg.Go(func() {
		for range 5 {
			if _, err := m.Registry().Gather(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	mfs := gather(t, m)
	if got := sum(mfs["snappea_tasks_finished_total"]); got != goroutines*each {
		t.Errorf("counted %v tasks, want %d", got, goroutines*each)
	}
	if got := sum(mfs["snappea_task_duration_seconds"]); got != goroutines*each {
		t.Errorf("observed %v durations, want %d", got, goroutines*each)
	}
}

// A producer enqueuing ever new names cannot make the series grow without
// bound.
func TestMetrics_Finished_MaxTasks(t *testing.T) {
	m := mustNew(t, metrics.Config{})
	for i := range metrics.MaxTasks + 5 {
		finish(m, fmt.Sprintf("task%d", i), foreman.Discarded, 0)
	}
	mf := gather(t, m)["snappea_task_duration_seconds"]
	if n := len(mf.GetMetric()); n != metrics.MaxTasks+1 {
		t.Errorf("%d task names in the histogram, want %d", n, metrics.MaxTasks+1)
	}
	other := series(gather(t, m)["snappea_tasks_finished_total"], "task", metrics.OtherTask, "outcome", "discarded")
	if other == nil || other.GetCounter().GetValue() != 5 {
		t.Errorf("series of task %s = %v, want 5 discarded", metrics.OtherTask, other)
	}
}

func BenchmarkMetrics_Finished(b *testing.B) {
	m := mustNew(b, metrics.Config{})
	tasks := []queue.Task{{Name: "email.send"}, {Name: "thumbnail"}, {Name: "digest.daily"}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Finished(&tasks[i%len(tasks)], foreman.Done, time.Duration(i%1000)*time.Millisecond)
		i++
	}
}

func BenchmarkMetrics_Finished_Parallel(b *testing.B) {
	m := mustNew(b, metrics.Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		t := &queue.Task{Name: "email.send"}
		for pb.Next() {
			m.Finished(t, foreman.Done, 20*time.Millisecond)
		}
	})
}

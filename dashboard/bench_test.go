package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/dashboard"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/storage"
)

// The queue of the benchmarks: a million pending tasks (a tenth of them
// delayed, three priorities, two task names, one rare), a failed record
// and a day of statistics, built once per run of the benchmarks.
var (
	bigOnce sync.Once
	bigQ    *queue.Queue
	bigErr  error
	bigLast storage.PendingTask // a task deep in the queue, for a page after it
	bigDir  string
)

// TestMain removes the benchmarks' queue when they are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if bigQ != nil {
		bigQ.Close()
	}
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

const bigN = 1_000_000

func bigQueue(b *testing.B) *queue.Queue {
	b.Helper()
	bigOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snappea-dashboard-bench-")
		if err != nil {
			bigErr = err
			return
		}
		bigDir = dir
		ctx := context.Background()
		bigQ, bigErr = queue.Open(ctx, queue.Config{Dir: dir, Logger: quiet()})
		if bigErr != nil {
			return
		}
		now := time.Now()
		rows := make([]storage.Row, 10000)
		for i := 0; i < bigN/len(rows); i++ {
			for j := range rows {
				n := i*len(rows) + j
				r := storage.Row{Task: "common", Args: []byte(`{"n":1}`), CreatedAt: now, Priority: n % 3}
				if n%10 == 0 {
					r.RunAt = now.Add(time.Duration(n) * time.Millisecond)
				}
				if n%1000 == 7 {
					r.Task = "rare"
				}
				rows[j] = r
			}
			if _, bigErr = bigQ.Backend().Insert(ctx, nil, rows); bigErr != nil {
				return
			}
		}
		var stats []snappea.StatsRow
		for m := range 24 * 60 {
			stats = append(stats, snappea.StatsRow{Minute: now.Add(-time.Duration(m) * time.Minute).Truncate(time.Minute),
				Task: "common", Count: int64(m % 50), Failures: int64(m % 7), Total: time.Second, Max: time.Second, Backlog: bigN})
		}
		if bigErr = bigQ.AddStats(ctx, stats, time.Time{}); bigErr != nil {
			return
		}
		ps, err := bigQ.Pending(ctx, storage.PendingFilter{Ready: true, Limit: 1, Newest: true})
		if err != nil || len(ps) == 0 {
			bigErr = err
			return
		}
		bigLast = ps[0]
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigQ
}

// benchPage renders path b.N times; a page must take under 50ms with a
// million pending tasks on SQLite (see the ms/op).
func benchPage(b *testing.B, path string) {
	q := bigQueue(b)
	h, err := dashboard.New(dashboard.Config{Queue: q, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/page")
}

func BenchmarkOverview_1M(b *testing.B) { benchPage(b, "/") }
func BenchmarkQueued_1M(b *testing.B)   { benchPage(b, "/queued") }
func BenchmarkQueued_1M_deepPage(b *testing.B) {
	bigQueue(b)
	c := bigLast.Cursor()
	benchPage(b, "/queued?state=ready&after="+dashboard.CursorParam(c))
}
func BenchmarkQueued_1M_newest(b *testing.B)     { benchPage(b, "/queued?order=newest") }
func BenchmarkQueued_1M_priority(b *testing.B)   { benchPage(b, "/queued?priority=2") }
func BenchmarkQueued_1M_rareTask(b *testing.B)   { benchPage(b, "/queued?task=rare") }
func BenchmarkQueued_1M_key(b *testing.B)        { benchPage(b, "/queued?key=nope") }
func BenchmarkQueued_1M_absentTask(b *testing.B) { benchPage(b, "/queued?task=none") }

// BenchmarkPending_1M_absentTaskSQL is what /queued?task=none would cost
// with the name filtered in the statement: the whole claim index read.
func BenchmarkPending_1M_absentTaskSQL(b *testing.B) {
	q := bigQueue(b)
	for b.Loop() {
		if _, err := q.Pending(context.Background(), storage.PendingFilter{Task: "none", Limit: 51}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/page")
}

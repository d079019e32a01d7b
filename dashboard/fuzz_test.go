package dashboard

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/snappea/snappea/queue"
)

// FuzzParseQueued: any query string is refused with an error or gives a
// filter the backend accepts, and a cursor survives its round trip.
func FuzzParseQueued(f *testing.F) {
	for _, s := range []string{"", "state=ready&order=newest&task=a&priority=-3&key=k&limit=7&after=0_3_9",
		"after=1700000000000000000_0_12", "priority=2147483648", "state=delayed&after=-1_0_0", "limit=500", "after=__"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseQueued(v)
		if err != nil {
			return
		}
		if err := q.filter().Check(); err != nil {
			t.Fatalf("%q parsed to a filter the backend refuses: %v", raw, err)
		}
		if q.Limit < 1 || q.Limit > MaxPageSize {
			t.Fatalf("%q: limit %d", raw, q.Limit)
		}
		if q.After != nil {
			back, err := parseCursor(encodeCursor(*q.After))
			if err != nil || *back != *q.After {
				t.Fatalf("%q: cursor %+v round-trips to %+v, %v", raw, *q.After, back, err)
			}
		}
		again, err := parseQueued(mustParse(t, q.encode(q.After)))
		if err != nil {
			t.Fatalf("%q: its own encoding %q is refused: %v", raw, q.encode(q.After), err)
		}
		if again.encode(again.After) != q.encode(q.After) {
			t.Fatalf("%q: encoding not stable", raw)
		}
	})
}

func mustParse(t *testing.T, s string) url.Values {
	v, err := url.ParseQuery(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzHandler_query: whatever the query string or path, a page is a 2xx
// or 4xx, never a 500 or a panic.
func FuzzHandler_query(f *testing.F) {
	q, err := queue.Open(context.Background(), queue.Config{Dir: filepath.Join(f.TempDir(), "q"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { q.Close() })
	if _, err := q.Enqueue(context.Background(), "t", map[string]int{"n": 1}); err != nil {
		f.Fatal(err)
	}
	h, err := New(Config{Queue: q, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/queued?after=0_0_1", "/queued?task=t&priority=0", "/failed/1", "/tasks?hours=3",
		"/failed?limit=9", "/queued?%zz", "/?notice=%3Cb%3E", "/static/../../etc/passwd", "/failed/0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || u.Scheme != "" {
			return
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = u
		req.RequestURI = target
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET %q: status %d: %s", target, rec.Code, rec.Body.String())
		}
	})
}

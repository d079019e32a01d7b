package dashboard_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/daemon"
	"github.com/snappea/snappea/dashboard"
	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage"
)

const waitFor = 20 * time.Second

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// backend is a way to open a queue: SQLite always, PostgreSQL when the
// tests have a server.
type backend struct {
	name string
	open func(t *testing.T, reg *registry.Registry) *queue.Queue
}

func backends(t *testing.T) []backend {
	bs := []backend{{"SQLite", func(t *testing.T, reg *registry.Registry) *queue.Queue {
		return mustOpen(t, queue.Config{Dir: t.TempDir(), Registry: reg, Logger: quiet()})
	}}}
	if u := os.Getenv("SNAPPEA_TEST_DATABASE_URL"); u != "" {
		bs = append(bs, backend{"PostgreSQL", func(t *testing.T, reg *registry.Registry) *queue.Queue {
			var b [6]byte
			rand.Read(b[:])
			schema := "snappea_test_" + hex.EncodeToString(b[:])
			q := mustOpen(t, queue.Config{Dir: t.TempDir(), DatabaseURL: u, Schema: schema, Registry: reg, Logger: quiet()})
			t.Cleanup(func() {
				if _, err := q.DB().Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`); err != nil {
					t.Errorf("drop schema: %v", err)
				}
			})
			return q
		}})
	}
	return bs
}

func mustOpen(t *testing.T, cfg queue.Config) *queue.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := queue.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// env is a real queue, a real daemon on it (started paused, so that the
// test decides what runs), and the dashboard over both in a test server.
type env struct {
	t       *testing.T
	q       *queue.Queue
	d       *daemon.Daemon
	fm      *foreman.Foreman
	srv     *httptest.Server
	c       *http.Client
	started chan struct{} // a "block" task started
}

type blockArgs struct{}
type boomArgs struct {
	Secret string `json:"secret"`
}

func newEnv(t *testing.T, b backend, cfg dashboard.Config) *env {
	t.Helper()
	return newEnvWith(t, b, cfg, nil)
}

// limitsDaemon is Local with the daemon's limits in its status, as the
// daemon's own status (and so 'snappea run --dashboard-addr' and a
// control.Client) gives them.
type limitsDaemon struct {
	dashboard.Daemon
	d *daemon.Daemon
}

func (l limitsDaemon) Status(ctx context.Context) (*control.Status, error) {
	st, err := l.Daemon.Status(ctx)
	if err == nil {
		st.MaxRunning, st.RetryLost = l.d.Limits()
	}
	return st, err
}

// newEnvWith is newEnv with dcfg changing the daemon's Config (nil: as
// newEnv); the dashboard then sees the daemon's limits.
func newEnvWith(t *testing.T, b backend, cfg dashboard.Config, dcfg func(*daemon.Config)) *env {
	t.Helper()
	e := &env{t: t, started: make(chan struct{}, 16)}
	reg := registry.New()
	registry.Register(reg, "block", func(ctx context.Context, _ blockArgs) error {
		e.started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	registry.Register(reg, "boom", func(ctx context.Context, _ boomArgs) error { return errors.New("it broke") })
	registry.Register(reg, "other", func(ctx context.Context, _ boomArgs) error { return errors.New("it broke too") })
	registry.Register(reg, "ok", func(ctx context.Context, _ struct{}) error { return nil })
	e.q = b.open(t, reg)
	dc := daemon.Config{Queue: e.q, Registry: reg, NoLock: true, StartPaused: true,
		PollInterval: 50 * time.Millisecond, GracefulTimeout: -1, Logger: quiet()}
	if dcfg != nil {
		dcfg(&dc)
	}
	d, err := daemon.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	e.d, e.fm = d, d.Foreman()
	ran := make(chan error, 1)
	go func() { ran <- d.Run(context.Background()) }()
	t.Cleanup(func() {
		// A hard stop: the block tasks wait for their contexts.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d.Shutdown(ctx)
		select {
		case <-ran:
		case <-time.After(waitFor):
			t.Error("the daemon's Run did not return after Shutdown")
		}
	})
	cfg.Queue = e.q
	if cfg.Daemon == nil {
		cfg.Daemon = dashboard.Local(e.fm, 0)
		if dcfg != nil {
			cfg.Daemon = limitsDaemon{cfg.Daemon, d}
		}
	}
	cfg.Logger = quiet()
	h, err := dashboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/snappea/", http.StripPrefix("/snappea", h))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	jar, _ := cookiejar.New(nil)
	e.c = &http.Client{Jar: jar, Timeout: waitFor,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func (e *env) url(path string) string { return e.srv.URL + "/snappea" + path }

// get fetches a page and returns its status and body.
func (e *env) get(path string) (int, string) {
	e.t.Helper()
	resp, err := e.c.Get(e.url(path))
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) mustGet(path string, want ...string) string {
	e.t.Helper()
	code, body := e.get(path)
	if code != http.StatusOK {
		e.t.Fatalf("GET %s: status %d, want 200; body:\n%s", path, code, body)
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			e.t.Errorf("GET %s: page lacks %q", path, w)
		}
	}
	return body
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token loads the overview and returns its CSRF token.
func (e *env) token() string {
	e.t.Helper()
	m := csrfRE.FindStringSubmatch(e.mustGet("/"))
	if m == nil {
		e.t.Fatal("the overview has no CSRF token")
	}
	return m[1]
}

// post submits a form with a valid token; it returns the status and the
// redirect's target or the body.
func (e *env) post(path string, form url.Values) (int, string) {
	e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if !form.Has("csrf") {
		form.Set("csrf", e.token())
	}
	resp, err := e.c.PostForm(e.url(path), form)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(b)
}

func (e *env) mustPost(path string, form url.Values) string {
	e.t.Helper()
	code, loc := e.post(path, form)
	if code != http.StatusSeeOther {
		e.t.Fatalf("POST %s: status %d, want 303; body:\n%s", path, code, loc)
	}
	return loc
}

// failTask enqueues and fails a task of name, with the daemon paused.
func (e *env) failTask(name string) snappea.Failure {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.q.Enqueue(ctx, name, boomArgs{Secret: "hunter2"}); err != nil {
		e.t.Fatal(err)
	}
	ts, err := e.q.Claim(ctx, 1)
	if err != nil || len(ts) != 1 {
		e.t.Fatalf("claim: %v, %v", ts, err)
	}
	if err := e.q.Fail(ctx, &ts[0], errors.New("it broke: "+name)); err != nil {
		e.t.Fatal(err)
	}
	fs, err := e.q.Failures(ctx, 1)
	if err != nil || len(fs) != 1 {
		e.t.Fatalf("failures: %v, %v", fs, err)
	}
	return fs[0]
}

func (e *env) pending(f storage.PendingFilter) []storage.PendingTask {
	e.t.Helper()
	ps, err := e.q.Pending(context.Background(), f)
	if err != nil {
		e.t.Fatal(err)
	}
	return ps
}

// until polls cond until it holds or the deadline fails the test.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHandler_pages(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, dashboard.Config{})
			ctx := context.Background()
			f := e.failTask("boom")
			res, err := e.q.EnqueueWith(ctx, "ok", struct{}{}, registry.Options{Priority: 3, Key: "k-1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.q.EnqueueWith(ctx, "ok", struct{}{}, registry.Options{Delay: time.Hour}); err != nil {
				t.Fatal(err)
			}
			min := time.Now().Truncate(time.Minute)
			if err := e.q.AddStats(ctx, []snappea.StatsRow{{Minute: min, Task: "ok", Count: 7, Failures: 2,
				Total: 7 * time.Second, Max: 2 * time.Second, Backlog: -1}}, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := e.q.Backend().SaveSchedule(ctx, nil, snappea.ScheduleState{Name: "nightly", Spec: "0 3 * * *",
				Task: "ok", Next: min.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}

			body := e.mustGet("/", `id="count-ready">1<`, `id="count-delayed">1<`, `id="count-failed">1<`,
				"<svg", "Tasks finished per minute", `<td class="state">paused</td>`, `id="resume"`, `href="/snappea/queued"`)
			if !strings.Contains(body, "<title>"+min.Format("15:04")+": 7</title>") {
				t.Errorf("the chart lacks the minute's 7 finished tasks")
			}
			e.mustGet("/queued", "k-1", `id="cancel-`, "due ")
			e.mustGet("/queued?task=ok&priority=3", "k-1")
			if body := e.mustGet("/queued?state=delayed"); strings.Contains(body, "k-1") {
				t.Error("/queued?state=delayed lists the ready task")
			}
			if body := e.mustGet("/queued?key=nope"); strings.Contains(body, "k-1") || !strings.Contains(body, "matches") {
				t.Error("/queued?key=nope: want no task, and a note that none matches")
			}
			e.mustGet("/failed", "it broke: boom", `id="retry-all"`, `href="/snappea/failed/`)
			body = e.mustGet("/failed/"+itoa(f.ID), "it broke: boom", "hidden: they can hold secrets")
			if strings.Contains(body, "hunter2") {
				t.Error("the failed task's page shows its arguments without ShowArgs")
			}
			e.mustGet("/schedules", "nightly", "0 3 * * *")
			e.mustGet("/tasks", "<td>ok</td><td>7</td><td>2</td><td>1s</td><td>2s</td>")
			e.mustGet("/running", "No task is running.")
			e.mustGet("/static/style.css", ".chart")
			_ = res

			// Running tasks, with the daemon resumed.
			id, err := e.q.Enqueue(ctx, "block", blockArgs{})
			if err != nil {
				t.Fatal(err)
			}
			e.fm.Resume()
			select {
			case <-e.started:
			case <-time.After(waitFor):
				t.Fatal("the block task did not start")
			}
			// The ok tasks run and finish beside it.
			until(t, "the ok tasks to finish", func() bool {
				return e.fm.Snapshot().Busy == 1 && len(e.pending(storage.PendingFilter{Ready: true})) == 0
			})
			e.mustGet("/running", "<td>"+itoa(id)+"</td><td>block</td>", `/running/`+itoa(id)+`/cancel`)
			e.mustGet("/", `id="count-running">1<`, `id="pause"`)
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestHandler_actions(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, dashboard.Config{})
			ctx := context.Background()

			// Pause and resume: the daemon starts paused.
			if loc := e.mustPost("/resume", url.Values{"back": {"/"}}); !strings.HasPrefix(loc, "/snappea/?notice=") {
				t.Errorf("resume redirected to %q, want the overview under the prefix", loc)
			}
			if e.fm.Paused() {
				t.Error("after POST /resume the foreman is paused")
			}
			e.mustPost("/pause", nil)
			if !e.fm.Paused() {
				t.Error("after POST /pause the foreman is not paused")
			}
			e.mustPost("/workers", url.Values{"workers": {"5"}})
			if got := e.fm.Snapshot().Workers; got != 5 {
				t.Errorf("after POST /workers 5: %d workers", got)
			}

			// Cancel a queued task.
			id, err := e.q.Enqueue(ctx, "ok", struct{}{})
			if err != nil {
				t.Fatal(err)
			}
			loc := e.mustPost("/queued/"+itoa(id)+"/cancel", url.Values{"back": {"/queued?task=ok"}})
			if !strings.HasPrefix(loc, "/snappea/queued?") || !strings.Contains(loc, "task=ok") {
				t.Errorf("cancel redirected to %q, want back to the filtered page", loc)
			}
			if ps := e.pending(storage.PendingFilter{}); len(ps) != 0 {
				t.Errorf("after cancelling task %d: pending %+v", id, ps)
			}
			if code, _ := e.post("/queued/"+itoa(id)+"/cancel", nil); code != http.StatusNotFound {
				t.Errorf("cancelling it again: status %d, want 404", code)
			}

			// Retry one, retry all of one task name, retry all, purge.
			f1 := e.failTask("boom")
			e.failTask("boom")
			e.failTask("other")
			e.mustPost("/failed/"+itoa(f1.ID)+"/retry", nil)
			if _, err := e.q.FailureByID(ctx, f1.ID); !errors.Is(err, snappea.ErrNotFound) {
				t.Errorf("failure %d after its retry: %v, want ErrNotFound", f1.ID, err)
			}
			if ps := e.pending(storage.PendingFilter{Task: "boom"}); len(ps) != 1 || ps[0].Attempt != 1 {
				t.Errorf("after retrying failure %d: pending %+v, want one boom task", f1.ID, ps)
			}
			e.mustPost("/failed/retry", url.Values{"task": {"other"}})
			if ps := e.pending(storage.PendingFilter{Task: "other"}); len(ps) != 1 {
				t.Errorf("after retrying the failures of other: pending %+v", ps)
			}
			if fs, _ := e.q.Failures(ctx, 0); len(fs) != 1 || fs[0].Task != "boom" {
				t.Errorf("after retrying the failures of other: record %+v, want the one boom", fs)
			}
			e.mustPost("/failed/retry", nil)
			if fs, _ := e.q.Failures(ctx, 0); len(fs) != 0 {
				t.Errorf("after retrying all: record %+v", fs)
			}
			e.failTask("boom")
			e.mustPost("/failed/purge", nil)
			if fs, _ := e.q.Failures(ctx, 0); len(fs) != 0 {
				t.Errorf("after the purge: record %+v", fs)
			}
			if code, _ := e.post("/failed/"+itoa(f1.ID)+"/retry", nil); code != http.StatusNotFound {
				t.Errorf("retrying a failure no longer in the record: status %d, want 404", code)
			}

			// Cancel a running task.
			for _, p := range e.pending(storage.PendingFilter{}) {
				e.q.Cancel(ctx, p.ID)
			}
			bid, err := e.q.Enqueue(ctx, "block", blockArgs{})
			if err != nil {
				t.Fatal(err)
			}
			e.fm.Resume()
			select {
			case <-e.started:
			case <-time.After(waitFor):
				t.Fatal("the block task did not start")
			}
			e.mustPost("/running/"+itoa(bid)+"/cancel", nil)
			until(t, "the cancelled task to end", func() bool { return e.fm.Counters().Cancelled == 1 })
		})
	}
}

func TestHandler_csrf(t *testing.T) {
	e := newEnv(t, backends(t)[0], dashboard.Config{})
	// No token, a wrong one, a token without the cookie.
	tok := e.token()
	for name, form := range map[string]url.Values{
		"no token":    {"csrf": {""}},
		"wrong token": {"csrf": {"AAAA" + tok[4:]}},
	} {
		if code, body := e.post("/pause", form); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("%s: status %d, want 403 naming the CSRF token", name, code)
		}
	}
	bare := &http.Client{Timeout: waitFor}
	resp, err := bare.PostForm(e.url("/pause"), url.Values{"csrf": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a token without its cookie: status %d, want 403", resp.StatusCode)
	}
	// A GET of an action's path changes nothing.
	e.fm.Resume()
	for _, p := range []string{"/pause", "/workers?workers=3", "/failed/purge", "/queued/1/cancel"} {
		if code, _ := e.get(p); code < 400 || code >= 500 {
			t.Errorf("GET %s: status %d, want 4xx", p, code)
		}
	}
	if e.fm.Paused() || e.fm.Snapshot().Workers != 16 {
		t.Errorf("GETs of the actions' paths changed the daemon: paused %v, workers %d", e.fm.Paused(), e.fm.Snapshot().Workers)
	}
}

func TestHandler_readOnly(t *testing.T) {
	e := newEnv(t, backends(t)[0], dashboard.Config{ReadOnly: true})
	e.failTask("boom")
	for _, p := range []string{"/", "/failed", "/queued", "/running"} {
		body := e.mustGet(p, "read-only")
		if strings.Contains(body, "<form method=\"post\"") {
			t.Errorf("GET %s read-only: the page has a POST form", p)
		}
	}
	if code, body := e.post("/failed/purge", url.Values{"csrf": {"x"}}); code != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Errorf("POST read-only: status %d, want 403 saying read-only", code)
	}
	if fs, _ := e.q.Failures(context.Background(), 0); len(fs) != 1 {
		t.Errorf("a read-only POST changed the record: %d left", len(fs))
	}
}

func TestHandler_showArgs(t *testing.T) {
	e := newEnv(t, backends(t)[0], dashboard.Config{ShowArgs: true})
	f := e.failTask("boom")
	e.mustGet("/failed/"+itoa(f.ID), "hunter2")
}

func TestHandler_badInput(t *testing.T) {
	e := newEnv(t, backends(t)[0], dashboard.Config{})
	tok := e.token()
	huge := strings.Repeat("a", 10000)
	for _, tt := range []struct {
		method, path string
		form         url.Values
		code         int
		says         string
	}{
		{"GET", "/queued?state=sideways", nil, 400, "want all, ready or delayed"},
		{"GET", "/queued?order=up", nil, 400, "oldest or newest"},
		{"GET", "/queued?priority=high", nil, 400, "whole number"},
		{"GET", "/queued?priority=99999999999", nil, 400, "whole number"},
		{"GET", "/queued?after=1_2", nil, 400, "cursor"},
		{"GET", "/queued?after=x_y_z", nil, 400, "cursor"},
		{"GET", "/queued?limit=0", nil, 400, "from 1 to 500"},
		{"GET", "/queued?limit=1&limit=2", nil, 400, "given 2 times"},
		{"GET", "/queued?colour=red", nil, 400, "unknown parameter"},
		{"GET", "/queued?task=" + strings.Repeat("t", 300), nil, 400, "at most 200"},
		{"GET", "/queued?task=%ff", nil, 400, "UTF-8"},
		{"GET", "/queued?" + huge, nil, 414, "query string"},
		{"GET", "/queued?task=%zz", nil, 400, ""},
		{"GET", "/tasks?hours=-1", nil, 400, "from 1"},
		{"GET", "/failed?limit=many", nil, 400, "whole number"},
		{"GET", "/failed/abc", nil, 400, "not an id"},
		{"GET", "/failed/-3", nil, 400, "not an id"},
		{"GET", "/failed/99999", nil, 404, "no failed task 99999"},
		{"GET", "/failed/99999999999999999999999", nil, 400, "not an id"},
		{"GET", "/nowhere", nil, 404, "no page"},
		{"POST", "/queued/99999/cancel", url.Values{"csrf": {tok}}, 404, "not queued"},
		{"POST", "/queued/x/cancel", url.Values{"csrf": {tok}}, 400, "not an id"},
		{"POST", "/running/99999/cancel", url.Values{"csrf": {tok}}, 404, "not running"},
		{"POST", "/failed/99999/retry", url.Values{"csrf": {tok}}, 404, "no failed task"},
		{"POST", "/workers", url.Values{"csrf": {tok}, "workers": {"0"}}, 400, "from 1 to"},
		{"POST", "/workers", url.Values{"csrf": {tok}, "workers": {"lots"}}, 400, "from 1 to"},
		{"POST", "/workers", url.Values{"csrf": {tok}, "workers": {"10001"}}, 400, "from 1 to"},
		{"POST", "/failed/retry", url.Values{"csrf": {tok}, "task": {strings.Repeat("t", 300)}}, 400, "at most 200"},
		{"POST", "/pause", url.Values{"csrf": {tok}, "pad": {strings.Repeat("p", 20000)}}, 413, "larger than"},
		{"POST", "/nowhere", url.Values{"csrf": {tok}}, 404, "no page"},
		{"DELETE", "/failed", nil, 405, "not used here"},
	} {
		var req *http.Request
		if tt.form != nil {
			req, _ = http.NewRequest(tt.method, e.url(tt.path), strings.NewReader(tt.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(tt.method, e.url(tt.path), nil)
		}
		if req == nil {
			// A path net/url refuses: send it raw.
			req = &http.Request{Method: tt.method, URL: &url.URL{Scheme: "http", Host: e.srv.Listener.Addr().String(), Opaque: "/snappea" + tt.path}, Header: http.Header{}}
		}
		resp, err := e.c.Do(req)
		if err != nil {
			t.Errorf("%s %.60s: %v", tt.method, tt.path, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.says) {
			t.Errorf("%s %.60s: status %d, want %d with %q; page:\n%.300s", tt.method, tt.path, resp.StatusCode, tt.code, tt.says, b)
		}
	}
}

func TestHandler_authorize(t *testing.T) {
	b := backends(t)[0]
	for name, tt := range map[string]struct {
		hook func(*http.Request) error
		set  func(r *http.Request)
		want int
	}{
		"basic, none":        {dashboard.BasicAuth("ops", "s3cret"), func(r *http.Request) {}, 401},
		"basic, wrong":       {dashboard.BasicAuth("ops", "s3cret"), func(r *http.Request) { r.SetBasicAuth("ops", "nope") }, 401},
		"basic, right":       {dashboard.BasicAuth("ops", "s3cret"), func(r *http.Request) { r.SetBasicAuth("ops", "s3cret") }, 200},
		"token, none":        {dashboard.BearerToken("tok"), func(r *http.Request) {}, 401},
		"token, bearer":      {dashboard.BearerToken("tok"), func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 200},
		"token, as password": {dashboard.BearerToken("tok"), func(r *http.Request) { r.SetBasicAuth("anyone", "tok") }, 200},
		"token, wrong":       {dashboard.BearerToken("tok"), func(r *http.Request) { r.Header.Set("Authorization", "Bearer tik") }, 401},
		"hook refuses":       {func(*http.Request) error { return errors.New("only on Tuesdays") }, func(r *http.Request) {}, 403},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, b, dashboard.Config{Authorize: tt.hook})
			req, _ := http.NewRequest("GET", e.url("/"), nil)
			tt.set(req)
			resp, err := e.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("401 without a request for basic authentication: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestNew_config(t *testing.T) {
	if _, err := dashboard.New(dashboard.Config{}); err == nil || !strings.Contains(err.Error(), "Queue") {
		t.Errorf("New without a Queue: %v, want an error naming Queue", err)
	}
	q := mustOpen(t, queue.Config{Dir: t.TempDir(), Logger: quiet()})
	if _, err := dashboard.New(dashboard.Config{Queue: q, ChartWindow: 48 * time.Hour}); err == nil || !strings.Contains(err.Error(), "ChartWindow") {
		t.Errorf("New with a 48h ChartWindow: %v, want an error naming ChartWindow", err)
	}
	// Without a daemon: the pages show the database, no live actions.
	h, err := dashboard.New(dashboard.Config{Queue: q, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || strings.Contains(rec.Body.String(), `id="pause"`) {
		t.Errorf("overview without a daemon: status %d, pause offered %v", rec.Code, strings.Contains(rec.Body.String(), `id="pause"`))
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/running", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "No daemon is connected") {
		t.Errorf("running without a daemon: status %d", rec.Code)
	}
}

// TestHandler_countLimit: beyond Config.CountLimit the overview says
// "more than", and shows the backlog the statistics sampled.
func TestHandler_countLimit(t *testing.T) {
	e := newEnv(t, backends(t)[0], dashboard.Config{CountLimit: 2})
	ctx := context.Background()
	for range 3 {
		if _, err := e.q.Enqueue(ctx, "ok", struct{}{}); err != nil {
			t.Fatal(err)
		}
	}
	min := time.Now().Truncate(time.Minute)
	if err := e.q.AddStats(ctx, []snappea.StatsRow{{Minute: min, Backlog: 3}}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.mustGet("/", `id="count-ready">&gt; 2<`, `id="count-delayed">0<`, "Counts stop at 2 to stay fast.",
		"The statistics sampled 3 pending tasks")
}

var nextRE = regexp.MustCompile(`id="next" href="/snappea([^"]+)"`)

// TestHandler_searchTask: a page filtered by task name reads at most
// SearchLimit tasks; when that finds too few it says so, and its next page
// searches on, until every task of the name is listed once.
func TestHandler_searchTask(t *testing.T) {
	e := newEnv(t, backends(t)[0], dashboard.Config{SearchLimit: 5})
	ctx := context.Background()
	var want []int64
	for i := range 12 {
		name := "ok"
		if i == 3 || i >= 10 {
			name = "other"
		}
		id, err := e.q.Enqueue(ctx, name, boomArgs{})
		if err != nil {
			t.Fatal(err)
		}
		if name == "other" {
			want = append(want, id)
		}
	}
	var got []int64
	partials := 0
	path := "/queued?task=other&limit=2"
	rowRE := regexp.MustCompile(`<tr><td>(\d+)</td><td>other</td>`)
	for range 10 {
		body := e.mustGet(path)
		for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
			id, _ := strconv.ParseInt(m[1], 10, 64)
			got = append(got, id)
		}
		if strings.Contains(body, `id="partial"`) {
			partials++
		}
		m := nextRE.FindStringSubmatch(body)
		if m == nil {
			break
		}
		path = html.UnescapeString(m[1])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the pages of task other listed %v, want %v", got, want)
	}
	if partials == 0 {
		t.Error("no page said the search stopped at the limit")
	}
	// A common name fills its page at once.
	body := e.mustGet("/queued?task=ok&limit=3")
	if n := strings.Count(body, "<td>ok</td>"); n != 3 || strings.Contains(body, `id="partial"`) || nextRE.FindString(body) == "" {
		t.Errorf("/queued?task=ok&limit=3: %d rows, partial %v; want 3 and a next page", n, strings.Contains(body, `id="partial"`))
	}
}

// loseTask records a task of name as lost, as a daemon that starts where
// the previous one died records it.
func (e *env) loseTask(name string) snappea.Failure {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.q.Enqueue(ctx, name, boomArgs{}); err != nil {
		e.t.Fatal(err)
	}
	ts, err := e.q.Claim(ctx, 1)
	if err != nil || len(ts) != 1 {
		e.t.Fatalf("claim: %v, %v", ts, err)
	}
	if err := e.q.Backend().Fail(ctx, &ts[0], snappea.LostDied, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	fs, err := e.q.Failures(ctx, 1)
	if err != nil || len(fs) != 1 || !snappea.IsLost(fs[0].Error) {
		e.t.Fatalf("failures: %v, %v; want the lost record", fs, err)
	}
	return fs[0]
}

func TestHandler_lost(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, dashboard.Config{})
			broke := e.failTask("boom")
			lost := []snappea.Failure{e.loseTask("boom"), e.loseTask("other")}
			e.failTask("other")

			e.mustGet("/", `id="count-failed">4<`, `id="count-lost" href="/snappea/failed?lost=1">2<`)
			body := e.mustGet("/failed", `id="only-lost"`, "it broke: boom", `<span class="badge bad lost">lost</span> `+snappea.LostDied)
			if n := strings.Count(body, `class="badge bad lost"`); n != 2 {
				t.Errorf("/failed marks %d records lost, want 2", n)
			}
			body = e.mustGet("/failed?lost=1", "2 lost tasks in the record", `href="/snappea/failed/`+itoa(lost[0].ID)+`"`,
				`href="/snappea/failed/`+itoa(lost[1].ID)+`"`)
			if strings.Contains(body, "it broke") || strings.Contains(body, `href="/snappea/failed/`+itoa(broke.ID)+`"`) {
				t.Error("/failed?lost=1 lists a record that is not lost")
			}
			if strings.Contains(body, `id="retry-all"`) || strings.Contains(body, `id="purge"`) {
				t.Error("/failed?lost=1 offers retry all or purge, which act on every failed record")
			}
			e.mustGet("/failed?lost=1&limit=1", `href="/snappea/failed/`+itoa(lost[1].ID)+`"`)
			e.mustGet("/failed/"+itoa(lost[0].ID), `<span class="badge bad lost">lost</span>`)
			if body := e.mustGet("/failed/" + itoa(broke.ID)); strings.Contains(body, `class="badge bad lost"`) {
				t.Error("a record that is not lost is marked lost")
			}
			if code, body := e.get("/failed?lost=yes"); code != http.StatusBadRequest || !strings.Contains(body, "want 1") {
				t.Errorf("/failed?lost=yes: status %d, want 400 saying what it takes; body:\n%s", code, body)
			}
		})
	}
}

func TestHandler_lostSearchLimit(t *testing.T) {
	e := newEnv(t, backends(t)[0], dashboard.Config{SearchLimit: 2})
	old := e.loseTask("boom")
	e.failTask("boom")
	e.failTask("other")
	body := e.mustGet("/failed?lost=1", "1 lost tasks in the record", `id="partial"`, "newest 2")
	if strings.Contains(body, `href="/snappea/failed/`+itoa(old.ID)+`"`) {
		t.Error("/failed?lost=1 read past Config.SearchLimit")
	}
}

func TestHandler_limits(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			e := newEnvWith(t, b, dashboard.Config{}, func(c *daemon.Config) {
				c.MaxRunning = map[string]int{"block": 2}
				c.RetryLost = []string{"ok"}
			})
			ctx := context.Background()
			body := e.mustGet("/tasks", "<th>Running / limit</th>", `<td class="limit">0 / 2</td><td class="retry">failed</td>`,
				`<td class="limit">0 / no limit</td><td class="retry">enqueued again</td>`)
			if !strings.Contains(body, `<tr id="task-block"><td>block</td>`) || !strings.Contains(body, `<tr id="task-ok"><td>ok</td>`) {
				t.Errorf("/tasks lacks the rows of the tasks with limits:\n%s", body)
			}
			if _, err := e.q.EnqueueWith(ctx, "ok", struct{}{}, registry.Options{SerialKey: "project:42"}); err != nil {
				t.Fatal(err)
			}
			e.mustGet("/queued", "<th>Serial key</th>", `<td class="serial">project:42</td>`)
			if _, err := e.q.Enqueue(ctx, "block", blockArgs{}); err != nil {
				t.Fatal(err)
			}
			e.fm.Resume()
			select {
			case <-e.started:
			case <-time.After(waitFor):
				t.Fatal("the block task did not start")
			}
			e.mustGet("/tasks", `<tr id="task-block"><td>block</td><td>0</td><td>0</td><td>0s</td><td>0s</td><td class="limit">1 / 2</td>`)
		})
	}
}

package integration_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	root "github.com/snappea/snappea"
	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage"
)

// writeScreenshot makes the browser test write the README's screenshot,
// docs/dashboard.png: go test -run TestDashboard_browser ./integration_test -args -dashboard-png
// (or SNAPPEA_DASHBOARD_PNG=1).
var writeScreenshot = flag.Bool("dashboard-png", false, "the browser test writes docs/dashboard.png")

// dashboardURL starts nothing: it waits for the daemon's record of its
// dashboard and returns the URL.
func dashboardURL(t *testing.T, d *daemon) string {
	t.Helper()
	return d.waitFor(10*time.Second, "the dashboard's address", isMsg("serving the dashboard")).str("addr")
}

func openQueue(t *testing.T, dir string) *queue.Queue {
	t.Helper()
	q, err := queue.Open(context.Background(), queue.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// TestDashboard_daemon: 'snappea run --dashboard-addr' serves the pages
// on loopback without credentials; a POST without the CSRF token changes
// nothing; a public address is refused without credentials and served
// with them.
func TestDashboard_daemon(t *testing.T) {
	dir := dataDir(t)
	d := startDaemon(t, dir, "--dashboard-addr", "127.0.0.1:0")
	base := dashboardURL(t, d)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("dashboard at %q, want on 127.0.0.1", base)
	}
	resp, err := http.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<td class="state">running</td>`) {
		t.Fatalf("GET %s: %d\n%s", base, resp.StatusCode, body)
	}
	resp, err = http.PostForm(base+"pause", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /pause without a token: %d, want 403", resp.StatusCode)
	}
	if s := fullStatus(t, dir); s.State != "running" {
		t.Errorf("after a POST without a token the daemon is %s", s.State)
	}
	// A dashboard in another process asks for the status without the
	// queue's counts, which it makes itself, bounded.
	q := openQueue(t, dir)
	if _, err := q.EnqueueWith(context.Background(), "snappea.noop", nil, registry.Options{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	c := control.Dial(filepath.Join(dir, control.SocketFile))
	full, err := c.Status(context.Background())
	if err != nil || full.Delayed != 1 {
		t.Errorf("Status: delayed %v, %v; want 1", full, err)
	}
	live, err := c.LiveStatus(context.Background())
	if err != nil || live.Delayed != 0 || live.State != "running" || live.WorkersTotal != 16 {
		t.Errorf("LiveStatus: %+v, %v; want the daemon's state without the counts", live, err)
	}
	d.stop()

	// A public address without credentials: a usage error, before anything starts.
	r := snappea(t, "run", "--dir", dataDir(t), "--dashboard-addr", "0.0.0.0:0")
	if r.code != 2 || !strings.Contains(r.stderr, "requires authentication") {
		t.Errorf("run --dashboard-addr 0.0.0.0:0: exit %d, want 2 saying it requires authentication\n%s", r.code, r.stderr)
	}

	// With a token from the environment.
	dir2 := dataDir(t)
	d2 := launchProgramEnv(t, bin, dir2, []string{"SNAPPEA_DASHBOARD_TOKEN=s3cret-token"}, "--dashboard-addr", "0.0.0.0:0")
	d2.waitFor(30*time.Second, "the daemon to start", isMsg("foreman started"))
	addr := dashboardURL(t, d2)
	u, err := url.Parse(addr)
	if err != nil {
		t.Fatalf("the dashboard's address %q: %v", addr, err)
	}
	local := "http://127.0.0.1:" + u.Port() + "/"
	for _, tt := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"s3cret-token", 200}} {
		req, err := http.NewRequest("GET", local, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET with token %q: %d, want %d", tt.token, resp.StatusCode, tt.want)
		}
	}
	d2.stop()
}

// findBrowser is the Chromium the browser test drives: $SNAPPEA_CHROMIUM,
// else chromium, chromium-browser, google-chrome on the PATH.
func findBrowser() string {
	if p := os.Getenv("SNAPPEA_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestDashboard_browser drives the daemon's dashboard in headless
// Chromium: the overview, retry a failed task, cancel a queued one, pause
// and resume, each checked in the database or the daemon; and a
// screenshot.
func TestDashboard_browser(t *testing.T) {
	browser := findBrowser()
	if browser == "" {
		t.Skip("no Chromium found (chromium, chromium-browser or google-chrome on the PATH, or SNAPPEA_CHROMIUM): " +
			"install Debian's chromium package, as .ci/run does")
	}
	dir := dataDir(t)
	d := startDaemon(t, dir, "--dashboard-addr", "127.0.0.1:0", "--workers", "4")
	base := dashboardURL(t, d)
	q := openQueue(t, dir)
	ctx := context.Background()

	// A failed task, and statistics for the charts.
	if _, err := q.Enqueue(ctx, "snappea.fail", map[string]string{"msg": "the mail server said no"}); err != nil {
		t.Fatal(err)
	}
	var failed root.Failure
	until(t, "the failed task in the record", func() bool {
		fs, err := q.Failures(ctx, 1)
		if err == nil && len(fs) == 1 {
			failed = fs[0]
		}
		return failed.ID != 0
	})
	now := time.Now().Truncate(time.Minute)
	var rows []root.StatsRow
	for m := range 180 {
		n := int64(20 + (m*37)%50)
		rows = append(rows, root.StatsRow{Minute: now.Add(-time.Duration(m) * time.Minute), Task: "email.send",
			Count: n, Failures: n / 12 * int64(m%3), Total: time.Duration(n) * 40 * time.Millisecond, Max: time.Second, Backlog: -1})
	}
	if err := q.AddStats(ctx, rows, time.Time{}); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	textOf := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("browser: read %s: %v", sel, err)
		}
		return s
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	run("open the overview", chromedp.Navigate(base), chromedp.WaitVisible(css("#daemons")))
	if text := textOf("#count-failed"); text != "1" {
		t.Errorf("the overview counts %q failed, want 1", text)
	}

	// Pause.
	run("pause", chromedp.Click(css("#pause")), chromedp.WaitVisible(css("#resume")))
	if text := textOf(".notice"); !strings.Contains(text, "Paused") {
		t.Errorf("after pause the notice says %q", text)
	}
	if s := fullStatus(t, dir); s.State != "paused" {
		t.Fatalf("after the pause button the daemon is %s", s.State)
	}

	// Cancel a queued task: the daemon is paused, so it stays queued.
	id, err := q.Enqueue(ctx, "snappea.noop", nil)
	if err != nil {
		t.Fatal(err)
	}
	sel := "#cancel-" + strconv.FormatInt(id, 10)
	run("cancel the queued task", chromedp.Navigate(base+"queued"), chromedp.WaitVisible(css(sel)), chromedp.Click(css(sel)),
		chromedp.WaitVisible(css(".notice")))
	if text := textOf(".notice"); !strings.Contains(text, "cancelled") {
		t.Errorf("after cancel the notice says %q", text)
	}
	if ps, err := q.Pending(ctx, storage.PendingFilter{}); err != nil || len(ps) != 0 {
		t.Errorf("after the cancel button: pending %+v, %v; want none", ps, err)
	}

	// Retry the failed task: queued again, as a first attempt.
	sel = "#retry-" + strconv.FormatInt(failed.ID, 10)
	run("retry the failed task", chromedp.Navigate(base+"failed"), chromedp.WaitVisible(css(sel)), chromedp.Click(css(sel)),
		chromedp.WaitVisible(css(".notice")))
	if text := textOf(".notice"); !regexp.MustCompile(`queued again as task \d+`).MatchString(text) {
		t.Errorf("after retry the notice says %q", text)
	}
	if _, err := q.FailureByID(ctx, failed.ID); !errors.Is(err, root.ErrNotFound) {
		t.Errorf("failure %d after the retry button: %v, want it gone from the record", failed.ID, err)
	}
	ps, err := q.Pending(ctx, storage.PendingFilter{})
	if err != nil || len(ps) != 1 || ps[0].Task != "snappea.fail" || ps[0].Attempt != 1 {
		t.Fatalf("after the retry button: pending %+v, %v; want the snappea.fail task", ps, err)
	}

	// Resume: the retried task runs (and fails again).
	run("resume", chromedp.Navigate(base), chromedp.WaitVisible(css("#resume")), chromedp.Click(css("#resume")), chromedp.WaitVisible(css("#pause")))
	waitFull(t, dir, 10*time.Second, "the daemon running", func(s control.Status) bool { return s.State == "running" })
	until(t, "the retried task to run and fail again", func() bool {
		fs, err := q.Failures(ctx, 0)
		return err == nil && len(fs) == 1 && fs[0].TaskID == ps[0].ID
	})

	// The screenshot, of the overview with the charts.
	run("open the overview again", chromedp.Navigate(base), chromedp.WaitVisible(css("svg.chart")))
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if *writeScreenshot || os.Getenv("SNAPPEA_DASHBOARD_PNG") == "1" {
		if err := os.WriteFile(filepath.Join("..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("wrote docs/dashboard.png")
	}
	cancelBrowser()
	cancelAlloc()
	d.stop()
}

// until polls cond until it holds, failing the test after 20s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20s waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDashboard_reload: after a reload the new program serves the
// dashboard on the same address.
func TestDashboard_reload(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := dataDir(t)
	d := startDaemon(t, dir, "--dashboard-addr", addr)
	get := func() int {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("GET the dashboard: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("GET the dashboard: %d", code)
	}
	mustSnappea(t, "reload", "--wait", "--dir", dir)
	// The new program answers on its control socket before it serves the
	// dashboard: wait for its record, not only for the reload.
	d.waitUntil(10*time.Second, "the reloaded program to serve the dashboard", func() bool {
		return d.count(isMsg("serving the dashboard")) >= 2
	})
	if n := d.count(isMsg("serving the dashboard")); n != 2 {
		t.Errorf("%d dashboard starts after a reload, want 2\n%s", n, d.output())
	}
	if code := get(); code != 200 {
		t.Errorf("GET the dashboard after the reload: %d", code)
	}
	d.stop()
}

// TestDashboard_workerProcesses: the running page of a daemon with a
// process pool shows the child a task runs in, and every child with its
// state.
func TestDashboard_workerProcesses(t *testing.T) {
	dir := dataDir(t)
	d := launchProgram(t, procBin, dir, "--workers", "2", "--procs-min", "2", "--procs-max", "2",
		"--dashboard-addr", "127.0.0.1:0")
	base := dashboardURL(t, d)
	id := enqueueProc(t, dir, "proc.sleep", `{"ms": 60000}`)
	s := waitFull(t, dir, 30*time.Second, "proc.sleep to run in a child and the second child to be idle", func(s control.Status) bool {
		idle := 0
		for _, p := range s.Procs {
			if p.State == "idle" {
				idle++
			}
		}
		return len(s.Active) == 1 && s.Active[0].PID != 0 && idle == 1
	})
	resp, err := http.Get(base + "running")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /running: %d\n%s", resp.StatusCode, body)
	}
	page := string(body)
	pid := strconv.Itoa(s.Active[0].PID)
	for _, want := range []string{
		`<td>` + strconv.FormatInt(id, 10) + `</td><td>proc.sleep</td>`, // the running task
		`<td>` + pid + `</td>`, // its child's pid
		`id="procs"`,           // the table of children
		`<td class="state">busy</td>`, `<td class="state">idle</td>`,
		`proc.sleep (` + strconv.FormatInt(id, 10) + `)`,
		"2 to 2 of them",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET /running lacks %q\n%s", want, page)
		}
	}
	for _, p := range s.Procs {
		if !strings.Contains(page, "<tr><td>"+strconv.Itoa(p.PID)+"</td>") {
			t.Errorf("GET /running does not list child %d", p.PID)
		}
	}
}

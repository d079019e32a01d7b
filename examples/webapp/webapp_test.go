package webapp_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to drop the test's schema
	"github.com/snappea/snappea/queue"
)

// binDir holds webapp-web and webapp-snappea, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("webapp tests skipped under -short: they build and run both binaries")
		return 0
	}
	dir, err := os.MkdirTemp("", "webapp-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled() {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/webapp-web", "./cmd/webapp-snappea")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// raceEnabled reports whether this test binary was built with -race, so
// that the binaries under test are too.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func TestWebapp(t *testing.T) {
	testWebapp(t, "", "")
}

// TestWebapp_postgres runs the same on PostgreSQL: the daemon and the web
// server given the same -database-url, the users table beside the
// queue's in a schema of the test's own, dropped at the end.
func TestWebapp_postgres(t *testing.T) {
	raw := os.Getenv("SNAPPEA_TEST_DATABASE_URL")
	if raw == "" {
		t.Skip("no PostgreSQL server for the tests: set SNAPPEA_TEST_DATABASE_URL=postgres://user@host:port/dbname?sslmode=disable, or run .ci/run, which starts one")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "snappea_webapp_" + hex.EncodeToString(b[:])
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	// The application's table goes into the search_path: the test's schema.
	v := u.Query()
	v.Set("search_path", schema)
	u.RawQuery = v.Encode()
	t.Cleanup(func() {
		db, err := sql.Open("pgx", raw)
		if err != nil {
			t.Error(err)
			return
		}
		defer db.Close()
		if _, err := db.Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	testWebapp(t, u.String(), schema)
}

// testWebapp runs the daemon and the web server on SQLite, or on the
// PostgreSQL database dbURL with the queue in schema.
func testWebapp(t *testing.T, dbURL, schema string) {
	dir := t.TempDir()
	data, media := filepath.Join(dir, "data"), filepath.Join(dir, "media")
	var daemonArgs, webArgs []string
	if dbURL != "" {
		daemonArgs = []string{"--database-url", dbURL, "--schema", schema}
		webArgs = []string{"-database-url", dbURL, "-schema", schema}
	}

	daemon := start(t, "webapp-snappea", append([]string{"run", "--dir", data, "--log-format", "json", "--log-level", "debug"}, daemonArgs...)...)
	daemon.waitFor(30*time.Second, "the daemon to start", func(line string) bool {
		return parse(line).msg() == "foreman started"
	})
	pwFile := filepath.Join(dir, "admin-password")
	if err := os.WriteFile(pwFile, []byte("open sesame\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	web := start(t, "webapp-web", append([]string{"-addr", "127.0.0.1:0", "-dir", data, "-media", media, "-admin-password-file", pwFile}, webArgs...)...)
	ready := web.waitFor(30*time.Second, "the web server to listen", func(line string) bool {
		return strings.HasPrefix(line, "listening on http://")
	})
	base := strings.TrimPrefix(ready, "listening on ")
	c := &http.Client{Timeout: 30 * time.Second}

	// The dashboard mounted at /admin/snappea/, behind basic auth, showing
	// the running daemon.
	for _, tc := range []struct {
		user, password string
		want           int
	}{{"", "", 401}, {"admin", "wrong", 401}, {"admin", "open sesame", 200}} {
		req, _ := http.NewRequest("GET", base+"/admin/snappea/", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.password)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /admin/snappea/ as %q: %d, want %d", tc.user, resp.StatusCode, tc.want)
		}
		if tc.want == 200 && (!strings.Contains(string(body), `<td class="state">running</td>`) ||
			!strings.Contains(string(body), `href="/admin/snappea/queued"`)) {
			t.Errorf("the dashboard under /admin/snappea/ does not show the running daemon with links under its prefix:\n%s", body)
		}
	}

	// Requests the server refuses: none may enqueue anything, which the
	// counts at the end check.
	for _, tc := range []struct {
		name, path, contentType, body string
		want                          int
	}{
		{"truncated JSON", "/signup", "application/json", `{"email":`, http.StatusBadRequest},
		{"JSON without email", "/signup", "application/json", `{}`, http.StatusBadRequest},
		{"not an address", "/signup", "application/json", `{"email":"ada"}`, http.StatusBadRequest},
		{"form without email", "/signup", "application/x-www-form-urlencoded", "name=ada", http.StatusBadRequest},
		{"not an image", "/thumbnail", "image/png", "hello", http.StatusBadRequest},
		{"bad size", "/thumbnail?size=0", "image/png", string(pngBytes(t, 10, 10)), http.StatusBadRequest},
	} {
		r, err := post(c, base+tc.path, tc.contentType, []byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if r.code != tc.want || r.TaskID != 0 {
			t.Errorf("%s: got %d %+v, want %d and no task", tc.name, r.code, r, tc.want)
		}
	}

	// The real work: signups (JSON and form) and uploads, all at once.
	type signup struct{ userID, taskID int64 }
	type upload struct {
		taskID       int64
		file         string
		wantW, wantH int
	}
	var (
		mu       sync.Mutex
		signups  []signup
		uploads  []upload
		emails   []string
		wg       sync.WaitGroup
		wantTask = map[int64]string{} // task id → task name
	)
	for i := range 20 {
		wg.Go(func() {
			var r reply
			var err error
			switch i % 4 {
			case 0, 1:
				email := fmt.Sprintf("user%d@example.com", i)
				if i%4 == 0 {
					r, err = post(c, base+"/signup", "application/json", []byte(`{"email":"`+email+`"}`))
				} else {
					r, err = post(c, base+"/signup", "application/x-www-form-urlencoded", []byte(url.Values{"email": {email}}.Encode()))
				}
				if err == nil && r.code == http.StatusAccepted {
					mu.Lock()
					defer mu.Unlock()
					signups = append(signups, signup{r.UserID, r.TaskID})
					emails = append(emails, email)
					wantTask[r.TaskID] = "webapp.send_welcome"
				}
			case 2:
				r, err = post(c, base+"/thumbnail?size=60", "image/png", pngBytes(t, 300, 200))
				if err == nil && r.code == http.StatusAccepted {
					mu.Lock()
					defer mu.Unlock()
					uploads = append(uploads, upload{r.TaskID, r.Thumbnail, 60, 40})
					wantTask[r.TaskID] = "webapp.thumbnail"
				}
			case 3:
				r, err = post(c, base+"/thumbnail?size=60", "image/png", pngBytes(t, 120, 480))
				if err == nil && r.code == http.StatusAccepted {
					mu.Lock()
					defer mu.Unlock()
					uploads = append(uploads, upload{r.TaskID, r.Thumbnail, 15, 60})
					wantTask[r.TaskID] = "webapp.thumbnail"
				}
			}
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			} else if r.code != http.StatusAccepted || r.TaskID == 0 {
				t.Errorf("request %d: got %d %+v, want 202 and a task id", i, r.code, r)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// A second signup with a taken email: refused, and no second email.
	r, err := post(c, base+"/signup", "application/json", []byte(`{"email":"`+emails[0]+`"}`))
	if err != nil || r.code != http.StatusConflict {
		t.Errorf("duplicate signup: got %d %+v, %v; want 409", r.code, r, err)
	}

	// Every task the server queued runs to completion in the daemon.
	outcomes := map[int64]record{}
	daemon.waitUntil(60*time.Second, fmt.Sprintf("%d tasks to be done", len(wantTask)), func(lines []string) bool {
		for _, l := range lines {
			if rec := parse(l); rec.msg() == "task done" {
				outcomes[rec.int("task_id")] = rec
			}
		}
		for id := range wantTask {
			if _, ok := outcomes[id]; !ok {
				return false
			}
		}
		return true
	})
	for id, name := range wantTask {
		if rec := outcomes[id]; rec["outcome"] != "done" || rec["task"] != name {
			t.Errorf("task %d: got %v, want task %s, outcome done", id, rec, name)
		}
	}

	logged := map[int64]record{} // task id → its "welcome sent" record
	for _, l := range daemon.output() {
		rec := parse(l)
		if rec.msg() == "welcome sent" {
			logged[rec.int("task_id")] = rec
		}
		for _, e := range emails {
			if rec["level"] != "DEBUG" && strings.Contains(l, e) {
				t.Errorf("an email address was logged above debug: %s", l)
			}
		}
	}
	for _, s := range signups {
		rec, ok := logged[s.taskID]
		if !ok || rec["level"] != "INFO" || rec.int("user_id") != s.userID {
			t.Errorf("welcome task %d for user %d: got record %v, want an INFO \"welcome sent\" with user_id", s.taskID, s.userID, rec)
		}
	}
	for _, u := range uploads {
		img := readPNG(t, filepath.Join(media, u.file))
		if b := img.Bounds(); b.Dx() != u.wantW || b.Dy() != u.wantH {
			t.Errorf("thumbnail %s: got %dx%d, want %dx%d", u.file, b.Dx(), b.Dy(), u.wantW, u.wantH)
		}
	}

	web.stop()
	daemon.stop()

	// Nothing else was queued or saved: not by the refused requests, not by
	// the duplicate signup.
	q, err := queue.Open(t.Context(), queue.Config{Dir: data, DatabaseURL: dbURL, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	st, err := q.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var users int
	if err := q.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM users`).Scan(&users); err != nil {
		t.Fatal(err)
	}
	var ran int
	for _, l := range daemon.output() {
		if parse(l).msg() == "task done" {
			ran++
		}
	}
	if st.Pending != 0 || users != len(signups) || ran != len(wantTask) {
		t.Errorf("got %d pending, %d users, %d tasks run; want 0, %d, %d", st.Pending, users, ran, len(signups), len(wantTask))
	}
}

// reply is the server's JSON answer.
type reply struct {
	code      int
	UserID    int64  `json:"user_id"`
	TaskID    int64  `json:"task_id"`
	Thumbnail string `json:"thumbnail"`
	Error     string `json:"error"`
}

func post(c *http.Client, url, contentType string, body []byte) (reply, error) {
	resp, err := c.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	r := reply{code: resp.StatusCode}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		b, _ := io.ReadAll(resp.Body)
		return r, fmt.Errorf("POST %s: %s, not JSON: %q", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("POST %s: decode the answer: %w", url, err)
	}
	return r, nil
}

// pngBytes encodes a w×h image of one color as PNG.
func pngBytes(t *testing.T, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{G: 128, B: 255, A: 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Error(err) // may run in a request's goroutine
	}
	return b.Bytes()
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return img
}

// record is one JSON log record of the daemon; other lines parse as empty.
type record map[string]any

func parse(line string) record {
	var r record
	if json.Unmarshal([]byte(line), &r) != nil {
		return nil
	}
	return r
}

func (r record) msg() string { s, _ := r["msg"].(string); return s }

func (r record) int(key string) int64 { f, _ := r[key].(float64); return int64(f) }

// proc is a running binary whose output (stdout and stderr together) is
// read line by line as it comes.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its output is read

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on each new line and at exit
}

// start starts a binary built by TestMain; the test's cleanup kills it if
// it is still running.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	// One pipe for both streams: a line is written in one write, so lines
	// do not interleave.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, done: make(chan struct{}), changed: make(chan struct{})}
	go p.read(r)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) read(r io.ReadCloser) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r) // after an overlong line, so the process never blocks
	r.Close()
	p.cmd.Wait()
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	close(p.done)
}

// output returns the lines read so far.
func (p *proc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines
}

// waitUntil waits until cond holds of the output so far, checking it again
// on every new line; it fails the test after timeout or if the process
// exits first.
func (p *proc) waitUntil(timeout time.Duration, what string, cond func(lines []string) bool) {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		lines, changed := p.lines, p.changed
		p.mu.Unlock()
		if cond(lines) {
			return
		}
		select {
		case <-changed:
		case <-p.done:
			if cond(p.output()) {
				return
			}
			p.t.Fatalf("%s exited (%v) before %s; its output:\n%s", p.name, p.cmd.ProcessState, what, p.tail())
		case <-deadline.C:
			p.t.Fatalf("timed out after %v waiting for %s; %s's output:\n%s", timeout, what, p.name, p.tail())
		}
	}
}

// waitFor waits for a line matching match and returns it.
func (p *proc) waitFor(timeout time.Duration, what string, match func(line string) bool) string {
	p.t.Helper()
	var found string
	p.waitUntil(timeout, what, func(lines []string) bool {
		for _, l := range lines {
			if match(l) {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// stop sends TERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s still running 30s after TERM; its output:\n%s", p.name, p.tail())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("%s exited with %d after TERM, want 0; its output:\n%s", p.name, code, p.tail())
	}
}

// tail is the end of the output, for failure messages.
func (p *proc) tail() string {
	lines := p.output()
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// cleanEnv is the test's environment without SNAPPEA_* and SENTRY_*, so
// that a developer's settings do not reach the processes under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SNAPPEA_") && !strings.HasPrefix(kv, "SENTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// Started on a directory where no daemon ever ran (a wrong -dir), the web
// server refuses to create a queue of its own.
func TestWebapp_NoDatabase(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	web := start(t, "webapp-web", "-addr", "127.0.0.1:0", "-dir", data, "-media", filepath.Join(t.TempDir(), "media"))
	select {
	case <-web.done:
	case <-time.After(30 * time.Second):
		t.Fatal("webapp-web on a directory without a database still runs after 30s")
	}
	if web.cmd.ProcessState.ExitCode() == 0 {
		t.Error("webapp-web exited 0")
	}
	out := strings.Join(web.output(), "\n")
	for _, want := range []string{"no queue database", data, "daemon creates it"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("webapp-web created %s (%v)", data, err)
	}
}

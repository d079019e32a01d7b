package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deadline bounds every wait in these tests.
const deadline = 10 * time.Second

// fakeHandler records the calls it gets and answers with its fields.
type fakeHandler struct {
	status    *Status
	err       error // returned by every method but Health
	healthErr error
	cancelled bool
	// With block set, Status signals entered, then waits for block to be
	// closed or for its context to end, and sends left the context's
	// error, nil when released.
	block   chan struct{}
	entered chan struct{}
	left    chan error

	mu    sync.Mutex
	calls []string
}

func (h *fakeHandler) record(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, fmt.Sprintf(format, args...))
}

// Calls returns the calls so far.
func (h *fakeHandler) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

func (h *fakeHandler) Status(ctx context.Context) (*Status, error) {
	if WithoutQueue(ctx) {
		h.record("status without queue")
	} else {
		h.record("status")
	}
	if h.block != nil {
		h.entered <- struct{}{}
		select {
		case <-h.block:
			h.left <- nil
		case <-ctx.Done():
			h.left <- ctx.Err()
			return nil, ctx.Err()
		}
	}
	return h.status, h.err
}

func (h *fakeHandler) Health(ctx context.Context) error {
	h.record("health")
	return h.healthErr
}

func (h *fakeHandler) Pause(ctx context.Context) error  { h.record("pause"); return h.err }
func (h *fakeHandler) Resume(ctx context.Context) error { h.record("resume"); return h.err }
func (h *fakeHandler) Reload(ctx context.Context) error { h.record("reload"); return h.err }

func (h *fakeHandler) Stop(ctx context.Context, now bool) error {
	h.record("stop now=%v", now)
	return h.err
}

func (h *fakeHandler) SetWorkers(ctx context.Context, n int) error {
	h.record("workers %d", n)
	return h.err
}

func (h *fakeHandler) SetProcs(ctx context.Context, l ProcLimits) error {
	show := func(p *int) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	h.record("procs min=%s max=%s", show(l.Min), show(l.Max))
	return h.err
}

func (h *fakeHandler) Cancel(ctx context.Context, id int64) (bool, error) {
	h.record("cancel %d", id)
	return h.cancelled, h.err
}

// syncBuffer is a log destination tests read while servers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// socketPath returns a socket path in a new temporary directory.
func socketPath(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), SocketFile)
}

// mustListen listens on a new socket and serves until the test ends.
func mustListen(tb testing.TB, h Handler) (*Server, string) {
	tb.Helper()
	path := socketPath(tb)
	s, err := Listen(path, h, quietLogger())
	if err != nil {
		tb.Fatalf("Listen: %v", err)
	}
	serve(tb, s)
	return s, path
}

// serve runs s until the test ends, then closes it and checks that Run
// returned nil.
func serve(tb testing.TB, s *Server) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	tb.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(deadline):
			tb.Errorf("Run did not return within %v of Close", deadline)
		}
	})
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	tb.Cleanup(cancel)
	return ctx
}

// wait waits for ch, failing the test after deadline.
func wait[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(deadline):
		tb.Fatalf("no %s within %v", what, deadline)
		panic("unreachable")
	}
}

// request sends an HTTP request over the socket at path and returns the
// status, the Allow header and the decoded JSON answer.
func request(tb testing.TB, path, method, target, body string) (int, string, map[string]any) {
	tb.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer hc.CloseIdleConnections()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testContext(tb), method, "http://snappea"+target, rb)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("%s %s: Content-Type %q, want application/json", method, target, ct)
	}
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		tb.Fatalf("%s %s: decode the answer: %v", method, target, err)
	}
	return resp.StatusCode, resp.Header.Get("Allow"), v
}

func TestClient_Endpoints(t *testing.T) {
	h := &fakeHandler{status: &Status{State: "paused", WorkersTotal: 4, Generation: 2}, cancelled: true}
	_, path := mustListen(t, h)
	cl := Dial(path)
	ctx := testContext(t)

	tests := []struct {
		name     string
		call     func() error
		wantCall string
	}{
		{"Status", func() error {
			st, err := cl.Status(ctx)
			if err == nil && (st.State != "paused" || st.WorkersTotal != 4 || st.Generation != 2) {
				t.Errorf("Status = %+v, want the handler's", st)
			}
			if err == nil && (!st.Running || st.PID != os.Getpid() || st.DaemonPID != os.Getpid()) {
				t.Errorf("Status: running %v, pid %d, daemon_pid %d; want true and this process's pid %d",
					st.Running, st.PID, st.DaemonPID, os.Getpid())
			}
			return err
		}, "status"},
		{"Health", func() error { return cl.Health(ctx) }, "health"},
		{"Pause", func() error { return cl.Pause(ctx) }, "pause"},
		{"Resume", func() error { return cl.Resume(ctx) }, "resume"},
		{"Reload", func() error { return cl.Reload(ctx) }, "reload"},
		{"Stop", func() error { return cl.Stop(ctx, false) }, "stop now=false"},
		{"StopNow", func() error { return cl.Stop(ctx, true) }, "stop now=true"},
		{"SetWorkers", func() error { return cl.SetWorkers(ctx, 7) }, "workers 7"},
		{"SetProcs", func() error { n := 3; return cl.SetProcs(ctx, ProcLimits{Max: &n}) }, "procs min=- max=3"},
		{"Cancel", func() error {
			ok, err := cl.Cancel(ctx, 42)
			if err == nil && !ok {
				t.Errorf("Cancel = false, want the handler's true")
			}
			return err
		}, "cancel 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.Calls())
			if err := tt.call(); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			calls := h.Calls()[before:]
			if len(calls) != 1 || calls[0] != tt.wantCall {
				t.Errorf("handler got %q, want [%q]", calls, tt.wantCall)
			}
		})
	}
}

// TestServer_RawHTTP checks what curl sees: plain HTTP/1.1 on the socket.
func TestServer_RawHTTP(t *testing.T) {
	h := &fakeHandler{status: &Status{State: "running", WorkersTotal: 2}}
	_, path := mustListen(t, h)

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(deadline))
	if _, err := io.WriteString(c, "GET /status HTTP/1.1\r\nHost: snappea\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"running": true, "state": "running", "workers_total": 2.0, "pid": float64(os.Getpid()),
		"active": []any{}, "services": []any{}, "schedules": []any{},
	} {
		if g, ok := got[key]; !ok || fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("%q = %v, want %v", key, g, want)
		}
	}
	if _, ok := got["started_at"]; ok {
		t.Errorf("started_at present for a zero time: %v", got["started_at"])
	}
}

func TestServer_Curl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	h := &fakeHandler{status: &Status{State: "running"}}
	_, path := mustListen(t, h)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(testContext(t), curl, append([]string{"-sS", "--fail-with-body", "--unix-socket", path}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("http://snappea/status"); !strings.Contains(out, `"state":"running"`) {
		t.Errorf("curl /status printed %q, want the status", out)
	}
	if out := run("-X", "POST", "http://snappea/stop?now=true"); out != "{\"ok\":true}\n" {
		t.Errorf("curl POST /stop?now=true printed %q", out)
	}
	if out := run("-d", `{"workers": 3}`, "http://snappea/workers"); out != "{\"ok\":true}\n" {
		t.Errorf("curl -d ... /workers printed %q", out)
	}
	if got, want := h.Calls(), []string{"status", "stop now=true", "workers 3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("handler got %q, want %q", got, want)
	}
}

func TestServer_BadRequests(t *testing.T) {
	h := &fakeHandler{status: &Status{}}
	_, path := mustListen(t, h)
	tests := []struct {
		name, method, target, body string
		wantCode                   int
		wantAllow                  string
		wantErr                    string // in the error message
	}{
		{"GET on POST endpoint", "GET", "/pause", "", 405, "POST", "/pause takes POST, not GET"},
		{"POST on GET endpoint", "POST", "/status", "", 405, "GET, HEAD", "/status takes GET, not POST"},
		{"DELETE", "DELETE", "/workers", "", 405, "POST", "takes POST"},
		{"unknown path", "GET", "/nope", "", 404, "", "no endpoint /nope: use GET /status"},
		{"workers empty body", "POST", "/workers", "", 400, "", `empty request body: send {"workers": N}`},
		{"workers misspelt", "POST", "/workers", `{"workres": 3}`, 400, "", `unknown field "workres"`},
		{"workers missing", "POST", "/workers", `{}`, 400, "", `no "workers" in the request body`},
		{"workers zero", "POST", "/workers", `{"workers": 0}`, 400, "", "workers must be at least 1, not 0"},
		{"workers string", "POST", "/workers", `{"workers": "3"}`, 400, "", `bad request body`},
		{"workers not JSON", "POST", "/workers", `workers=3`, 400, "", `bad request body: invalid character`},
		{"workers two values", "POST", "/workers", `{"workers": 3} {"workers": 4}`, 400, "", "more than one JSON value"},
		{"procs empty object", "POST", "/procs", `{}`, 400, "", `no "min" or "max" in the request body`},
		{"procs negative min", "POST", "/procs", `{"min": -1}`, 400, "", "min must be zero or more, not -1"},
		{"procs zero max", "POST", "/procs", `{"max": 0}`, 400, "", "max must be at least 1, not 0"},
		{"workers huge", "POST", "/workers", `{"workers": 3` + strings.Repeat(" ", 100<<10) + `}`, 400, "", "request body over 65536 bytes"},
		{"cancel negative", "POST", "/cancel", `{"id": -1}`, 400, "", "id must be a task id, at least 1, not -1"},
		{"cancel missing", "POST", "/cancel", `{"task": 1}`, 400, "", `unknown field "task"`},
		{"stop bad query", "POST", "/stop?now=maybe", "", 400, "", `bad query now="maybe": use now=true or now=false`},
		{"stop bad body", "POST", "/stop", `{"now": "yes"}`, 400, "", `bad request body`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, allow, v := request(t, path, tt.method, tt.target, tt.body)
			if code != tt.wantCode {
				t.Errorf("status %d, want %d", code, tt.wantCode)
			}
			if allow != tt.wantAllow {
				t.Errorf("Allow %q, want %q", allow, tt.wantAllow)
			}
			if msg, _ := v["error"].(string); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error %q, want it to contain %q", msg, tt.wantErr)
			}
		})
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("handler called on bad requests: %q", calls)
	}
}

func TestServer_StopBodyAndQuery(t *testing.T) {
	h := &fakeHandler{}
	_, path := mustListen(t, h)
	for _, tt := range []struct{ target, body, want string }{
		{"/stop", "", "stop now=false"},
		{"/stop", `{"now": true}`, "stop now=true"},
		{"/stop?now=true", "", "stop now=true"},
		{"/stop?now=1", "", "stop now=true"},
		{"/stop?now=false", "", "stop now=false"},
	} {
		before := len(h.Calls())
		code, _, _ := request(t, path, "POST", tt.target, tt.body)
		calls := h.Calls()[before:]
		if code != 200 || len(calls) != 1 || calls[0] != tt.want {
			t.Errorf("POST %s %s: status %d, handler got %q; want 200, [%q]", tt.target, tt.body, code, calls, tt.want)
		}
	}
}

func TestClient_HandlerErrors(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantIs   error
	}{
		{"conflict", fmt.Errorf("%w: already stopping", ErrConflict), 409, ErrConflict},
		{"invalid", fmt.Errorf("%w: at most 64 workers", ErrInvalid), 400, ErrInvalid},
		{"other", errors.New("database is locked"), 500, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path := mustListen(t, &fakeHandler{err: tt.err})
			err := Dial(path).SetWorkers(testContext(t), 100)
			var se *ServerError
			if !errors.As(err, &se) || se.StatusCode != tt.wantCode || err.Error() != tt.err.Error() {
				t.Fatalf("SetWorkers = %#v, want a *ServerError %d %q", err, tt.wantCode, tt.err.Error())
			}
			for _, sentinel := range []error{ErrConflict, ErrInvalid, ErrUnhealthy, ErrNoDaemon, ErrPermission} {
				if got, want := errors.Is(err, sentinel), sentinel == tt.wantIs; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", sentinel, got, want)
				}
			}
		})
	}
	t.Run("no status", func(t *testing.T) {
		_, path := mustListen(t, &fakeHandler{})
		if _, err := Dial(path).Status(testContext(t)); err == nil || !strings.Contains(err.Error(), "no status") {
			t.Errorf("Status = %v, want the server's error for a nil status", err)
		}
	})
}

func TestClient_Health(t *testing.T) {
	h := &fakeHandler{healthErr: errors.New("queue database unreachable")}
	_, path := mustListen(t, h)
	err := Dial(path).Health(testContext(t))
	if !errors.Is(err, ErrUnhealthy) || err.Error() != "queue database unreachable" {
		t.Errorf("Health = %v, want the reason, matching ErrUnhealthy", err)
	}
	code, _, v := request(t, path, "GET", "/health", "")
	if code != 503 || v["ok"] != false || v["reason"] != "queue database unreachable" {
		t.Errorf("GET /health = %d %v, want 503 {ok: false, reason: ...}", code, v)
	}

	h.healthErr = nil
	if code, _, v := request(t, path, "GET", "/health", ""); code != 200 || v["ok"] != true || len(v) != 1 {
		t.Errorf("GET /health = %d %v, want 200 {ok: true}", code, v)
	}
}

func TestListen_SocketMode(t *testing.T) {
	// The umask belongs to the process: this test must not run in parallel.
	for _, umask := range []int{0, 0o022, 0o277} {
		t.Run(fmt.Sprintf("umask %03o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			path := socketPath(t)
			s, err := Listen(path, &fakeHandler{}, quietLogger())
			syscall.Umask(old)
			if err != nil {
				t.Fatal(err)
			}
			serve(t, s)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
				t.Errorf("socket file mode %v, want a socket with 0600", fi.Mode())
			}
			if err := Dial(path).Health(testContext(t)); err != nil {
				t.Errorf("Health: %v", err)
			}
		})
	}
}

// staleSocket leaves a socket file at path with nothing listening, as a
// crashed daemon does.
func staleSocket(tb testing.TB, path string) {
	tb.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

func TestListen_StaleSocket(t *testing.T) {
	path := socketPath(t)
	staleSocket(t, path)
	s, err := Listen(path, &fakeHandler{}, quietLogger())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	serve(t, s)
	if err := Dial(path).Health(testContext(t)); err != nil {
		t.Errorf("Health: %v", err)
	}
}

func TestListen_NotASocket(t *testing.T) {
	path := socketPath(t)
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path, &fakeHandler{}, quietLogger())
	if err == nil || !strings.Contains(err.Error(), path+" exists and is not a socket") {
		t.Errorf("Listen = %v, want an error saying the file is not a socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Errorf("the file was changed: %q", b)
	}
}

func TestListen_PathTooLong(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, strings.Repeat("d", 120-len(dir)), SocketFile)
	_, err := Listen(path, &fakeHandler{}, quietLogger())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "108") {
		t.Errorf("Listen = %v, want an error naming the path and the limit", err)
	}
	if err := Dial(path).Health(testContext(t)); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("client: %v, want an error naming the path", err)
	}
}

func TestClient_NoDaemon(t *testing.T) {
	t.Run("no socket file", func(t *testing.T) {
		path := socketPath(t)
		_, err := Dial(path).Status(testContext(t))
		if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), path) {
			t.Errorf("Status = %v, want ErrNoDaemon naming %s", err, path)
		}
	})
	t.Run("stale socket file", func(t *testing.T) {
		path := socketPath(t)
		staleSocket(t, path)
		err := Dial(path).Pause(testContext(t))
		if !errors.Is(err, ErrNoDaemon) || !strings.Contains(err.Error(), path) {
			t.Errorf("Pause = %v, want ErrNoDaemon naming %s", err, path)
		}
	})
	t.Run("closed server", func(t *testing.T) {
		s, path := mustListen(t, &fakeHandler{})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file after Close: %v, want it removed", err)
		}
		if err := Dial(path).Health(testContext(t)); !errors.Is(err, ErrNoDaemon) {
			t.Errorf("Health = %v, want ErrNoDaemon", err)
		}
	})
}

func TestAllowedPeer(t *testing.T) {
	tests := []struct {
		peer, own int
		want      bool
	}{
		{1000, 1000, true}, // the daemon's own user
		{0, 1000, true},    // root
		{0, 0, true},       // a daemon run as root, asked by root
		{1001, 1000, false},
		{1000, 0, false}, // a user asking a root daemon
		{65534, 1000, false},
	}
	for _, tt := range tests {
		if got := allowedPeer(tt.peer, tt.own); got != tt.want {
			t.Errorf("allowedPeer(%d, %d) = %v, want %v", tt.peer, tt.own, got, tt.want)
		}
	}
}

// TestHelperClient is not a test: TestServer_OtherUser runs the test
// binary as another user to connect to the socket in CONTROL_HELPER_SOCKET.
func TestHelperClient(t *testing.T) {
	path := os.Getenv("CONTROL_HELPER_SOCKET")
	if path == "" {
		t.Skip("helper process for TestServer_OtherUser")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
	} else {
		c.SetDeadline(time.Now().Add(deadline))
		io.WriteString(c, "GET /status HTTP/1.1\r\nHost: snappea\r\n\r\n")
		b, err := io.ReadAll(c)
		fmt.Printf("read: %d bytes %q, err %v\n", len(b), b, err)
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err = Dial(path).Status(ctx)
	fmt.Printf("client: permission %v: %v\n", errors.Is(err, ErrPermission), err)
	os.Exit(0)
}

// TestServer_OtherUser runs a client as user nobody against a daemon run by
// root: the socket file's mode keeps it out, and when the mode is loosened,
// the peer check closes its connection without an answer.
func TestServer_OtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs a client as user nobody, which needs root; this test runs as uid", os.Geteuid())
	}
	const nobody = 65534

	// nobody must reach the test binary and the socket: copy the binary
	// out of the build directory and open the temporary directories.
	binDir, sockDir := t.TempDir(), t.TempDir()
	for _, dir := range []string{filepath.Dir(binDir), binDir, sockDir} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(binDir, "control.test")
	copyFile(t, os.Args[0], bin, 0o755)

	logs := &syncBuffer{}
	path := filepath.Join(sockDir, SocketFile)
	h := &fakeHandler{status: &Status{}}
	s, err := Listen(path, h, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s)

	// runHelper runs the helper as nobody and returns its output and pid.
	runHelper := func(t *testing.T) (string, int) {
		t.Helper()
		cmd := exec.CommandContext(testContext(t), bin, "-test.run=^TestHelperClient$")
		cmd.Dir = binDir
		cmd.Env = []string{"CONTROL_HELPER_SOCKET=" + path, "PATH=" + os.Getenv("PATH")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
		}
		return string(out), cmd.Process.Pid
	}

	t.Run("socket mode", func(t *testing.T) {
		out, _ := runHelper(t)
		if !strings.Contains(out, "dial: ") || !strings.Contains(out, "permission denied") {
			t.Errorf("helper's dial got through the socket's mode:\n%s", out)
		}
		if !strings.Contains(out, "client: permission true") {
			t.Errorf("helper's client did not get ErrPermission:\n%s", out)
		}
	})

	t.Run("peer check", func(t *testing.T) {
		if err := os.Chmod(path, 0o666); err != nil {
			t.Fatal(err)
		}
		out, pid := runHelper(t)
		if !strings.Contains(out, "read: 0 bytes") {
			t.Errorf("helper got an answer from the daemon:\n%s", out)
		}
		if !strings.Contains(out, "client: permission true") {
			t.Errorf("helper's client did not get ErrPermission:\n%s", out)
		}
		want := fmt.Sprintf("level=WARN msg=\"refused a control connection from another user\" peer_uid=%d peer_pid=%d", nobody, pid)
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	})
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("handler called for another user: %q", calls)
	}

	// Root is let in whatever the daemon's user; here both are root.
	if err := Dial(path).Health(testContext(t)); err != nil {
		t.Errorf("Health as root: %v", err)
	}
}

func copyFile(tb testing.TB, from, to string, perm os.FileMode) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, perm); err != nil {
		tb.Fatal(err)
	}
}

// TestServer_Handover passes the socket from one server to another, as a
// reload passes it across exec, and checks that it answers throughout.
func TestServer_Handover(t *testing.T) {
	ctx := testContext(t)
	s1, path := mustListen(t, &fakeHandler{status: &Status{Generation: 1}})
	cl := Dial(path)
	if st, err := cl.Status(ctx); err != nil || st.Generation != 1 {
		t.Fatalf("Status before the handover = %+v, %v; want generation 1", st, err)
	}

	f, err := s1.File()
	if err != nil {
		t.Fatal(err)
	}
	// Cmd.ExtraFiles takes the descriptor with Fd, which must leave the
	// socket non-blocking: the first server goes on accepting, and then
	// shuts down rather than hang in a blocking accept.
	if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("socket after Fd: flags %#x, %v; want O_NONBLOCK kept", fl, err)
	}
	if st, err := cl.Status(ctx); err != nil || st.Generation != 1 {
		t.Fatalf("Status after File = %+v, %v; want generation 1", st, err)
	}
	s2, err := ListenFile(f, &fakeHandler{status: &Status{Generation: 2}}, quietLogger())
	f.Close()
	if err != nil {
		t.Fatalf("ListenFile: %v", err)
	}
	if s2.Path() != path {
		t.Errorf("adopted socket's path %q, want %q", s2.Path(), path)
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- s1.ShutdownForExec(ctx) }()
	if err := wait(t, shutdown, "end of ShutdownForExec"); err != nil {
		t.Fatalf("ShutdownForExec: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("Close after ShutdownForExec: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket file after ShutdownForExec and Close: %v", err)
	}

	// A client that connects while nobody serves waits in the backlog.
	answer := make(chan int, 1)
	go func() {
		st, err := cl.Status(ctx)
		if err != nil {
			t.Errorf("Status during the handover: %v", err)
			answer <- 0
			return
		}
		answer <- st.Generation
	}()
	serve(t, s2)
	if got := wait(t, answer, "answer after the handover"); got != 2 {
		t.Errorf("generation %d answered after the handover, want 2", got)
	}

	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Health(ctx); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Health after the second server closed = %v, want ErrNoDaemon", err)
	}
}

func TestListenFile_NotUnix(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ListenFile(f, &fakeHandler{}, quietLogger()); err == nil || !strings.Contains(err.Error(), "not a unix one") {
		t.Errorf("ListenFile on a TCP listener = %v, want an error", err)
	}
}

// inFlight starts a Status request that blocks in the handler, and returns
// the server, the handler and the request's result.
func inFlight(t *testing.T) (*Server, string, *fakeHandler, <-chan error) {
	h := &fakeHandler{status: &Status{}, block: make(chan struct{}),
		entered: make(chan struct{}, 1), left: make(chan error, 1)}
	s, path := mustListen(t, h)
	t.Cleanup(func() {
		select {
		case <-h.block:
		default:
			close(h.block)
		}
	})
	got := make(chan error, 1)
	go func() {
		_, err := Dial(path).Status(testContext(t))
		got <- err
	}()
	wait(t, h.entered, "Status call")
	return s, path, h, got
}

func TestServer_ShutdownWaits(t *testing.T) {
	s, path, h, got := inFlight(t)
	began := make(chan struct{})
	s.srv.RegisterOnShutdown(func() { close(began) })
	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(context.Background()) }()
	wait(t, began, "start of Shutdown")

	if err := Dial(path).Health(testContext(t)); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("a new request during Shutdown: %v, want ErrNoDaemon", err)
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	default:
	}
	close(h.block)
	if err := wait(t, got, "answer to the request in flight"); err != nil {
		t.Errorf("request in flight: %v, want an answer", err)
	}
	if err := wait(t, shutdown, "end of Shutdown"); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
}

func TestServer_ShutdownDeadline(t *testing.T) {
	s, _, h, got := inFlight(t)
	ctx, cancel := context.WithCancel(context.Background())
	began := make(chan struct{})
	s.srv.RegisterOnShutdown(func() { close(began) })
	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(ctx) }()
	wait(t, began, "start of Shutdown")
	cancel()
	if err := wait(t, shutdown, "end of Shutdown"); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	if err := wait(t, got, "end of the request in flight"); err == nil {
		t.Errorf("request in flight answered after Shutdown's context ended, want its connection closed")
	}
	// The handler's context ends with its connection.
	if err := wait(t, h.left, "return of the handler"); !errors.Is(err, context.Canceled) {
		t.Errorf("handler returned on %v, want its context cancelled", err)
	}
}

func TestServer_Run(t *testing.T) {
	path := socketPath(t)
	s, err := Listen(path, &fakeHandler{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if err := Dial(path).Health(testContext(t)); err != nil {
		t.Fatalf("Health: %v", err)
	}
	if err := s.Run(ctx); err == nil {
		t.Errorf("second Run = nil, want an error")
	}
	cancel()
	if err := wait(t, done, "return of Run"); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Run returned: %v, want it removed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
}

func TestServer_ShutdownBeforeRun(t *testing.T) {
	path := socketPath(t)
	s, err := Listen(path, &fakeHandler{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(testContext(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Run(testContext(t)); err != nil {
		t.Errorf("Run after Shutdown = %v, want nil at once", err)
	}
	if err := Dial(path).Health(testContext(t)); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Health = %v, want ErrNoDaemon", err)
	}
}

func TestStatus_MarshalJSON(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		st   Status
		want string
	}{
		{"zero", Status{}, `{"running":false,"pid":0,"daemon_pid":0,"state":"","generation":0,"workers_total":0,` +
			`"workers_busy":0,"active":[],"counters":{"done":0,"failed":0,"panicked":0,"discarded":0,"interrupted":0,"cancelled":0,"retried":0,"overdue":0},` +
			`"pending":0,"ready":0,"delayed":0,"oldest_age_seconds":0,"idle_seconds":0,"schema_version":0,"services":[],"schedules":[],"procs":[]}`},
		{"full", Status{
			Running: true, PID: 7, DaemonPID: 7, StartedAt: at, State: "running", Generation: 1,
			WorkersTotal: 4, WorkersBusy: 1,
			Active:   []Active{{TaskID: 9, Task: "mail", StartedAt: at, ElapsedSeconds: 1.5, Deadline: at, Overdue: true, Attempt: 2, PID: 4242}},
			Counters: Counters{Done: 1, Failed: 2, Panicked: 3, Discarded: 4, Interrupted: 5, Cancelled: 7, Retried: 8, Overdue: 6},
			Pending:  10, Ready: 8, Delayed: 2, OldestAgeSeconds: 2.5, IdleSeconds: 4.5, SchemaVersion: 3,
			Services:  []Service{{Name: "stats", State: "running", Restarts: 1, LastError: "boom", Since: at}, {Name: "cron", State: "starting"}},
			Schedules: []Schedule{{Name: "nightly", Spec: "0 3 * * *", Task: "report", Next: at, Last: at}, {Name: "soon", Spec: "@every 1m", Task: "tick", Next: at}},
			Procs:     []Proc{{PID: 4242, State: "busy", TaskID: 9, Task: "mail", RSSBytes: 1 << 20, TasksDone: 3, StartedAt: at}, {PID: 4243, State: "idle", StartedAt: at}},
			ProcPool:  &ProcPool{Min: 1, Max: 4, Waiting: 2, Starts: 5, Restarts: 3, Deaths: 2, Kills: 1, SIGKILLs: 1, Retired: 1},
		}, `{"running":true,"pid":7,"daemon_pid":7,"started_at":"2025-01-02T03:04:05Z","state":"running","generation":1,` +
			`"workers_total":4,"workers_busy":1,"active":[{"task_id":9,"task":"mail","started_at":"2025-01-02T03:04:05Z",` +
			`"elapsed_seconds":1.5,"deadline":"2025-01-02T03:04:05Z","overdue":true,"attempt":2,"pid":4242}],` +
			`"counters":{"done":1,"failed":2,"panicked":3,"discarded":4,"interrupted":5,"cancelled":7,"retried":8,"overdue":6},` +
			`"pending":10,"ready":8,"delayed":2,"oldest_age_seconds":2.5,"idle_seconds":4.5,"schema_version":3,` +
			`"services":[{"name":"stats","state":"running","restarts":1,"last_error":"boom","since":"2025-01-02T03:04:05Z"},` +
			`{"name":"cron","state":"starting","restarts":0}],` +
			`"schedules":[{"name":"nightly","spec":"0 3 * * *","task":"report","next":"2025-01-02T03:04:05Z","last":"2025-01-02T03:04:05Z"},` +
			`{"name":"soon","spec":"@every 1m","task":"tick","next":"2025-01-02T03:04:05Z"}],` +
			`"procs":[{"pid":4242,"state":"busy","task_id":9,"task":"mail","rss_bytes":1048576,"tasks_done":3,"started_at":"2025-01-02T03:04:05Z"},` +
			`{"pid":4243,"state":"idle","task_id":0,"task":"","rss_bytes":0,"tasks_done":0,"started_at":"2025-01-02T03:04:05Z"}],` +
			`"proc_pool":{"min":1,"max":4,"waiting":2,"starts":5,"restarts":3,"deaths":2,"kills":1,"sigkills":1,"retired":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []any{tt.st, &tt.st} {
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != tt.want {
					t.Errorf("json.Marshal(%T)\n got %s\nwant %s", v, b, tt.want)
				}
			}
			var back Status
			if err := json.Unmarshal([]byte(tt.want), &back); err != nil {
				t.Fatal(err)
			}
			if b, _ := json.Marshal(back); string(b) != tt.want {
				t.Errorf("round trip\n got %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestClient_ContextEnds(t *testing.T) {
	h := &fakeHandler{status: &Status{}, block: make(chan struct{}),
		entered: make(chan struct{}, 1), left: make(chan error, 1)}
	_, path := mustListen(t, h)
	defer close(h.block)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := Dial(path).Status(ctx)
		got <- err
	}()
	wait(t, h.entered, "Status call")
	cancel()
	if err := wait(t, got, "return of Status"); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), path) {
		t.Errorf("Status = %v, want context.Canceled naming the socket", err)
	}
}

// TestClient_LiveStatus: LiveStatus tells the handler it may leave the
// queue's counts out; Status does not.
func TestClient_LiveStatus(t *testing.T) {
	h := &fakeHandler{status: &Status{State: "running", WorkersTotal: 3}}
	_, path := mustListen(t, h)
	c := Dial(path)
	st, err := c.LiveStatus(testContext(t))
	if err != nil || st.State != "running" || st.WorkersTotal != 3 || !st.Running {
		t.Fatalf("LiveStatus: %+v, %v", st, err)
	}
	if _, err := c.Status(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if got, want := h.Calls(), []string{"status without queue", "status"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("handler got %q, want %q", got, want)
	}
}

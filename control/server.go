package control

import (
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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// socketMode is the control socket file's mode: only the daemon's user
	// (and root) may connect.
	socketMode = 0o600

	// handlerTimeout bounds each Handler call through its context.
	handlerTimeout = 10 * time.Second
	// A client gets readHeaderTimeout to send its request line and headers,
	// readTimeout for the whole request, and then its answer must be
	// written within writeTimeout of the request's start; an idle kept-alive
	// connection is closed after idleTimeout. No client can pin a
	// connection's goroutine for longer.
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = handlerTimeout + 5*time.Second
	idleTimeout       = 30 * time.Second
	maxHeaderBytes    = 16 << 10
	// maxBody bounds a request's body; every valid one is a few bytes.
	maxBody = 64 << 10

	// shutdownWait is how long Run, when its context is cancelled, lets
	// requests in flight finish before it cuts them.
	shutdownWait = handlerTimeout
)

// Server answers the control endpoints on a unix socket. Create it with
// Listen, or ListenFile after an exec; serve with Run.
type Server struct {
	h    Handler
	log  *slog.Logger
	path string
	ln   *net.UnixListener
	srv  *http.Server
	uid  int // the daemon's effective uid, which peers must share unless root

	routes map[string]route

	file fs.FileInfo // the socket file as created or adopted; nil if it could not be read

	started    atomic.Bool
	keepFile   atomic.Bool // set by ShutdownForExec: the next program serves the socket file
	removeOnce sync.Once
	removeErr  error
}

// Listen creates the control socket at path (normally
// filepath.Join(dataDir, SocketFile)) and returns a Server ready to Run.
// A nil logger means slog.Default().
//
// The caller must hold the daemon's single-instance lock: Listen removes a
// socket file left at path by a daemon that crashed, and only the lock
// guarantees that no live daemon still serves it. Anything at path other
// than a socket is left alone and is an error. A path longer than a unix
// socket path may be (107 bytes on Linux) is an error that names it.
//
// The socket file has mode 0600. On Linux it is created so, whatever the
// umask: the mode is set on the socket before bind creates the file, so
// there is no moment when it is wider. (Setting the umask around bind would
// race with every other goroutine creating files, as the umask belongs to
// the process; chmod after bind would leave a window.) Listen then chmods
// the file to exactly 0600, for a umask that took the owner's bits away.
// Elsewhere the umask alone sets the mode until that chmod, and the peer
// check refuses other users who connect in that moment.
func Listen(path string, h Handler, logger *slog.Logger) (*Server, error) {
	if h == nil {
		return nil, errors.New("listen on control socket: Handler is nil")
	}
	if err := checkPath(path); err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	lc := net.ListenConfig{Control: restrictBeforeBind}
	ln, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	ul := ln.(*net.UnixListener)
	// The Server decides when the file goes: not when a listener that
	// handed the socket over to an exec closes.
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(path, socketMode); err != nil {
		ul.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	return newServer(ul, path, h, logger), nil
}

// removeStale removes the socket file at path, if any.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket: move it away", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// ListenFile returns a Server on an inherited listening socket, typically
// the one a daemon passed to its own next program across exec (see
// File). It serves the path the socket is bound to, which Listen left in
// place. A nil logger means slog.Default().
//
// Like net.FileListener, ListenFile duplicates f's descriptor: close f
// once it returns.
func ListenFile(f *os.File, h Handler, logger *slog.Logger) (*Server, error) {
	if h == nil {
		return nil, errors.New("adopt control socket: Handler is nil")
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("adopt control socket %s: %w", f.Name(), err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("adopt control socket %s: a %s listener, not a unix one", f.Name(), ln.Addr().Network())
	}
	ul.SetUnlinkOnClose(false)
	path := ul.Addr().String()
	if path == "" {
		ul.Close()
		return nil, fmt.Errorf("adopt control socket %s: not bound to a path", f.Name())
	}
	return newServer(ul, path, h, logger), nil
}

func newServer(ln *net.UnixListener, path string, h Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{h: h, log: logger, path: path, ln: ln, uid: os.Geteuid()}
	s.file, _ = os.Lstat(path)
	s.routes = map[string]route{
		"/status":  {http.MethodGet, s.status},
		"/health":  {http.MethodGet, s.health},
		"/pause":   {http.MethodPost, s.pause},
		"/resume":  {http.MethodPost, s.resume},
		"/reload":  {http.MethodPost, s.reload},
		"/stop":    {http.MethodPost, s.stop},
		"/workers": {http.MethodPost, s.setWorkers},
		"/procs":   {http.MethodPost, s.setProcs},
		"/cancel":  {http.MethodPost, s.cancel},
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*peerConn); ok {
				return context.WithValue(ctx, peerKey{}, pc.peer)
			}
			return ctx
		},
	}
	return s
}

// Path returns the socket file's path.
func (s *Server) Path() string { return s.path }

// Run serves until ctx is cancelled or Shutdown, ShutdownForExec or Close
// is called, and returns nil then. After a cancelled ctx, it shuts down as
// Shutdown does, letting requests in flight finish for up to 10 seconds,
// and returns when that is done; after a call to Shutdown, it returns at
// once and Shutdown is the call that waits.
func (s *Server) Run(ctx context.Context) error {
	if s.started.Swap(true) {
		return errors.New("control server: Run called twice")
	}
	shutdownDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdownDone)
		sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		if err := s.Shutdown(sctx); err != nil {
			s.log.Warn("control server stopped uncleanly", "socket", s.path, "err", err)
		}
	})
	s.log.Info("control server listening", "socket", s.path)
	err := s.srv.Serve(&peerListener{UnixListener: s.ln, uid: s.uid, log: s.log})
	if !stop() {
		<-shutdownDone
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve control socket %s: %w", s.path, err)
}

// Shutdown stops intake at once: it removes the socket file, so that
// clients see no daemon, and closes the listener. Then it waits for
// requests in flight to be answered. If ctx ends first, it closes their
// connections and returns ctx's error. Calling it again is harmless.
func (s *Server) Shutdown(ctx context.Context) error {
	rerr := s.removeFile()
	if err := s.shutdown(ctx); err != nil {
		return err
	}
	return rerr
}

// ShutdownForExec is Shutdown for a daemon about to hand the socket over
// (see File): it leaves the socket file in place, now and in any later
// Shutdown or Close, so that the next program serves it. Connections that
// arrive meanwhile wait in the socket's backlog.
//
// A daemon's reload calls File, then ShutdownForExec, which waits among
// others for the answer to the request that asked for the reload, then
// execs. If the exec fails, the daemon serves on with ListenFile on the
// file it got from File.
func (s *Server) ShutdownForExec(ctx context.Context) error {
	s.keepFile.Store(true)
	return s.shutdown(ctx)
}

func (s *Server) shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.closeListener() // in case Run never started: s.srv does not know it
	if err != nil {
		s.srv.Close()
		return fmt.Errorf("shut down control socket %s: %w", s.path, err)
	}
	return nil
}

// Close stops at once: it removes the socket file (unless ShutdownForExec
// was called) and closes the listener and every connection.
func (s *Server) Close() error {
	rerr := s.removeFile()
	err := s.srv.Close()
	s.closeListener()
	return errors.Join(err, rerr)
}

// File returns a duplicate of the listening socket, which a daemon that
// re-executes itself passes on; the new program adopts it with ListenFile,
// and the socket never stops accepting connections. The duplicate stays
// open, and the socket with it, after the Server closes; close it once
// handed over.
//
// The file is close-on-exec, as Go opens every file. Passing it in
// os/exec's Cmd.ExtraFiles clears that in the child; with syscall.Exec,
// clear it first (fcntl F_SETFD 0). Its Fd method leaves the socket
// non-blocking, so the Server serves on meanwhile. Before the exec, call
// ShutdownForExec, not Shutdown or Close, which would remove the socket
// file.
func (s *Server) File() (*os.File, error) {
	// Not s.ln.File(): the Fd method of the file it returns puts the
	// socket in blocking mode, for the Server too, as both descriptors
	// share it, and a Server blocked in accept cannot shut down. A file
	// from os.NewFile keeps the socket non-blocking.
	rc, err := s.ln.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("duplicate control socket %s: %w", s.path, err)
	}
	var (
		nfd  int
		derr error
	)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("duplicate control socket %s: %w", s.path, err)
	}
	if derr != nil {
		return nil, fmt.Errorf("duplicate control socket %s: %w", s.path, derr)
	}
	return os.NewFile(uintptr(nfd), s.path), nil
}

func (s *Server) closeListener() {
	s.ln.Close() // net.ErrClosed when Serve closed it already
}

// removeFile removes the socket file once, unless it is being handed over.
func (s *Server) removeFile() error {
	if s.keepFile.Load() {
		return nil
	}
	s.removeOnce.Do(func() {
		// Only this server's own socket: after the data directory was
		// deleted and made again, the file at the path is another
		// daemon's.
		if s.StillAtPath() != nil {
			return
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.removeErr = fmt.Errorf("remove control socket: %w", err)
		}
	})
	return s.removeErr
}

// StillAtPath returns nil while the file at Path is the socket this server
// listens on, and an error once it was removed or replaced (its data
// directory deleted, say): clients can no longer reach this server.
func (s *Server) StillAtPath() error {
	fi, err := os.Lstat(s.path)
	switch {
	case err != nil:
		return fmt.Errorf("control socket %s: %w", s.path, err)
	case s.file == nil:
		return nil // unknown at start: nothing to compare with
	case !os.SameFile(fi, s.file):
		return fmt.Errorf("control socket %s was replaced by another file", s.path)
	}
	return nil
}

// peer is who is on the other end of a connection.
type peer struct {
	uid int // effective uid when it connected
	pid int // 0 when unknown
}

type peerKey struct{}

// allowedPeer reports whether a peer running as peerUID may use the daemon
// running as ownUID: only the same user, and root.
func allowedPeer(peerUID, ownUID int) bool {
	return peerUID == ownUID || peerUID == 0
}

// peerListener checks who connected on every accepted connection and
// closes those of other users without a word. The socket file's mode
// already keeps them out; this holds even if the mode is loosened or the
// socket leaks to another user's process.
type peerListener struct {
	*net.UnixListener
	uid int
	log *slog.Logger
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		p, err := peerOf(c)
		if err != nil {
			l.log.Warn("refused a control connection: cannot tell who connected", "err", err)
			c.Close()
			continue
		}
		if !allowedPeer(p.uid, l.uid) {
			l.log.Warn("refused a control connection from another user", "peer_uid", p.uid, "peer_pid", p.pid)
			c.Close()
			continue
		}
		return &peerConn{UnixConn: c, peer: p}, nil
	}
}

type peerConn struct {
	*net.UnixConn
	peer peer
}

// route is an endpoint: its method, and the function that returns the HTTP
// status and the value to encode as the JSON answer.
type route struct {
	method string
	serve  func(ctx context.Context, r *http.Request) (int, any)
}

type errorBody struct {
	Error string `json:"error"`
}

type okBody struct {
	OK bool `json:"ok"`
}

type healthBody struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

type stopBody struct {
	Now bool `json:"now"`
}

type workersBody struct {
	Workers *int `json:"workers"`
}

type cancelBody struct {
	ID *int64 `json:"id"`
}

type cancelledBody struct {
	Cancelled bool `json:"cancelled"`
}

const endpoints = "GET /status or /health, or POST /pause, /resume, /reload, /stop, /workers, /procs or /cancel"

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, ok := s.routes[r.URL.Path]
	var (
		code int
		v    any
	)
	switch {
	case !ok:
		code, v = http.StatusNotFound, errorBody{fmt.Sprintf("no endpoint %s: use %s", r.URL.Path, endpoints)}
	case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
		allow := rt.method
		if allow == http.MethodGet {
			allow += ", " + http.MethodHead
		}
		w.Header().Set("Allow", allow)
		code, v = http.StatusMethodNotAllowed, errorBody{fmt.Sprintf("%s takes %s, not %s", r.URL.Path, rt.method, r.Method)}
	case expired(r, start):
		code, v = http.StatusRequestTimeout, errorBody{fmt.Sprintf("%s %s arrived after its sender's deadline (%s header): not done", r.Method, r.URL.Path, DeadlineHeader)}
	default:
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		ctx, cancel := context.WithTimeout(r.Context(), handlerTimeout)
		code, v = rt.serve(ctx, r)
		cancel()
	}
	writeJSON(w, code, v)

	// Requests that change the daemon are logged at info with who sent
	// them; questions at debug.
	level := slog.LevelDebug
	if ok && rt.method == http.MethodPost {
		level = slog.LevelInfo
	}
	p, _ := r.Context().Value(peerKey{}).(peer)
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", code,
		"duration", time.Since(start), "peer_uid", p.uid, "peer_pid", p.pid}
	if e, isErr := v.(errorBody); isErr {
		attrs = append(attrs, "err", e.Error)
	}
	s.log.Log(r.Context(), level, "control request", attrs...)
}

// expired reports whether r carries a DeadlineHeader that has passed: its
// sender gave up on it, for example while this daemon was stopped
// (SIGSTOP), and it must not take effect when the daemon runs again.
func expired(r *http.Request, now time.Time) bool {
	v := r.Header.Get(DeadlineHeader)
	if v == "" {
		return false
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	return err == nil && now.UnixNano() > ns
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{"encode the answer: " + err.Error()})
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

// errorReply answers a Handler's error.
func errorReply(err error) (int, any) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	}
	return code, errorBody{err.Error()}
}

func badRequest(format string, args ...any) (int, any) {
	return http.StatusBadRequest, errorBody{fmt.Sprintf(format, args...)}
}

// okReply answers a Handler's result for an endpoint with nothing to report.
func okReply(err error) (int, any) {
	if err != nil {
		return errorReply(err)
	}
	return http.StatusOK, okBody{true}
}

// decodeBody decodes r's JSON body into v. An empty body is an error
// unless optional. want shows a valid body, for the error message.
func decodeBody(r *http.Request, v any, want string, optional bool) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == io.EOF {
		if optional {
			return nil
		}
		return fmt.Errorf("empty request body: send %s", want)
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return fmt.Errorf("request body over %d bytes: send %s", mbe.Limit, want)
		}
		return fmt.Errorf("bad request body: %v: send %s", err, want)
	}
	return nil
}

func (s *Server) status(ctx context.Context, r *http.Request) (int, any) {
	if r.URL.Query().Get("queue") == "0" {
		ctx = context.WithValue(ctx, noQueueKey{}, true)
	}
	st, err := s.h.Status(ctx)
	if err != nil {
		return errorReply(err)
	}
	if st == nil {
		return http.StatusInternalServerError, errorBody{"the daemon returned no status"}
	}
	out := *st
	out.Running = true
	if out.PID == 0 {
		out.PID = os.Getpid()
	}
	out.DaemonPID = out.PID
	return http.StatusOK, out
}

func (s *Server) health(ctx context.Context, r *http.Request) (int, any) {
	if err := s.h.Health(ctx); err != nil {
		return http.StatusServiceUnavailable, healthBody{OK: false, Reason: err.Error()}
	}
	return http.StatusOK, healthBody{OK: true}
}

func (s *Server) pause(ctx context.Context, r *http.Request) (int, any) {
	return okReply(s.h.Pause(ctx))
}

func (s *Server) resume(ctx context.Context, r *http.Request) (int, any) {
	return okReply(s.h.Resume(ctx))
}

func (s *Server) reload(ctx context.Context, r *http.Request) (int, any) {
	return okReply(s.h.Reload(ctx))
}

func (s *Server) stop(ctx context.Context, r *http.Request) (int, any) {
	const want = `{"now": true}, {"now": false} or no body`
	var body stopBody
	if err := decodeBody(r, &body, want, true); err != nil {
		return badRequest("%v", err)
	}
	now := body.Now
	if q := r.URL.Query(); q.Has("now") {
		v, err := strconv.ParseBool(q.Get("now"))
		if err != nil {
			return badRequest("bad query now=%q: use now=true or now=false", q.Get("now"))
		}
		now = now || v
	}
	return okReply(s.h.Stop(ctx, now))
}

func (s *Server) setWorkers(ctx context.Context, r *http.Request) (int, any) {
	const want = `{"workers": N} with N at least 1`
	var body workersBody
	if err := decodeBody(r, &body, want, false); err != nil {
		return badRequest("%v", err)
	}
	if body.Workers == nil {
		return badRequest(`no "workers" in the request body: send %s`, want)
	}
	if n := *body.Workers; n < 1 {
		return badRequest("workers must be at least 1, not %d", n)
	}
	return okReply(s.h.SetWorkers(ctx, *body.Workers))
}

func (s *Server) setProcs(ctx context.Context, r *http.Request) (int, any) {
	const want = `{"min": N, "max": N} (either may be left out)`
	var body ProcLimits
	if err := decodeBody(r, &body, want, false); err != nil {
		return badRequest("%v", err)
	}
	switch {
	case body.Min == nil && body.Max == nil:
		return badRequest(`no "min" or "max" in the request body: send %s`, want)
	case body.Min != nil && *body.Min < 0:
		return badRequest("min must be zero or more, not %d", *body.Min)
	case body.Max != nil && *body.Max < 1:
		return badRequest("max must be at least 1, not %d", *body.Max)
	}
	return okReply(s.h.SetProcs(ctx, body))
}

func (s *Server) cancel(ctx context.Context, r *http.Request) (int, any) {
	const want = `{"id": N} with N a running task's id`
	var body cancelBody
	if err := decodeBody(r, &body, want, false); err != nil {
		return badRequest("%v", err)
	}
	if body.ID == nil {
		return badRequest(`no "id" in the request body: send %s`, want)
	}
	if id := *body.ID; id < 1 {
		return badRequest("id must be a task id, at least 1, not %d", id)
	}
	cancelled, err := s.h.Cancel(ctx, *body.ID)
	if err != nil {
		return errorReply(err)
	}
	return http.StatusOK, cancelledBody{cancelled}
}

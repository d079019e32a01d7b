package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/dashboard"
)

// dashboardFlags are 'snappea run's flags of the web dashboard.
type dashboardFlags struct {
	addr     string
	authFile string
	token    string
	showArgs bool
	readOnly bool
}

// Timeouts of the dashboard's server: no client holds a connection longer.
const (
	dashReadHeaderTimeout = 5 * time.Second
	dashReadTimeout       = 10 * time.Second
	dashWriteTimeout      = 30 * time.Second
	dashIdleTimeout       = 60 * time.Second
	dashShutdownWait      = time.Second
)

// listenAddr resolves --dashboard-addr: a bare port (":8080" or "8080")
// is on 127.0.0.1, never on every interface. It reports whether the host
// is a loopback one (127.0.0.0/8, ::1, localhost), where no
// authentication is required.
func (f *dashboardFlags) listenAddr() (addr string, loopback bool, err error) {
	a := strings.TrimSpace(f.addr)
	if !strings.Contains(a, ":") {
		a = ":" + a
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || port == "" {
		return "", false, fmt.Errorf("--dashboard-addr %q: want HOST:PORT or a port, such as 127.0.0.1:8080 or :8080", f.addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	loopback = host == "localhost" || (ip != nil && ip.IsLoopback())
	return net.JoinHostPort(host, port), loopback, nil
}

// authorize is the dashboard's authentication from --dashboard-auth-file
// or --dashboard-token; nil when neither is given. The file's first line
// is USER:PASSWORD (basic authentication) or else a token (a bearer
// token, also accepted as the password of basic authentication).
func (f *dashboardFlags) authorize() (func(*http.Request) error, error) {
	switch {
	case f.authFile != "" && f.token != "":
		return nil, errors.New("--dashboard-auth-file and --dashboard-token are both set: give one")
	case f.token != "":
		return dashboard.BearerToken(strings.TrimSpace(f.token)), nil
	case f.authFile == "":
		return nil, nil
	}
	b, err := os.ReadFile(f.authFile)
	if err != nil {
		return nil, fmt.Errorf("--dashboard-auth-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, fmt.Errorf("--dashboard-auth-file %s: the first line is empty; want USER:PASSWORD or a token", f.authFile)
	}
	if user, pass, ok := strings.Cut(line, ":"); ok {
		if user == "" || pass == "" {
			return nil, fmt.Errorf("--dashboard-auth-file %s: want USER:PASSWORD with both set, or a token", f.authFile)
		}
		return dashboard.BasicAuth(user, pass), nil
	}
	return dashboard.BearerToken(line), nil
}

// check validates the flags as a start would, without listening.
func (f *dashboardFlags) check() (addr string, auth func(*http.Request) error, err error) {
	if f.addr == "" {
		if f.authFile != "" || f.token != "" || f.showArgs || f.readOnly {
			return "", nil, errors.New("the --dashboard-* flags need --dashboard-addr")
		}
		return "", nil, nil
	}
	addr, loopback, err := f.listenAddr()
	if err != nil {
		return "", nil, err
	}
	if auth, err = f.authorize(); err != nil {
		return "", nil, err
	}
	if auth == nil && !loopback {
		return "", nil, fmt.Errorf("--dashboard-addr %s is not a loopback address: the dashboard then requires "+
			"authentication; give --dashboard-auth-file (USER:PASSWORD or a token) or SNAPPEA_DASHBOARD_TOKEN", addr)
	}
	return addr, auth, nil
}

// dashDaemon is the daemon as its own dashboard asks it: its status
// without the queue's counts, which the dashboard makes itself, bounded.
type dashDaemon struct{ *daemon }

func (d dashDaemon) Status(ctx context.Context) (*control.Status, error) { return d.status(ctx, false) }

// startDashboard listens on --dashboard-addr and serves the dashboard
// until the returned stop is called; nothing without the flag.
func (d *daemon) startDashboard() (stop func(), err error) {
	addr, auth, err := d.f.dashboard.check()
	if err != nil || addr == "" {
		return func() {}, err
	}
	h, err := dashboard.New(dashboard.Config{Queue: d.q, Daemon: dashDaemon{d}, ShowArgs: d.f.dashboard.showArgs,
		ReadOnly: d.f.dashboard.readOnly, Authorize: auth, Logger: d.log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--dashboard-addr: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: dashReadHeaderTimeout, ReadTimeout: dashReadTimeout,
		WriteTimeout: dashWriteTimeout, IdleTimeout: dashIdleTimeout, MaxHeaderBytes: 64 << 10,
		ErrorLog: nil}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("the dashboard stopped serving", "err", err)
		}
	}()
	d.log.Info("serving the dashboard", "addr", "http://"+ln.Addr().String()+"/", "auth", auth != nil)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), dashShutdownWait)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}, nil
}

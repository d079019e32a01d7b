package control

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxAnswer bounds what the client reads of an answer.
const maxAnswer = 4 << 20

// Client asks a daemon through its control socket. Every method takes a
// context, which bounds the call: a daemon that accepted the connection
// but hangs is only given up on when ctx ends, so give it a deadline.
// A Client is safe for concurrent use.
//
// Errors match ErrNoDaemon when no daemon listens on the socket and
// ErrPermission when the daemon runs as another user; an error the daemon
// answered with is a *ServerError carrying its text.
type Client struct {
	path string
}

// Dial returns a Client for the control socket at path, normally
// filepath.Join(dataDir, SocketFile). It does no I/O: each call connects
// afresh and sends one request, so a Client survives the daemon's reloads
// and restarts.
func Dial(path string) *Client {
	return &Client{path: path}
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// LiveStatus is Status without what the daemon reads from the database:
// the queue's counts (Pending, Ready, Delayed, OldestAgeSeconds are 0,
// counted over every pending row), Schedules, Lost and Daemons. It is for
// a caller that reads those itself, bounded, such as the dashboard. A daemon from before LiveStatus answers with the
// counts.
func (c *Client) LiveStatus(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/status?queue=0", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Health returns nil when the daemon is healthy. When it is not, the error
// is a *ServerError whose text is the daemon's reason, and it matches
// ErrUnhealthy.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/health", nil, nil)
}

// Pause asks the daemon to stop claiming tasks; running tasks go on.
func (c *Client) Pause(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/pause", nil, nil)
}

// Resume asks a paused daemon to claim tasks again.
func (c *Client) Resume(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/resume", nil, nil)
}

// Reload asks the daemon to reload; it returns once the daemon has
// accepted, not when the reload is done.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/reload", nil, nil)
}

// Stop asks the daemon to stop; it returns once the daemon has accepted.
// now cancels the running tasks at once instead of letting them finish.
func (c *Client) Stop(ctx context.Context, now bool) error {
	return c.do(ctx, http.MethodPost, "/stop", stopBody{Now: now}, nil)
}

// SetWorkers asks the daemon to run up to n tasks at once.
func (c *Client) SetWorkers(ctx context.Context, n int) error {
	return c.do(ctx, http.MethodPost, "/workers", workersBody{Workers: &n}, nil)
}

// SetProcs asks the daemon to change its process pool's limits.
func (c *Client) SetProcs(ctx context.Context, l ProcLimits) error {
	return c.do(ctx, http.MethodPost, "/procs", l, nil)
}

// Cancel asks the daemon to cancel the context of the running task id. It
// reports false when no task with that id was running.
func (c *Client) Cancel(ctx context.Context, id int64) (bool, error) {
	var out cancelledBody
	if err := c.do(ctx, http.MethodPost, "/cancel", cancelBody{ID: &id}, &out); err != nil {
		return false, err
	}
	return out.Cancelled, nil
}

// do sends one request with in, if not nil, as its JSON body and decodes a
// successful answer into out, if not nil.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if err := checkPath(c.path); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	// The host is a placeholder: the request goes to the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://snappea"+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Close = true
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(DeadlineHeader, strconv.FormatInt(dl.UnixNano(), 10))
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, b, err := c.roundTrip(ctx, req)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return answerError(resp, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("control socket %s: decode the answer to %s %s: %w", c.path, method, path, err)
		}
	}
	return nil
}

// roundTrip sends req on a connection of its own and reads the answer.
// It does without http.Transport, so that it knows whether the daemon
// closed the connection without a word, and never sends a request twice.
func (c *Client) roundTrip(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, nil, c.dialError(err)
	}
	defer conn.Close()
	// Cut the I/O short when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	fail := func(what string, err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return c.exchangeError(what, req, err)
	}
	if err := req.Write(conn); err != nil {
		return nil, nil, fail("send", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return nil, nil, fail("read the answer to", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, nil, fail("read the answer to", err)
	}
	return resp, b, nil
}

// answerError returns the *ServerError for an unsuccessful answer.
func answerError(resp *http.Response, b []byte) error {
	var body struct {
		Error  string `json:"error"`
		Reason string `json:"reason"` // GET /health
	}
	msg := resp.Status
	if json.Unmarshal(b, &body) == nil && cmp.Or(body.Error, body.Reason) != "" {
		msg = cmp.Or(body.Error, body.Reason)
	} else if s := strings.TrimSpace(string(b)); s != "" {
		msg += ": " + s
	}
	return &ServerError{StatusCode: resp.StatusCode, Message: msg}
}

// dialError explains a failed connect.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%w on %s (no socket file)", ErrNoDaemon, c.path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w on %s (a socket file nobody accepts connections on: left by a daemon that crashed?)", ErrNoDaemon, c.path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w: %s is not accessible (%v): run this as the daemon's user or as root", ErrPermission, c.path, err)
	}
	return fmt.Errorf("control socket %s: %w", c.path, err)
}

// exchangeError explains a request that got no answer on an open
// connection.
func (c *Client) exchangeError(what string, req *http.Request, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		// Closed before a byte of answer: the peer check refused us, or
		// the daemon died.
		if c.ownedByOther() {
			return fmt.Errorf("%w: it closed the connection on %s: run this as the daemon's user or as root", ErrPermission, c.path)
		}
		return fmt.Errorf("control socket %s: the daemon closed the connection without answering %s %s (%v)", c.path, req.Method, req.URL.Path, err)
	}
	return fmt.Errorf("control socket %s: %s %s %s: %w", c.path, what, req.Method, req.URL.Path, err)
}

// ownedByOther reports whether the socket file belongs to another user than
// this process's, which the daemon refuses unless it is root.
func (c *Client) ownedByOther() bool {
	fi, err := os.Stat(c.path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	me := os.Geteuid()
	return me != 0 && int(st.Uid) != me
}

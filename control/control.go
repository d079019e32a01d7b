package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/sys/unix"
)

// SocketFile is the name of the control socket in the daemon's data
// directory.
const SocketFile = "snappea.sock"

// DeadlineHeader carries the time, in Unix nanoseconds, after which the
// sender no longer waits for the answer; the Client sets it from its
// context's deadline. A request the server reads after that time is
// answered 408 and not carried out, so that a daemon stopped (SIGSTOP)
// while commands queued up on its socket does not, once continued, pause,
// reload or stop for senders that have long given up.
const DeadlineHeader = "Snappea-Deadline"

// Handler is what the server asks; the daemon implements it. The server
// calls it from many goroutines at once, each call with a context that ends
// when the client goes away or after a few seconds (see the package
// documentation).
//
// An error is sent to the client as {"error": err.Error()} with status 500,
// or 409 if it wraps [ErrConflict], or 400 if it wraps [ErrInvalid].
type Handler interface {
	// Status reports the daemon's state. The server sets Running, and PID
	// when left 0, and DaemonPID.
	Status(ctx context.Context) (*Status, error)
	// Health returns nil when the daemon is healthy; otherwise its error
	// text is the one-line reason the client gets.
	Health(ctx context.Context) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Reload starts a reload and returns once it has been accepted. It must
	// not wait for the reload itself: the reload waits, in
	// Server.ShutdownForExec, for the request that called Reload.
	Reload(ctx context.Context) error
	// Stop starts a stop and returns once it has been accepted; now cancels
	// the running tasks' contexts at once instead of letting them finish.
	Stop(ctx context.Context, now bool) error
	SetWorkers(ctx context.Context, n int) error
	// SetProcs changes the process pool's limits; a nil field is left as
	// it is.
	SetProcs(ctx context.Context, l ProcLimits) error
	// Cancel cancels a running task's context. It reports false when no
	// task with that id is running.
	Cancel(ctx context.Context, id int64) (bool, error)
}

type noQueueKey struct{}

// WithoutQueue reports whether the Status call with ctx was asked for by
// Client.LiveStatus: the Handler may then leave out what it reads from
// the database (see LiveStatus).
func WithoutQueue(ctx context.Context) bool {
	v, _ := ctx.Value(noQueueKey{}).(bool)
	return v
}

// ProcLimits are the process pool's minimum and maximum of children, as
// POST /procs takes them; nil: unchanged.
type ProcLimits struct {
	Min *int `json:"min"`
	Max *int `json:"max"`
}

var (
	// ErrConflict is wrapped by a Handler's error when the request
	// contradicts the daemon's state, for example a stop while stopping.
	// The server answers 409; the client's error matches it again.
	ErrConflict = errors.New("conflict with the daemon's state")

	// ErrInvalid is wrapped by a Handler's error when the request's values
	// are out of range, for example more workers than allowed. The server
	// answers 400; the client's error matches it again.
	ErrInvalid = errors.New("invalid request")

	// ErrUnhealthy is matched by the error Client.Health returns when the
	// daemon answered that it is unhealthy.
	ErrUnhealthy = errors.New("the snappea daemon is unhealthy")

	// ErrNoDaemon is matched by a Client's error when no daemon listens on
	// the socket: the file is missing or nobody accepts connections on it.
	ErrNoDaemon = errors.New("no snappea daemon is listening")

	// ErrPermission is matched by a Client's error when the socket is not
	// accessible or the daemon closed the connection on seeing who
	// connected: the daemon runs as another user.
	ErrPermission = errors.New("the snappea daemon runs as another user")
)

// ServerError is an error the daemon answered with. Its text is the
// daemon's: for GET /health, the reason the daemon is unhealthy.
type ServerError struct {
	StatusCode int    // the HTTP status, for example 409
	Message    string // the daemon's error text
}

// Error returns the daemon's text.
func (e *ServerError) Error() string { return e.Message }

// Is matches ErrConflict for a 409, ErrInvalid for a 400 and ErrUnhealthy
// for a 503.
func (e *ServerError) Is(target error) bool {
	switch target {
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrInvalid:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnhealthy:
		return e.StatusCode == http.StatusServiceUnavailable
	}
	return false
}

// maxPathLen is the longest socket path bind and connect take: sun_path
// (108 bytes on Linux, 104 on the BSDs) less its terminating NUL.
var maxPathLen = len(unix.RawSockaddrUnix{}.Path) - 1

// checkPath returns an error naming path if it is too long for a unix
// socket, which bind and connect would report only as "invalid argument".
func checkPath(path string) error {
	if path == "" {
		return errors.New("socket path is empty")
	}
	if len(path) > maxPathLen {
		return fmt.Errorf("path %s is %d bytes, over the unix socket limit of %d bytes (%d with the terminating NUL): use a shorter data directory",
			path, len(path), maxPathLen, maxPathLen+1)
	}
	return nil
}

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/snappea/snappea/control"
)

// defaultControlTimeout bounds how long a command waits for the daemon's
// answer on its control socket. The daemon answers from memory in
// microseconds; a daemon that takes seconds is stopped (SIGSTOP, a
// debugger), overloaded or wedged, and the operator should hear so rather
// than wait.
const defaultControlTimeout = 5 * time.Second

// controlFlags are the flags of a command that talks to the daemon.
type controlFlags struct {
	timeout time.Duration
}

func (f *controlFlags) register(fs *flag.FlagSet) {
	f.timeout = defaultControlTimeout
	fs.Var((*positiveDuration)(&f.timeout), "control-timeout", withEnv("control-timeout",
		"how long (a `duration`) to wait for the daemon's answer on its control socket before giving up"))
}

// daemonCall is one command's conversation with the running daemon: every
// request is bounded by the control timeout, and one that runs out of it
// says so in words an operator can act on.
type daemonCall struct {
	c       *cmdEnv
	name    string // the command, for messages
	cl      *control.Client
	pid     int
	sock    string
	timeout time.Duration
}

func (c *cmdEnv) daemonCall(name string, data *dataFlags, ctl *controlFlags, pid int) *daemonCall {
	return &daemonCall{c: c, name: name, cl: data.client(), pid: pid,
		sock: filepath.Join(data.dir, control.SocketFile), timeout: ctl.timeout}
}

// do runs one request under the control timeout and returns its error,
// explained if the daemon did not answer in time. req has the shape of a
// Client method expression, such as (*control.Client).Pause.
func (d *daemonCall) do(ctx context.Context, req func(cl *control.Client, ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	err := req(d.cl, cctx)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return d.notAnswering()
	}
	return err
}

// fail prints err as the command's error and returns ExitError.
func (d *daemonCall) fail(err error) int { return d.c.fail(d.name, err) }

// notAnswering is the error of a daemon that holds the lock but did not
// answer within the control timeout, with what to try.
func (d *daemonCall) notAnswering() error {
	return &notAnsweringError{pid: d.pid, sock: d.sock, timeout: d.timeout}
}

// errNotAnswering is matched by the error of a daemon that did not answer
// in time.
var errNotAnswering = errors.New("daemon not answering")

type notAnsweringError struct {
	pid     int
	sock    string
	timeout time.Duration
}

func (e *notAnsweringError) Is(target error) bool { return target == errNotAnswering }

func (e *notAnsweringError) Error() string {
	msg := fmt.Sprintf("daemon pid %d is not answering: stopped or overloaded (no answer on %s within %v)", e.pid, e.sock, e.timeout)
	if processStopped(e.pid) {
		return msg + fmt.Sprintf("; it is stopped (SIGSTOP or a debugger): 'kill -CONT %d' resumes it", e.pid)
	}
	return msg + fmt.Sprintf("; try again, give it longer with --control-timeout, or look at its log; if it stays wedged, 'kill -QUIT %d' ends it and prints its goroutines to its log", e.pid)
}

// processStopped reports whether the process is stopped by a signal or
// traced, from /proc (false where that cannot be read).
func processStopped(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	switch s[i+2] {
	case 'T', 't':
		return true
	}
	return false
}

// positiveDuration is a duration flag that refuses zero and less.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("parse error: want a duration such as 500ms or 5s")
	}
	if v <= 0 {
		return errors.New("must be more than zero")
	}
	*d = positiveDuration(v)
	return nil
}

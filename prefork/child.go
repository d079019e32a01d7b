package prefork

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/snappea/snappea/registry"
)

// EnvFD is the environment variable through which the pool tells a child
// which descriptor is its end of the socket (always 3: ExtraFiles[0]). Its
// presence also tells a program that it was started as a child.
const EnvFD = "SNAPPEA_PREFORK_FD"

// Runner runs a task by name with its JSON arguments, in the child;
// *registry.Registry is one.
type Runner interface {
	Run(ctx context.Context, name string, args []byte) error
}

// RunnerFunc adapts a function to a Runner.
type RunnerFunc func(ctx context.Context, name string, args []byte) error

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, name string, args []byte) error {
	return f(ctx, name, args)
}

// codes carry the sentinels a caller branches on across the process
// boundary, where error values cannot travel: the parent's error for a
// failed job wraps the sentinel named by the child.
var codes = []struct {
	code string
	err  error
}{
	{"unknown_task", registry.ErrUnknownTask},
	{"bad_args", registry.ErrBadArgs},
	{"deadline", context.DeadlineExceeded},
	{"canceled", context.Canceled},
}

// ServeChild is what a program's hidden child subcommand calls: it takes
// the socket the pool passed (see [EnvFD]) and serves jobs on it with r
// until the parent closes it (nil) or ctx ends. Cancel ctx on SIGTERM: the
// running job's context is cancelled, and the parent kills the child if
// it does not exit soon after.
func ServeChild(ctx context.Context, r Runner) error {
	s := os.Getenv(EnvFD)
	if s == "" {
		return fmt.Errorf("serve child: %s is not set: this command is started by the process pool, not by hand", EnvFD)
	}
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return fmt.Errorf("serve child: %s=%q is not a descriptor number of 3 or more", EnvFD, s)
	}
	// What the handler starts is not a child of the pool.
	os.Unsetenv(EnvFD)
	closeInherited(fd)
	// Nothing the handler starts may inherit the socket, and a
	// non-blocking descriptor lets Close interrupt a read.
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("serve child: descriptor %d: %w", fd, err)
	}
	f := os.NewFile(uintptr(fd), "prefork-socket")
	return Serve(ctx, r, f)
}

// Serve announces readiness on conn, then runs the jobs it reads there
// with r, one at a time, and writes each one's outcome back. A job's
// context is cancelled when the parent sends cancel, when its timeout
// passes, and when ctx ends. Serve returns nil when the parent closes
// conn, ctx.Err() when ctx ends, and closes conn in both cases; it waits
// for the running handler to return first (the parent's KILL bounds that
// wait for a handler that ignores its context).
func Serve(ctx context.Context, r Runner, conn io.ReadWriteCloser) error {
	defer conn.Close()
	var (
		wmu sync.Mutex
		w   = bufio.NewWriter(conn)
	)
	send := func(f *frame) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(w, f)
	}
	if err := send(&frame{Op: opReady, PID: os.Getpid()}); err != nil {
		return fmt.Errorf("serve: announce ready: %w", err)
	}

	var (
		mu       sync.Mutex
		curID    int64
		cancel   context.CancelFunc // of the running job; nil once it returned
		finished chan struct{}      // closed once the running job's result is sent
		stopping bool               // ctx ended: take no more jobs
		running  sync.WaitGroup
	)
	// When ctx ends (SIGTERM), cancel the running job, let it report its
	// outcome, then close conn: that ends the read below.
	unwatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		stopping = true
		if cancel != nil {
			cancel()
		}
		fin := finished
		mu.Unlock()
		if fin != nil {
			<-fin
		}
		conn.Close()
	})
	defer unwatch()

	br := bufio.NewReader(conn)
	for {
		f, err := readFrame(br)
		if err != nil {
			mu.Lock()
			if cancel != nil {
				cancel()
			}
			mu.Unlock()
			running.Wait()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("serve: %w", err)
		}
		switch f.Op {
		case opJob:
			if f.Job == nil {
				return errors.New("serve: job frame without a job")
			}
			mu.Lock()
			if stopping {
				mu.Unlock()
				continue // conn is about to close; the parent sees the job fail
			}
			if cancel != nil {
				mu.Unlock()
				return fmt.Errorf("serve: job %d sent while job %d runs: one job at a time", f.Job.ID, curID)
			}
			j := *f.Job
			jctx, jcancel := context.WithCancel(ctx)
			if j.Timeout > 0 {
				jctx, jcancel = context.WithTimeout(ctx, j.Timeout)
			}
			fin := make(chan struct{})
			curID, cancel, finished = j.ID, jcancel, fin
			mu.Unlock()
			running.Add(1)
			go func() {
				defer running.Done()
				res := runJob(jctx, r, &j)
				jcancel()
				// Idle again before the result leaves: the parent may
				// send the next job as soon as it reads it.
				mu.Lock()
				cancel = nil
				mu.Unlock()
				if err := send(&frame{Op: opResult, ID: j.ID, Result: res}); err != nil {
					conn.Close() // the parent is gone or broken: stop reading too
				}
				mu.Lock()
				if finished == fin {
					finished = nil
				}
				mu.Unlock()
				close(fin)
			}()
		case opCancel:
			mu.Lock()
			if cancel != nil && curID == f.ID {
				cancel()
			}
			mu.Unlock()
		default:
			return fmt.Errorf("serve: unknown frame %q", f.Op)
		}
	}
}

type jobKey struct{}

// JobFrom returns the job a handler runs in a child, with ctx as Serve
// gave it to the Runner: its id, name, attempt and timeout (Args and
// Started are left out).
func JobFrom(ctx context.Context) (Job, bool) {
	j, ok := ctx.Value(jobKey{}).(Job)
	return j, ok
}

// runJob runs one job and turns its outcome, panic included, into a result.
func runJob(ctx context.Context, r Runner, j *Job) (res *wireResult) {
	res = new(wireResult)
	defer func() {
		if v := recover(); v != nil {
			res.Panic = fmt.Sprint(v)
			res.Stack = string(debug.Stack())
		}
	}()
	info := *j
	info.Args, info.Started = nil, nil
	err := r.Run(context.WithValue(ctx, jobKey{}, info), j.Name, j.Args)
	if err != nil {
		res.Err = err.Error()
		for _, c := range codes {
			if errors.Is(err, c.err) {
				res.Code = c.code
				break
			}
		}
	}
	return res
}

// remoteError is a handler's error as the parent sees it: the child's
// text, matching the sentinel the child said it matched.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func decodeError(r *wireResult) error {
	e := &remoteError{msg: r.Err}
	for _, c := range codes {
		if c.code == r.Code {
			e.sentinel = c.err
		}
	}
	return e
}

// closeInherited closes the descriptors above 2 that this process
// inherited, keep excepted. The pool passes only 0-2 and the socket, and
// everything Go opens is close-on-exec, but the parent may itself have
// inherited descriptors without that flag from whatever started it (a
// shell, a supervisor), and exec passes those on. The runtime's own
// descriptors (epoll, cgroup files) are close-on-exec, so a descriptor
// without the flag was inherited.
func closeInherited(keep int) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return // not Linux, or no /proc: nothing to do safely
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || fd == keep {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // closed meanwhile (the directory's own), or the runtime's
		}
		unix.Close(fd)
	}
}

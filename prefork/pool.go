package prefork

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Sentinels. A job's error wraps ErrTimedOut, ErrIgnoredCancel or ErrStopped
// when the pool killed its child for that reason.
var (
	// ErrClosed is returned by Do once Shutdown has begun.
	ErrClosed = errors.New("process pool is shut down")
	// ErrTimedOut: the job ran past its timeout plus the grace period.
	ErrTimedOut = errors.New("task ran past its timeout")
	// ErrIgnoredCancel: the job went on for the grace period after its
	// context was cancelled.
	ErrIgnoredCancel = errors.New("task did not stop after it was cancelled")
	// ErrStopped: the pool's shutdown deadline passed with the job running.
	ErrStopped = errors.New("process pool stopped")
)

// Job is one task for a child to run.
type Job struct {
	ID          int64         `json:"id"`                     // the task id
	Name        string        `json:"name"`                   // the registered task name
	Attempt     int           `json:"attempt,omitempty"`      // 1 for the first run
	MaxAttempts int           `json:"max_attempts,omitempty"` // total attempts allowed
	Timeout     time.Duration `json:"timeout,omitempty"`      // the handler's deadline; 0: none
	Args        []byte        `json:"args,omitempty"`         // JSON, as the producer encoded it
	EnqueuedAt  time.Time     `json:"enqueued_at,omitzero"`   // when the producer enqueued it
	// Started, if set, is called in the parent with the pid of the child
	// that was given the job, before the job is sent: the foreman shows it
	// in status while the job runs. Not sent to the child.
	Started func(pid int) `json:"-"`
}

// Outcome is how a job ended.
type Outcome int

// Outcomes.
const (
	Done     Outcome = iota // the handler returned nil
	Failed                  // the handler returned an error
	Panicked                // the handler panicked; the child lives on
	TimedOut                // killed past its timeout plus the grace period
	Killed                  // killed after ignoring a cancel, or at the shutdown deadline
	Died                    // the child exited or was killed by someone else while running it
)

var outcomeNames = []string{"done", "failed", "panicked", "timed out", "killed", "died"}

func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// Result is a job's outcome.
type Result struct {
	Outcome  Outcome
	Err      error         // nil for Done; *PanicError for Panicked; *ExitError for TimedOut, Killed and Died
	PID      int           // the child that ran it
	Duration time.Duration // from sending the job to its outcome
}

// PanicError is the error of a job whose handler panicked (and recovered
// in the child, which goes on serving).
type PanicError struct {
	Value string // the panic value, printed
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string { return "panic: " + e.Value }

// ExitError is the error of a job whose child process ended while running
// it.
type ExitError struct {
	PID    int
	Cause  string // how it ended: "killed by SIGKILL", "exit status 3"
	Reason error  // why the pool killed it (ErrTimedOut, ErrIgnoredCancel, ErrStopped); nil: it died on its own
	Stderr []byte // the last bytes the child wrote to stderr
	Stack  []byte // the panic or crash report found in Stderr, if any
}

func (e *ExitError) Error() string {
	if e.Reason == nil {
		return "worker process died: " + e.Cause
	}
	return fmt.Sprintf("worker process killed (%v): %s", e.Reason, e.Cause)
}

// Unwrap returns Reason.
func (e *ExitError) Unwrap() error { return e.Reason }

// Config configures a Pool. The zero value of every field but Command
// means its default.
type Config struct {
	// Command returns a new, unstarted command that runs the child side
	// (ServeChild), normally this same binary with a hidden subcommand.
	// Required. Leave ExtraFiles empty: the pool adds the socket as
	// descriptor 3, sets EnvFD, Pdeathsig and WaitDelay, and keeps the
	// tail of stderr (passing it on to the command's Stderr, if set).
	// Stdin and Stdout are the command's own: nil is /dev/null; set
	// Stdout to os.Stdout to see what handlers print.
	Command func() *exec.Cmd
	// Min is how many children are kept started and ready. 0: 1;
	// negative: none (children start on demand).
	Min int
	// Max is the most children at once. 0: Min or GOMAXPROCS, whichever
	// is larger.
	Max int
	// Idle is how long a child above Min stays idle before it is retired,
	// counted from when it last became idle (a new child gets the full
	// Idle before it can be retired). 0: one minute; negative: never.
	Idle time.Duration
	// MaxTasksPerProc retires a child after that many jobs. 0: no limit.
	MaxTasksPerProc int
	// MaxRSS retires a child after a job when its resident set is larger,
	// in bytes, read from /proc. 0: no limit.
	MaxRSS int64
	// StartRate limits how many children per second start to meet demand
	// above Min. 0: 20. Starts up to Min are not limited (but replacements
	// of children that keep dying back off).
	StartRate float64
	// Grace is how long a job may go on after its timeout or its cancel
	// before its child is killed. 0: 5s.
	Grace time.Duration
	// KillWait is how long a child has to exit after SIGTERM before
	// SIGKILL, and after its socket is closed before it is killed. 0: 2s.
	KillWait time.Duration
	// StartTimeout is how long a started child has to announce that it is
	// ready before it is killed. 0: 30s.
	StartTimeout time.Duration
	// Logger receives lifecycle records (child deaths, kills, start
	// failures). nil: slog.Default().
	Logger *slog.Logger
}

// Restart backoff: after the second death in a row without a result in
// between, replacements wait backoffBase, doubling up to backoffMax.
const (
	backoffBase = 100 * time.Millisecond
	backoffMax  = 10 * time.Second
	stderrTail  = 32 << 10
)

func (c *Config) setDefaults() error {
	if c.Command == nil {
		return errors.New("prefork config: Command is required")
	}
	switch {
	case c.Min == 0:
		c.Min = 1
	case c.Min < 0:
		c.Min = 0
	}
	if c.Max == 0 {
		c.Max = max(c.Min, runtime.GOMAXPROCS(0))
	}
	if c.Max < 1 {
		return fmt.Errorf("prefork config: Max is %d; want 1 or more", c.Max)
	}
	if c.Max < c.Min {
		return fmt.Errorf("prefork config: Max (%d) is less than Min (%d)", c.Max, c.Min)
	}
	if c.Idle == 0 {
		c.Idle = time.Minute
	}
	if c.MaxTasksPerProc < 0 {
		return fmt.Errorf("prefork config: MaxTasksPerProc is %d; want 0 (no limit) or more", c.MaxTasksPerProc)
	}
	if c.MaxRSS < 0 {
		return fmt.Errorf("prefork config: MaxRSS is %d; want 0 (no limit) or more", c.MaxRSS)
	}
	if c.StartRate == 0 {
		c.StartRate = 20
	}
	if c.StartRate < 0 {
		return fmt.Errorf("prefork config: StartRate is %v; want more than 0", c.StartRate)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"Grace", &c.Grace, 5 * time.Second}, {"KillWait", &c.KillWait, 2 * time.Second}, {"StartTimeout", &c.StartTimeout, 30 * time.Second}} {
		if *d.v < 0 {
			return fmt.Errorf("prefork config: %s is %v; want 0 (default) or more", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// State is a child's state.
type State int

// States.
const (
	Starting State = iota // started, not yet ready
	Idle                  // ready for a job
	Busy                  // running a job
	Retiring              // exiting: recycled, idle too long, killed or shutting down
)

var stateNames = []string{"starting", "idle", "busy", "retiring"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText gives the state's name, for status JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// child is one child process. Fields below mu are guarded by Pool.mu.
type child struct {
	pid     int
	cmd     *exec.Cmd
	conn    net.Conn
	w       *bufio.Writer // only the goroutine running a job writes
	stderr  *ring
	results chan *wireResult // cap 1: the running job's result
	done    chan struct{}    // closed once the process is reaped
	started time.Time
	cause   string // how it ended; set before done is closed

	state      State
	job        *Job
	tasks      int64
	idleSince  time.Time
	gen        int   // the pool's generation when it started, see Recycle
	retired    bool  // the pool asked it to exit (closed its socket)
	sigkilled  bool  // the pool sent SIGKILL
	wasReady   bool  // it announced it was ready
	killReason error // the pool killed it, and why
}

// Pool is a pool of child processes that run jobs one at a time each.
// Create it with New, run it with Run, give it jobs with Do, stop it with
// Shutdown.
type Pool struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	children map[*child]struct{}
	idle     []*child        // ready children, the most recently used last
	waiters  []chan *child   // Do calls waiting for a child, oldest first
	changed  chan struct{}   // closed and replaced at every change
	closing  chan struct{}   // closed when Shutdown begins
	closed   bool            //
	running  bool            // Run was called
	monitors sync.WaitGroup  //
	starts   chan<- startReq // to the locked starter goroutine
	failures int             // deaths in a row without a result in between
	lastFail time.Time       //
	lastGrow time.Time       // the last start above Min
	owed     int             // replacements owed for children that died or were killed
	counts   Counters        //
	gen      int             // incremented by Recycle
}

// Counters count the pool's children since New.
type Counters struct {
	Starts   int64 `json:"starts"`   // children started
	Deaths   int64 `json:"deaths"`   // children that exited or were killed without the pool asking
	Kills    int64 `json:"kills"`    // children the pool killed (SIGTERM): hard timeouts, ignored cancels, shutdown
	SIGKILLs int64 `json:"sigkills"` // children sent SIGKILL: killed ones still there after KillWait, and ones that did not exit KillWait after their socket closed
	Restarts int64 `json:"restarts"` // starts that replaced a child that died or was killed
	Retired  int64 `json:"retired"`  // children asked to exit: idle, MaxTasksPerProc, MaxRSS, shutdown
	Drained  int64 `json:"drained"`  // jobs that finished after Shutdown began
}

// New validates cfg and returns a pool; call Run to start its children.
func New(cfg Config) (*Pool, error) {
	if err := supported(); err != nil {
		return nil, err
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Pool{
		cfg:      cfg,
		log:      cfg.Logger,
		children: make(map[*child]struct{}),
		changed:  make(chan struct{}),
		closing:  make(chan struct{}),
	}, nil
}

func (p *Pool) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// startReq asks the starter goroutine to start a command.
type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

// starter starts every child from one locked OS thread. Pdeathsig is
// delivered when the thread that started the child exits, not the
// process: a child started from a thread that Go later ends would be
// killed with it. This thread ends only when the goroutine returns, which
// Run lets it do once every child is reaped.
func starter(reqs <-chan startReq) {
	runtime.LockOSThread()
	for r := range reqs {
		r.done <- r.cmd.Start()
	}
}

// Run starts the minimum of children and keeps the pool: it replaces
// children that die (backing off when they keep dying), starts more while
// Do calls wait (up to Max, at most StartRate a second), and retires idle
// ones above Min. It returns nil once Shutdown has finished or, after ctx
// ends, once it has stopped every child as Shutdown does at its deadline.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("prefork: Run called twice")
	}
	p.running = true
	reqs := make(chan startReq)
	p.starts = reqs
	p.mu.Unlock()

	var sw sync.WaitGroup
	sw.Go(func() { starter(reqs) })
	defer func() {
		p.monitors.Wait()
		close(reqs)
		sw.Wait()
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ctxDone := ctx.Done()
	for {
		p.mu.Lock()
		if p.closed && len(p.children) == 0 {
			p.mu.Unlock()
			return nil
		}
		var d decision
		if !p.closed {
			now := time.Now()
			d = decide(&p.cfg, p.viewLocked(now))
			for range d.retire {
				c := p.idle[0] // the longest idle
				p.log.Debug("retiring idle child", "pid", c.pid, "idle", now.Sub(c.idleSince))
				p.retireLocked(c)
			}
		}
		ch := p.changed
		p.mu.Unlock()
		if d.start {
			p.spawn(reqs)
			continue
		}
		timer.Stop()
		var wake <-chan time.Time
		if !d.wake.IsZero() {
			timer.Reset(time.Until(d.wake))
			wake = timer.C
		}
		select {
		case <-ch:
		case <-wake:
		case <-ctxDone:
			ctxDone = nil
			stop, cancel := context.WithCancel(context.Background())
			cancel()
			p.Shutdown(stop)
		}
	}
}

func (p *Pool) viewLocked(now time.Time) view {
	v := view{now: now, waiters: len(p.waiters), failures: p.failures, lastFail: p.lastFail, lastGrow: p.lastGrow}
	for c := range p.children {
		if c.state == Retiring {
			continue
		}
		v.alive++
		if c.state == Starting {
			v.starting++
		}
	}
	// p.idle is in order of becoming idle, so the longest idle is first.
	for _, c := range p.idle {
		v.idleSince = append(v.idleSince, c.idleSince)
	}
	return v
}

// spawn starts one child and its monitor.
func (p *Pool) spawn(reqs chan<- startReq) {
	p.mu.Lock()
	grow := p.aliveLocked() >= p.cfg.Min
	p.mu.Unlock()
	c, err := p.start(reqs)
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if grow {
		p.lastGrow = now
	}
	if err != nil {
		p.failures++
		p.lastFail = now
		p.log.Error("cannot start worker process", "err", err, "failures", p.failures)
		p.notifyLocked()
		return
	}
	p.counts.Starts++
	if p.owed > 0 {
		p.owed--
		p.counts.Restarts++
	}
	p.children[c] = struct{}{}
	if p.closed {
		p.retireLocked(c)
	}
	p.notifyLocked()
	p.monitors.Go(func() { p.monitor(c) })
}

func (p *Pool) aliveLocked() int {
	n := 0
	for c := range p.children {
		if c.state != Retiring {
			n++
		}
	}
	return n
}

func (p *Pool) start(reqs chan<- startReq) (*child, error) {
	fds, err := socketpair()
	if err != nil {
		return nil, fmt.Errorf("start worker process: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "prefork-parent")
	theirs := os.NewFile(uintptr(fds[1]), "prefork-child")
	defer mine.Close()   // FileConn keeps a duplicate
	defer theirs.Close() // the child has its own copy once started

	// The generation before Command: a Recycle after this retires it.
	p.mu.Lock()
	gen := p.gen
	p.mu.Unlock()
	cmd := p.cfg.Command()
	if cmd == nil {
		return nil, errors.New("start worker process: Config.Command returned nil")
	}
	if len(cmd.ExtraFiles) > 0 {
		return nil, errors.New("start worker process: the command from Config.Command has ExtraFiles; leave them to the pool")
	}
	cmd.ExtraFiles = []*os.File{theirs}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, EnvFD+"=3")
	tail := newRing(stderrTail)
	if cmd.Stderr != nil {
		cmd.Stderr = teeWriter{tail, cmd.Stderr}
	} else {
		cmd.Stderr = tail
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	setPdeathsig(cmd.SysProcAttr)
	cmd.WaitDelay = p.cfg.KillWait

	conn, err := net.FileConn(mine)
	if err != nil {
		return nil, fmt.Errorf("start worker process: socket: %w", err)
	}
	r := startReq{cmd: cmd, done: make(chan error, 1)}
	reqs <- r
	if err := <-r.done; err != nil {
		conn.Close()
		return nil, fmt.Errorf("start worker process %s: %w", cmd.Path, err)
	}
	return &child{
		gen:     gen,
		pid:     cmd.Process.Pid,
		cmd:     cmd,
		conn:    conn,
		w:       bufio.NewWriter(conn),
		stderr:  tail,
		results: make(chan *wireResult, 1),
		done:    make(chan struct{}),
		started: time.Now(),
		state:   Starting,
	}, nil
}

// monitor reads a child's frames until its socket closes, then reaps it.
func (p *Pool) monitor(c *child) {
	startTimer := time.AfterFunc(p.cfg.StartTimeout, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if c.state == Starting {
			p.log.Error("worker process did not become ready; killing it", "pid", c.pid, "timeout", p.cfg.StartTimeout)
			p.killLocked(c, fmt.Errorf("not ready after %v", p.cfg.StartTimeout))
		}
	})
	br := bufio.NewReader(c.conn)
	var readErr error
	for {
		f, err := readFrame(br)
		if err != nil {
			readErr = err
			break
		}
		switch f.Op {
		case opReady:
			startTimer.Stop()
			p.ready(c)
		case opResult:
			if f.Result == nil {
				readErr = errors.New("result frame without a result")
			} else {
				select {
				case c.results <- f.Result:
				default:
					readErr = errors.New("result frame with no job running")
				}
			}
		default:
			readErr = fmt.Errorf("unknown frame %q", f.Op)
		}
		if readErr != nil {
			break
		}
	}
	startTimer.Stop()
	c.conn.Close()
	if readErr != nil && !errors.Is(readErr, io.EOF) && !errors.Is(readErr, net.ErrClosed) {
		p.log.Error("worker process protocol error; killing it", "pid", c.pid, "err", readErr)
		c.cmd.Process.Kill()
	}
	// A child whose socket is closed exits on its own; one that does not
	// is killed.
	kill := time.AfterFunc(p.cfg.KillWait, func() { p.sigkill(c) })
	err := c.cmd.Wait()
	kill.Stop()
	c.cause = exitCause(c.cmd.ProcessState, err)
	close(c.done)
	p.exited(c)
}

func exitCause(ps *os.ProcessState, err error) string {
	if ps == nil {
		return fmt.Sprintf("wait: %v", err)
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.String()
	}
	if ws.Signaled() {
		s := "killed by " + unix.SignalName(ws.Signal())
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

func (p *Pool) ready(c *child) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.state != Starting {
		return
	}
	c.wasReady = true
	if p.closed {
		p.retireLocked(c)
		return
	}
	p.handOrIdleLocked(c)
	p.notifyLocked()
}

func (p *Pool) exited(c *child) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.children, c)
	if i := slices.Index(p.idle, c); i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	switch {
	case c.killReason != nil:
		if !p.closed {
			p.owed++
		}
		if !c.wasReady {
			// It never became ready: back off as for a death.
			p.failures++
			p.lastFail = time.Now()
		}
	case !c.retired:
		p.counts.Deaths++
		p.failures++
		p.lastFail = time.Now()
		if !p.closed {
			p.owed++
		}
		attrs := []any{"pid", c.pid, "cause", c.cause, "state", c.state.String()}
		if c.job != nil {
			attrs = append(attrs, "task", c.job.Name, "task_id", c.job.ID)
		}
		p.log.Warn("worker process died", attrs...)
	}
	c.state = Retiring
	p.notifyLocked()
}

// handOrIdleLocked gives a ready child to the oldest waiting Do call, or
// makes it idle. It does not wake Run: these are the transitions of every
// job, and none needs Run at once (a child that goes idle cannot retire
// before Idle, and Run wakes Idle after it last saw one busy above Min).
func (p *Pool) handOrIdleLocked(c *child) {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		c.state = Busy
		w <- c // cap 1, and each waiter is handed one child
	} else {
		c.state = Idle
		c.idleSince = time.Now()
		p.idle = append(p.idle, c)
	}
}

// retireLocked asks a child to exit by closing its socket.
func (p *Pool) retireLocked(c *child) {
	if c.state == Retiring {
		return
	}
	if i := slices.Index(p.idle, c); i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	c.state = Retiring
	c.retired = true
	p.counts.Retired++
	c.conn.Close()
	p.notifyLocked()
}

// killLocked sends SIGTERM, then SIGKILL after KillWait if it still runs.
func (p *Pool) killLocked(c *child, reason error) {
	if c.killReason != nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	c.killReason = reason
	if i := slices.Index(p.idle, c); i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	c.state = Retiring
	p.counts.Kills++
	p.log.Info("killing worker process", "pid", c.pid, "reason", reason)
	c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.AfterFunc(p.cfg.KillWait, func() { p.sigkill(c) })
	go func() {
		// Stop the timer once the child is gone, so it does not outlive it.
		<-c.done
		t.Stop()
	}()
	p.notifyLocked()
}

// sigkill sends SIGKILL to a child that is still there, counting it once.
func (p *Pool) sigkill(c *child) {
	select {
	case <-c.done:
		return
	default:
	}
	p.mu.Lock()
	if !c.sigkilled {
		c.sigkilled = true
		p.counts.SIGKILLs++
	}
	p.mu.Unlock()
	c.cmd.Process.Kill()
}

// Do runs j on an idle child, waiting for one (and asking Run for more,
// up to Max) if none is idle. The error is ErrClosed after Shutdown began,
// or ctx's error if ctx ended before a child was free; everything that
// happened to the job itself is in the Result. Once the job runs, ending
// ctx cancels the job's context in the child; a job that goes on for
// Grace after that, or for Grace after its Timeout, has its child killed.
func (p *Pool) Do(ctx context.Context, j Job) (Result, error) {
	c, err := p.acquire(ctx)
	if err != nil {
		return Result{}, err
	}
	if j.Started != nil {
		j.Started(c.pid)
	}
	res, alive := p.run(ctx, c, &j)
	p.release(c, alive)
	return res, nil
}

func (p *Pool) acquire(ctx context.Context) (*child, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1] // the most recently used: the others may retire
		p.idle = p.idle[:n-1]
		c.state = Busy // no notify: Run need not know (see handOrIdleLocked)
		p.mu.Unlock()
		return c, nil
	}
	w := make(chan *child, 1)
	p.waiters = append(p.waiters, w)
	p.notifyLocked()
	p.mu.Unlock()

	var err error
	select {
	case c := <-w:
		return c, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-p.closing:
		err = ErrClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.notifyLocked()
		return nil, err
	}
	// A child was handed over meanwhile: pass it on.
	c := <-w
	if p.closed {
		p.retireLocked(c)
	} else {
		p.handOrIdleLocked(c)
	}
	return nil, err
}

// run sends the job and waits for its outcome; alive reports whether the
// child can take another job.
func (p *Pool) run(ctx context.Context, c *child, j *Job) (res Result, alive bool) {
	start := time.Now()
	res.PID = c.pid
	p.mu.Lock()
	c.job = j
	p.mu.Unlock()
	defer func() { res.Duration = time.Since(start) }()

	// A write fails only if the child is gone or going; its monitor sees
	// that and closes done.
	writeFrame(c.w, &frame{Op: opJob, Job: j})

	var hard *time.Timer
	var hardC <-chan time.Time
	var reason error
	if j.Timeout > 0 {
		hard = time.NewTimer(j.Timeout + p.cfg.Grace)
		hardC = hard.C
		reason = ErrTimedOut
		defer func() { hard.Stop() }()
	}
	ctxDone := ctx.Done()
	for {
		select {
		case r := <-c.results:
			return resultOf(r, res), true
		case <-c.done:
			select {
			case r := <-c.results:
				return resultOf(r, res), false
			default:
			}
			return p.exitResult(c, res), false
		case <-ctxDone:
			ctxDone = nil
			writeFrame(c.w, &frame{Op: opCancel, ID: j.ID})
			// Grace counts from the cancel, unless the job's own timeout
			// had passed already. A caller that puts the task's timeout
			// on ctx (as the foreman does) gets a timeout, not a cancel.
			if hard == nil || time.Until(start.Add(j.Timeout)) > 0 {
				if hard != nil {
					hard.Stop()
				}
				hard = time.NewTimer(p.cfg.Grace)
				hardC = hard.C
				reason = ErrIgnoredCancel
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					reason = ErrTimedOut
				}
			}
		case <-hardC:
			hardC = nil
			p.mu.Lock()
			p.killLocked(c, reason)
			p.mu.Unlock()
			// SIGKILL follows KillWait after SIGTERM; reaping is then
			// immediate unless the process is stuck in the kernel.
			wait := time.NewTimer(2*p.cfg.KillWait + time.Second)
			select {
			case <-c.done:
				wait.Stop()
				return p.exitResult(c, res), false
			case <-wait.C:
				res.Outcome = Killed
				res.Err = &ExitError{PID: c.pid, Cause: "did not exit after SIGKILL", Reason: reason, Stderr: c.stderr.Bytes()}
				return res, false
			}
		}
	}
}

func resultOf(r *wireResult, res Result) Result {
	switch {
	case r.Panic != "":
		res.Outcome = Panicked
		res.Err = &PanicError{Value: r.Panic, Stack: []byte(r.Stack)}
	case r.Err != "":
		res.Outcome = Failed
		res.Err = decodeError(r)
	default:
		res.Outcome = Done
	}
	return res
}

func (p *Pool) exitResult(c *child, res Result) Result {
	p.mu.Lock()
	reason := c.killReason
	p.mu.Unlock()
	tail := c.stderr.Bytes()
	e := &ExitError{PID: c.pid, Cause: c.cause, Reason: reason, Stderr: tail, Stack: crashReport(tail)}
	switch {
	case reason == nil:
		res.Outcome = Died
	case errors.Is(reason, ErrTimedOut):
		res.Outcome = TimedOut
	default:
		res.Outcome = Killed
	}
	res.Err = e
	return res
}

// crashStart finds where the Go runtime's report of a panic or fatal
// signal begins.
var crashStart = regexp.MustCompile(`(?m)^(panic: |fatal error: |SIG[A-Z]+: |unexpected signal)`)

func crashReport(stderr []byte) []byte {
	loc := crashStart.FindIndex(stderr)
	if loc == nil {
		return nil
	}
	return stderr[loc[0]:]
}

// release makes a child that finished a job idle again, or retires it.
func (p *Pool) release(c *child, alive bool) {
	var rss int64
	if alive && p.cfg.MaxRSS > 0 {
		rss, _ = readRSS(c.pid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c.job = nil
	c.tasks++
	if !alive {
		return
	}
	if p.closed {
		p.counts.Drained++
	}
	p.failures = 0
	switch {
	case c.state == Retiring:
	case p.closed:
		p.retireLocked(c)
	case c.gen != p.gen:
		p.log.Debug("retiring worker process", "pid", c.pid, "reason", "recycle")
		p.retireLocked(c)
	case p.aliveLocked() > p.cfg.Max:
		p.log.Debug("retiring worker process", "pid", c.pid, "reason", "above max")
		p.retireLocked(c)
	case p.cfg.MaxTasksPerProc > 0 && c.tasks >= int64(p.cfg.MaxTasksPerProc):
		p.log.Debug("retiring worker process", "pid", c.pid, "tasks_done", c.tasks, "reason", "max tasks")
		p.retireLocked(c)
	case p.cfg.MaxRSS > 0 && rss > p.cfg.MaxRSS:
		p.log.Info("retiring worker process", "pid", c.pid, "rss_bytes", rss, "max_rss_bytes", p.cfg.MaxRSS)
		p.retireLocked(c)
	default:
		p.handOrIdleLocked(c)
	}
}

// Recycle replaces every child: idle and starting ones are retired at
// once, busy ones after their current job, and Run starts new ones from
// Config.Command. On a reload (SIGHUP) this brings up children of the new
// binary while the old ones finish what they run.
func (p *Pool) Recycle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	for c := range p.children {
		if c.state == Idle || c.state == Starting {
			p.retireLocked(c)
		}
	}
	p.notifyLocked()
}

// SetLimits changes Min and Max while the pool runs (0 and negative mean
// what they mean in Config). Children above a lower Max retire when idle;
// more start for a higher Min at once.
func (p *Pool) SetLimits(minProcs, maxProcs int) error {
	c := Config{Command: p.cfg.Command, Min: minProcs, Max: maxProcs}
	if err := c.setDefaults(); err != nil {
		return fmt.Errorf("set limits: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg.Min, p.cfg.Max = c.Min, c.Max
	p.notifyLocked()
	return nil
}

// ShutdownStats says how Shutdown ended.
type ShutdownStats struct {
	Drained    int64 // jobs that finished after Shutdown began
	Terminated int64 // children sent SIGTERM at the deadline
	Killed     int64 // of those, the ones that also needed SIGKILL
}

// Shutdown stops intake (Do returns ErrClosed), retires idle children at
// once and lets busy ones finish their jobs, all in parallel, until ctx
// ends. Then it sends SIGTERM to every remaining child at once, SIGKILL
// KillWait later, and waits until every child is reaped. It returns ctx's
// error, wrapped, if the deadline cut jobs short. Shutdown may be called
// more than once, and before or without Run.
func (p *Pool) Shutdown(ctx context.Context) (ShutdownStats, error) {
	p.mu.Lock()
	killsBefore, sigkillsBefore := p.counts.Kills, p.counts.SIGKILLs
	if !p.closed {
		p.closed = true
		close(p.closing)
		for c := range p.children {
			if c.state == Idle || c.state == Starting {
				p.retireLocked(c)
			}
		}
		p.notifyLocked()
	}
	p.mu.Unlock()

	stats := func() ShutdownStats {
		p.mu.Lock()
		defer p.mu.Unlock()
		return ShutdownStats{Drained: p.counts.Drained, Terminated: p.counts.Kills - killsBefore, Killed: p.counts.SIGKILLs - sigkillsBefore}
	}
	if p.waitEmpty(ctx.Done()) {
		return stats(), nil
	}
	p.mu.Lock()
	n := 0
	for c := range p.children {
		// A retired child runs no job and is on its way out: its
		// monitor kills it KillWait after its socket closed.
		if c.retired {
			continue
		}
		if c.killReason == nil {
			n++
		}
		p.killLocked(c, ErrStopped)
	}
	p.mu.Unlock()
	if n > 0 {
		p.log.Info("shutdown deadline: terminating worker processes", "count", n)
	}
	reap, cancel := context.WithTimeout(context.Background(), 2*p.cfg.KillWait+time.Second)
	defer cancel()
	if !p.waitEmpty(reap.Done()) {
		return stats(), fmt.Errorf("shutdown: worker processes still not reaped after SIGKILL: %w", ctx.Err())
	}
	if n == 0 {
		return stats(), nil // only idle children were still exiting: no job was cut short
	}
	return stats(), fmt.Errorf("shutdown: deadline passed with %d jobs running: %w", n, ctx.Err())
}

// waitEmpty waits until no child is left, or until stop; it reports
// whether none is left.
func (p *Pool) waitEmpty(stop <-chan struct{}) bool {
	for {
		p.mu.Lock()
		empty := len(p.children) == 0
		ch := p.changed
		p.mu.Unlock()
		if empty {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

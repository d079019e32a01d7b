package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"golang.org/x/sync/errgroup"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/storage/postgres"
)

// stopTimeout is how long a daemon may take to exit after TERM before it
// is killed: its graceful timeout (10s) and a margin.
const stopTimeout = 15 * time.Second

// runner holds what one Run shares: the temporary directory and the
// daemons still running, which cleanup stops.
type runner struct {
	cfg   Config
	root  string
	steps int
	step  int

	// pg is the connection that creates and drops cfg.Schema, with
	// cfg.DatabaseURL; nil on SQLite.
	pg *sql.DB

	mu      sync.Mutex
	daemons map[*daemon]bool
}

// cleanup stops every daemon still running, removes the temporary
// directory and drops the PostgreSQL schema.
func (r *runner) cleanup() error {
	r.mu.Lock()
	ds := make([]*daemon, 0, len(r.daemons))
	for d := range r.daemons {
		ds = append(ds, d)
	}
	r.mu.Unlock()
	for _, d := range ds {
		d.stop()
	}
	os.RemoveAll(r.root)
	if r.pg == nil {
		return nil
	}
	err := r.dropSchema()
	r.pg.Close()
	return err
}

func (r *runner) progress(step int, what string) {
	if r.cfg.Progress != nil {
		r.cfg.Progress(step, r.steps, what)
	}
}

// next reports the start of a step.
func (r *runner) next(what string) {
	r.progress(r.step, what)
	r.step++
}

// dataDir creates a data directory for one measurement, with its
// database migrated, so that producers starting together do not race to
// create it. On PostgreSQL the measurement's database is cfg.Schema,
// created empty here. removeData undoes it.
func (r *runner) dataDir(ctx context.Context, name string) (string, error) {
	dir := filepath.Join(r.root, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create the data directory for %s: %w", name, err)
	}
	if r.pg != nil {
		// The previous measurement's, if its drop failed.
		if err := r.dropSchema(); err != nil {
			return "", err
		}
	}
	q, err := queue.Open(ctx, queue.Config{Dir: dir, DatabaseURL: r.cfg.DatabaseURL, Schema: r.cfg.Schema,
		Logger: slog.New(slog.DiscardHandler)}) // not "applied migration" on every measurement
	if err != nil {
		return "", fmt.Errorf("create the database for %s: %w", name, err)
	}
	return dir, q.Close()
}

// removeData removes a measurement's data directory and drops its
// schema. A failed drop is tried again by the next dataDir and by
// cleanup, which report it.
func (r *runner) removeData(dir string) {
	os.RemoveAll(dir)
	if r.pg != nil {
		r.dropSchema()
	}
}

// dropTimeout bounds dropping the schema, which runs also after ctx is
// cancelled.
const dropTimeout = 30 * time.Second

// openPostgres connects to cfg.DatabaseURL and checks that cfg.Schema
// does not exist yet: Run drops it at the end, and must not drop anyone's
// tasks.
func (r *runner) openPostgres(ctx context.Context) error {
	where := postgres.Redact(r.cfg.DatabaseURL)
	db, err := sql.Open("pgx", r.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("PostgreSQL database at %s: %w", where, postgres.RedactError(err, r.cfg.DatabaseURL))
	}
	var exists bool
	err = db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, r.cfg.Schema).Scan(&exists)
	if err != nil {
		db.Close()
		return fmt.Errorf("connect to the PostgreSQL database at %s: %w", where, postgres.RedactError(err, r.cfg.DatabaseURL))
	}
	if exists {
		db.Close()
		return fmt.Errorf("schema %s already exists in the PostgreSQL database at %s: bench creates and drops its schema, so name one that does not exist, or none for a fresh one", r.cfg.Schema, where)
	}
	r.pg = db
	return nil
}

// dropSchema drops cfg.Schema if it exists.
func (r *runner) dropSchema() error {
	ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	if _, err := r.pg.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{r.cfg.Schema}.Sanitize()+` CASCADE`); err != nil {
		return fmt.Errorf("drop schema %s in the PostgreSQL database at %s: %w", r.cfg.Schema, postgres.Redact(r.cfg.DatabaseURL), postgres.RedactError(err, r.cfg.DatabaseURL))
	}
	return nil
}

// childEnv is this process's environment without SNAPPEA_* and SENTRY_*,
// so that a developer's settings cannot redirect the daemon or the
// producers away from the temporary directory; on PostgreSQL it adds the
// database and schema, which keeps the URL off the command lines.
func (r *runner) childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SNAPPEA_") || strings.HasPrefix(kv, "SENTRY_") {
			continue
		}
		env = append(env, kv)
	}
	if r.cfg.DatabaseURL != "" {
		env = append(env, DatabaseURLEnv+"="+r.cfg.DatabaseURL, SchemaEnv+"="+r.cfg.Schema)
	}
	return env
}

// The variables through which the daemons and producers get the database
// on PostgreSQL (the command line's own).
const (
	DatabaseURLEnv = "SNAPPEA_DATABASE_URL"
	SchemaEnv      = "SNAPPEA_SCHEMA"
)

func (r *runner) profilePath(name, role string) string {
	if r.cfg.ProfileDir == "" {
		return ""
	}
	return filepath.Join(r.cfg.ProfileDir, name+"."+role+".pprof")
}

// logRecord is the part of a daemon's JSON log record the benchmark reads.
type logRecord struct {
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Msg    string    `json:"msg"`
	TaskID int64     `json:"task_id"`
	Done   int64     `json:"done"`
}

// daemon is a running `snappea run`, its JSON log written to a file that
// is read as it grows. Reading a file rather than a pipe keeps the
// benchmarking process off the CPU while the daemon is measured.
type daemon struct {
	r         *runner
	name      string
	cmd       *exec.Cmd
	log       *os.File // the daemon's output, read from here
	partial   []byte   // a line not yet complete
	done      chan struct{}
	startedAt time.Time  // the time of its "foreman started" record
	stopped   *logRecord // its "stopped" record, once it has exited

	stopOnce sync.Once
	stopErr  error
}

// startDaemon starts `snappea run` on dir and waits for its "foreman
// started" record.
func (r *runner) startDaemon(ctx context.Context, name, dir string, workers int, debug bool) (*daemon, error) {
	logPath := filepath.Join(r.root, name+".log")
	w, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	defer w.Close() // the child has its own copy
	rd, err := os.Open(logPath)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	level := "info"
	if debug {
		level = "debug"
	}
	args := []string{"run", "--dir", dir, "--workers", strconv.Itoa(workers), "--log-format", "json", "--log-level", level}
	if r.cfg.Isolation == "process" {
		n := strconv.Itoa(r.cfg.Procs)
		args = append(args, "--isolation", "process", "--procs-min", n, "--procs-max", n)
	}
	if p := r.profilePath(name, "daemon"); p != "" {
		args = append(args, "--cpuprofile", p)
	}
	cmd := exec.Command(r.cfg.Executable, args...)
	cmd.Env = r.childEnv()
	cmd.Dir = r.root
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		rd.Close()
		return nil, fmt.Errorf("start the daemon (%s): %w", name, err)
	}
	d := &daemon{r: r, name: name, cmd: cmd, log: rd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(d.done)
	}()
	r.mu.Lock()
	if r.daemons == nil {
		r.daemons = make(map[*daemon]bool)
	}
	r.daemons[d] = true
	r.mu.Unlock()

	rec, err := d.waitFor(ctx, 30*time.Second, "the daemon to start", func(rec *logRecord) bool {
		return rec.Msg == "foreman started"
	})
	if err != nil {
		d.stop()
		return nil, err
	}
	d.startedAt = rec.Time
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// readLines calls fn on each complete line logged since the last call,
// until fn returns true; the lines after that one stay unread.
func (d *daemon) readLines(fn func(line []byte) bool) (bool, error) {
	buf := make([]byte, 256<<10)
	for {
		for {
			i := bytes.IndexByte(d.partial, '\n')
			if i < 0 {
				break
			}
			line := d.partial[:i]
			d.partial = d.partial[i+1:]
			if fn(line) {
				return true, nil
			}
		}
		n, err := d.log.Read(buf)
		if n > 0 {
			d.partial = append(d.partial, buf[:n]...)
			continue
		}
		if err == nil || errors.Is(err, io.EOF) {
			// Compact what is left so that the buffer does not grow with
			// the log.
			d.partial = append([]byte(nil), d.partial...)
			return false, nil
		}
		return false, fmt.Errorf("read the daemon's log: %w", err)
	}
}

// waitFor reads the daemon's log until a record matches, and returns it.
// It fails after timeout, if ctx ends, or if the daemon exits first.
func (d *daemon) waitFor(ctx context.Context, timeout time.Duration, what string, match func(*logRecord) bool) (*logRecord, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var found *logRecord
	look := func() (bool, error) {
		return d.readLines(func(line []byte) bool {
			var rec logRecord
			if json.Unmarshal(line, &rec) != nil {
				return false // not a record: a Go panic, say; it shows in the tail
			}
			if match(&rec) {
				found = &rec
				return true
			}
			return false
		})
	}
	for {
		ok, err := look()
		if err != nil {
			return nil, err
		}
		if ok {
			return found, nil
		}
		select {
		case <-d.done:
			// Everything it wrote is in the file now.
			if ok, err := look(); ok || err != nil {
				return found, err
			}
			return nil, fmt.Errorf("daemon (%s) exited with %s before %s\n%s", d.name, d.cmd.ProcessState, what, d.tail())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, fmt.Errorf("daemon (%s): timed out after %v waiting for %s\n%s", d.name, timeout, what, d.tail())
		case <-tick.C:
		}
	}
}

// tail is the end of the daemon's log, for error messages.
func (d *daemon) tail() string {
	b, err := os.ReadFile(d.log.Name())
	if err != nil {
		return ""
	}
	return "daemon log, last lines:\n" + lastLines(b, 15)
}

// lastLines returns the last n lines of b, indented.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "  " + strings.Join(lines, "\n  ")
}

// usage is what a daemon used over its life.
type usage struct {
	rssMiB  float64 // peak resident set size
	cpuSecs float64 // user and system CPU time
}

// stop sends TERM, waits for the exit (KILL after stopTimeout) and returns
// the daemon's resource use. A daemon that did not exit with status 0 is
// an error. Calling it again returns the first result.
func (d *daemon) stop() (usage, error) {
	d.stopOnce.Do(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(stopTimeout):
				d.cmd.Process.Kill()
				<-d.done
				d.stopErr = fmt.Errorf("daemon (%s) did not exit within %v of TERM and was killed\n%s", d.name, stopTimeout, d.tail())
			}
		}
		if d.stopErr == nil && !d.cmd.ProcessState.Success() {
			d.stopErr = fmt.Errorf("daemon (%s) exited with %s\n%s", d.name, d.cmd.ProcessState, d.tail())
		}
		d.readLines(func(line []byte) bool {
			var rec logRecord
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "stopped" {
				d.stopped = &rec
				return true
			}
			return false
		})
		d.log.Close()
		d.r.mu.Lock()
		delete(d.r.daemons, d)
		d.r.mu.Unlock()
	})
	var u usage
	if ru, ok := d.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.rssMiB = float64(ru.Maxrss) / 1024 // kilobytes on Linux
		u.cpuSecs = time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime)).Seconds()
	}
	return u, d.stopErr
}

// cpuTime returns how long the threads of process pid have run, from the
// kernel's per-thread scheduler statistics (nanoseconds), falling back to
// /proc/PID/stat's clock ticks.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err == nil && len(tasks) > 0 {
		var total time.Duration
		ok := true
		for _, p := range tasks {
			b, err := os.ReadFile(p)
			if err != nil {
				continue // the thread exited
			}
			f := strings.Fields(string(b))
			if len(f) == 0 {
				ok = false
				break
			}
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				ok = false
				break
			}
			total += time.Duration(ns)
		}
		if ok {
			return total, nil
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read the daemon's CPU time: %w", err)
	}
	// The command name may hold spaces and parentheses: fields count from
	// the last ')'. utime and stime are fields 14 and 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("read the daemon's CPU time: unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read the daemon's CPU time: unexpected /proc/%d/stat", pid)
	}
	const ticksPerSecond = 100 // USER_HZ, fixed on Linux
	return time.Duration(ut+st) * time.Second / ticksPerSecond, nil
}

// loadAvg returns the 1, 5 and 15 minute load averages, or zeros.
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := range min(3, len(f)) {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// producer is one running producer process.
type producer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr tailBuffer
}

func (p *producer) failure(name string, err error) error {
	msg := fmt.Sprintf("producer (%s): %v", name, err)
	if p.cmd.ProcessState != nil {
		msg = fmt.Sprintf("producer (%s) exited with %s: %v", name, p.cmd.ProcessState, err)
	}
	if s := strings.TrimSpace(p.stderr.String()); s != "" {
		msg += "\nproducer stderr, last lines:\n" + lastLines([]byte(s), 15)
	}
	return errors.New(msg)
}

// produce runs one producer process per config, starts them together once
// all are ready, and returns their reports.
func (r *runner) produce(parent context.Context, name string, cfgs []ProducerConfig) ([]producerReport, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel() // kills any producer left behind by an error
	ps := make([]*producer, len(cfgs))
	wait := func() {
		for _, p := range ps {
			if p != nil && p.cmd.Process != nil && p.cmd.ProcessState == nil {
				p.cmd.Process.Kill()
				p.cmd.Wait()
			}
		}
	}
	for i, pc := range cfgs {
		arg, err := json.Marshal(pc)
		if err != nil {
			return nil, err
		}
		p := &producer{cmd: exec.CommandContext(ctx, r.cfg.Executable, "bench", ProducerRole, string(arg))}
		p.cmd.Env = r.childEnv()
		p.cmd.Dir = r.root
		p.cmd.Stderr = &p.stderr
		p.cmd.SysProcAttr = procAttr()
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			wait()
			return nil, err
		}
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			wait()
			return nil, err
		}
		p.stdout = bufio.NewReaderSize(out, 1<<20)
		if err := p.cmd.Start(); err != nil {
			wait()
			return nil, fmt.Errorf("start a producer (%s): %w", name, err)
		}
		ps[i] = p
	}
	for _, p := range ps {
		line, err := p.stdout.ReadString('\n')
		if strings.TrimSpace(line) != readyLine {
			if err == nil {
				err = fmt.Errorf("printed %q before starting, want %q", line, readyLine)
			}
			p.cmd.Wait()
			wait()
			if parent.Err() != nil {
				return nil, parent.Err()
			}
			return nil, p.failure(name, err)
		}
	}
	for _, p := range ps {
		p.stdin.Close() // go
	}
	reps := make([]producerReport, len(ps))
	var (
		mu    sync.Mutex
		first error // the first failure; the others may be its consequence
		g     errgroup.Group
	)
	for i, p := range ps {
		g.Go(func() error {
			err := json.NewDecoder(p.stdout).Decode(&reps[i])
			io.Copy(io.Discard, p.stdout)
			if werr := p.cmd.Wait(); werr != nil || err != nil {
				mu.Lock()
				if first == nil {
					first = p.failure(name, errors.Join(werr, err))
				}
				mu.Unlock()
				cancel()
			}
			return nil
		})
	}
	g.Wait()
	if err := parent.Err(); err != nil {
		return nil, err
	}
	if first != nil {
		return nil, first
	}
	return reps, nil
}

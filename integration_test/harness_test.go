package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the snappea binary built by TestMain; serviceBin a daemon built
// on package cli with a managed service (testdata/servicedaemon); procBin
// one whose tasks run in child processes (testdata/procdaemon).
var bin, serviceBin, procBin string

func TestMain(m *testing.M) {
	// Every test here runs the real binary, and building it alone takes
	// a while: none of them is part of the quick loop.
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration tests skipped under -short: they build and run the real binary")
		os.Exit(0)
	}
	tmp, err := os.MkdirTemp("", "snappea-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(tmp, "snappea")
	serviceBin = filepath.Join(tmp, "servicedaemon")
	procBin = filepath.Join(tmp, "procdaemon")
	args := []string{"build", "-o", tmp + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/snappea", "./testdata/servicedaemon", "./testdata/procdaemon")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building snappea:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// record is one JSON log record of the daemon.
type record map[string]any

func (r record) msg() string { s, _ := r["msg"].(string); return s }

func (r record) int(key string) int64 {
	switch v := r[key].(type) {
	case float64:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

func (r record) str(key string) string { s, _ := r[key].(string); return s }

// duration reads a duration, which the daemon's JSON log writes as text
// ("1.5s"); 0 when absent or malformed.
func (r record) duration(key string) time.Duration {
	d, _ := time.ParseDuration(r.str(key))
	return d
}

// daemon is a running `snappea run` with JSON logs, read as they come.
type daemon struct {
	t    testing.TB
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is read

	mu      sync.Mutex
	records []record
	raw     bytes.Buffer // non-JSON output (a Go panic, say)
	changed chan struct{}
	code    int
}

// startDaemon starts `snappea run` on dir and waits until it is ready: the
// lock is held, the wakeup directory watched and the backlog being claimed.
func startDaemon(t testing.TB, dir string, args ...string) *daemon {
	t.Helper()
	d := launchDaemon(t, dir, args...)
	d.waitFor(30*time.Second, "the daemon to start", func(r record) bool { return r.msg() == "foreman started" })
	return d
}

// launchDaemon starts `snappea run` on dir without waiting for it.
func launchDaemon(t testing.TB, dir string, args ...string) *daemon {
	t.Helper()
	return launchProgram(t, bin, dir, args...)
}

// launchProgram starts `program run` on dir without waiting for it:
// program is the snappea binary or a copy of it, or another binary built
// on package cli.
func launchProgram(t testing.TB, program, dir string, args ...string) *daemon {
	t.Helper()
	return launchProgramEnv(t, program, dir, nil, args...)
}

// launchProgramEnv is launchProgram with env added to the environment.
func launchProgramEnv(t testing.TB, program, dir string, env []string, args ...string) *daemon {
	t.Helper()
	all := append([]string{"run", "--dir", dir, "--log-format", "json", "--log-level", "debug"}, args...)
	cmd := exec.Command(program, all...)
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, cmd: cmd, done: make(chan struct{}), changed: make(chan struct{})}
	go d.read(stderr)
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

func (d *daemon) read(r interface{ Read([]byte) (int, error) }) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec record
		d.mu.Lock()
		if err := json.Unmarshal(sc.Bytes(), &rec); err == nil {
			d.records = append(d.records, rec)
		} else {
			d.raw.Write(sc.Bytes())
			d.raw.WriteByte('\n')
		}
		close(d.changed)
		d.changed = make(chan struct{})
		d.mu.Unlock()
	}
	err := d.cmd.Wait()
	d.mu.Lock()
	d.code = d.cmd.ProcessState.ExitCode()
	if err != nil && d.code == -1 {
		d.code = -1 // killed by a signal
	}
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
	close(d.done)
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// waitFor waits until a record matching pred has been logged and returns
// it, failing the test after timeout or if the daemon exits first.
func (d *daemon) waitFor(timeout time.Duration, what string, pred func(record) bool) record {
	d.t.Helper()
	var found record
	seen := 0
	d.waitUntil(timeout, what, func() bool {
		d.mu.Lock()
		recs := d.records[seen:]
		seen = len(d.records)
		d.mu.Unlock()
		for _, r := range recs {
			if pred(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// waitUntil waits until cond holds, checking it again whenever the daemon
// logs; it fails the test after timeout or if the daemon exits first.
// cond runs without the daemon's lock held, so it may call count and all.
func (d *daemon) waitUntil(timeout time.Duration, what string, cond func() bool) {
	d.t.Helper()
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		changed := d.changed
		d.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-d.done:
			if cond() {
				return
			}
			d.t.Fatalf("daemon exited (code %d) before %s\n%s", d.exitCode(), what, d.output())
		case <-deadline:
			d.t.Fatalf("timed out after %v waiting for %s\n%s", timeout, what, d.output())
		}
	}
}

// count returns how many records match pred so far.
func (d *daemon) count(pred func(record) bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range d.records {
		if pred(r) {
			n++
		}
	}
	return n
}

// all returns the records matching pred so far.
func (d *daemon) all(pred func(record) bool) []record {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []record
	for _, r := range d.records {
		if pred(r) {
			out = append(out, r)
		}
	}
	return out
}

// output is the daemon's log so far, for failure messages: the last lines.
func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	start := max(0, len(d.records)-40)
	for _, r := range d.records[start:] {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	b.Write(d.raw.Bytes())
	return b.String()
}

func (d *daemon) signal(sig syscall.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits for the daemon to exit and returns its exit code.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
		return d.exitCode()
	case <-time.After(timeout):
		d.t.Fatalf("daemon still running after %v\n%s", timeout, d.output())
		return 0
	}
}

func (d *daemon) exitCode() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.code
}

// stop sends TERM, waits for the exit and returns the "stopped" summary.
func (d *daemon) stop() record {
	d.t.Helper()
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		d.t.Fatalf("daemon exited with %d after TERM, want 0\n%s", code, d.output())
	}
	return d.waitFor(time.Second, "the stopped record", isMsg("stopped"))
}

func isMsg(msg string) func(record) bool {
	return func(r record) bool { return r.msg() == msg }
}

// result is a finished snappea command.
type result struct {
	code           int
	stdout, stderr string
}

// snappea runs one snappea command to completion.
func snappea(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	if err != nil && r.code == -1 {
		t.Fatalf("snappea %v: %v", args, err)
	}
	return r
}

// mustSnappea runs a command that must succeed.
func mustSnappea(t testing.TB, args ...string) result {
	t.Helper()
	r := snappea(t, args...)
	if r.code != 0 {
		t.Fatalf("snappea %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// ids parses the task ids `snappea enqueue` prints.
func ids(t testing.TB, stdout string) []int64 {
	t.Helper()
	var out []int64
	for _, f := range strings.Fields(stdout) {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("enqueue printed %q, want ids", f)
		}
		out = append(out, id)
	}
	return out
}

type status struct {
	Pending          int64   `json:"pending"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	DaemonPID        int     `json:"daemon_pid"`
}

func getStatus(t testing.TB, dir string) status {
	t.Helper()
	r := mustSnappea(t, "status", "--json", "--dir", dir)
	var s status
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	return s
}

// waitStatus polls `snappea status` until cond holds.
func waitStatus(t testing.TB, dir string, timeout time.Duration, what string, cond func(status) bool) status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := getStatus(t, dir)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last status %+v", timeout, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanEnv is the test's environment without SNAPPEA_* and SENTRY_DSN, so
// that a developer's settings do not leak into the daemon under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SNAPPEA_") || strings.HasPrefix(kv, "SENTRY_") {
			continue
		}
		env = append(env, kv)
	}
	// A race-built binary sleeps a second at exit by default.
	return append(env, "GORACE=atexit_sleep_ms=0")
}

func dataDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "data")
}

// snappeaWith runs one snappea command to completion after setup has
// adjusted the command (its environment, credentials, binary). The command
// starts with cleanEnv and runs in an empty working directory, so that a
// default --dir can never land in the source tree.
func snappeaWith(t testing.TB, setup func(*exec.Cmd), args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
	cmd.Dir = t.TempDir()
	if setup != nil {
		setup(cmd)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("snappea %v: %v", args, err)
	}
	r := result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	if err != nil && r.code == -1 {
		t.Fatalf("snappea %v: %v", args, err)
	}
	return r
}

// snappeaEnv runs one snappea command with extra environment variables
// (KEY=VALUE) on top of cleanEnv.
func snappeaEnv(t testing.TB, env []string, args ...string) result {
	t.Helper()
	return snappeaWith(t, func(cmd *exec.Cmd) { cmd.Env = append(cmd.Env, env...) }, args...)
}

// usageError is a command line that must exit 2 with a message naming what
// is wrong, and create nothing.
type usageError struct {
	name string
	env  []string
	args []string // DIR is replaced by a data directory that must stay absent
	want []string // in stderr
}

func runUsageErrors(t *testing.T, tests []usageError) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := dataDir(t)
			args := slices.Clone(tt.args)
			for i, a := range args {
				if a == "DIR" {
					args[i] = dir
				}
			}
			r := snappeaEnv(t, tt.env, args...)
			if r.code != 2 {
				t.Fatalf("snappea %s: exit %d, want 2\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("message %q does not mention %q", r.stderr, want)
				}
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a usage error created the data directory: %v", err)
			}
		})
	}
}

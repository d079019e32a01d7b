package prefork_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snappea/snappea/prefork"
	"github.com/snappea/snappea/registry"
)

func do(t *testing.T, p *prefork.Pool, j prefork.Job) prefork.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.Do(ctx, j)
	if err != nil {
		t.Fatalf("Do(%s): %v", j.Name, err)
	}
	return res
}

func TestPool_Do(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1})
	tests := []struct {
		task    string
		outcome prefork.Outcome
		errText string // a part of the error's text
		is      error
	}{
		{task: "noop", outcome: prefork.Done},
		{task: "sleep100", outcome: prefork.Done},
		{task: "fail", outcome: prefork.Failed, errText: "smtp down"},
		{task: "panic", outcome: prefork.Panicked, errText: "panic: kaboom"},
		{task: "nosuch", outcome: prefork.Failed, errText: "nosuch", is: registry.ErrUnknownTask},
	}
	var pid int
	for i, tt := range tests {
		t.Run(tt.task, func(t *testing.T) {
			res := do(t, p, prefork.Job{ID: int64(i + 1), Name: tt.task})
			if res.Outcome != tt.outcome {
				t.Fatalf("outcome = %v (err %v), want %v", res.Outcome, res.Err, tt.outcome)
			}
			if tt.errText == "" && res.Err != nil {
				t.Errorf("err = %v, want nil", res.Err)
			}
			if tt.errText != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.errText)) {
				t.Errorf("err = %v, want one containing %q", res.Err, tt.errText)
			}
			if tt.is != nil && !errors.Is(res.Err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false, want true", res.Err, tt.is)
			}
			// One child did it all: failures and recovered panics keep it.
			if pid == 0 {
				pid = res.PID
			} else if res.PID != pid {
				t.Errorf("ran on pid %d, want the same child, %d", res.PID, pid)
			}
		})
	}
	var pe *prefork.PanicError
	res := do(t, p, prefork.Job{ID: 99, Name: "panic"})
	if !errors.As(res.Err, &pe) || !strings.Contains(string(pe.Stack), "main_test.go") {
		t.Errorf("panic err = %#v, want a *PanicError with the handler's stack", res.Err)
	}
	s := p.Snapshot()
	if len(s.Procs) != 1 || s.Procs[0].TasksDone != int64(len(tests)+1) || s.Deaths != 0 || s.Starts != 1 {
		t.Errorf("snapshot = %+v, want one child with %d tasks done, 1 start, no deaths", s, len(tests)+1)
	}
	if s.Procs[0].RSSBytes <= 0 {
		t.Errorf("rss_bytes = %d, want the child's resident set", s.Procs[0].RSSBytes)
	}
}

// Started gets the child's pid before the job runs; the handler reads its
// job with JobFrom.
func TestPool_Do_startedAndJobFrom(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1})
	var started int
	res := do(t, p, prefork.Job{ID: 7, Name: "whoami", Attempt: 2, MaxAttempts: 3, Timeout: time.Minute,
		Args: []byte(`{}`), Started: func(pid int) { started = pid }})
	if started == 0 || started != res.PID {
		t.Errorf("Started got pid %d, want the child's, %d", started, res.PID)
	}
	want := fmt.Sprintf("ok=true id=7 name=whoami attempt=2/3 timeout=1m0s args=0 pid=%d", res.PID)
	if res.Err == nil || res.Err.Error() != want {
		t.Errorf("the handler saw %v, want %q", res.Err, want)
	}
}

// A child that dies while running a job fails that job with the cause and
// is replaced; the pool goes on.
func TestPool_Do_childDies(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1})
	tests := []struct {
		task  string
		cause []string // one of these is in the error
		stack string   // in ExitError.Stack
	}{
		{task: "exit3", cause: []string{"worker process died: exit status 3"}},
		{task: "gopanic", cause: []string{"worker process died: exit status 2"}, stack: "panic: kaboom in a goroutine"},
		// Go's runtime catches SIGSEGV and crashes with exit status 2,
		// printing the signal; a non-Go crash shows as killed by SIGSEGV.
		{task: "segv", cause: []string{"worker process died: exit status 2", "worker process died: killed by SIGSEGV"}, stack: "SIGSEGV"},
	}
	for i, tt := range tests {
		t.Run(tt.task, func(t *testing.T) {
			res := do(t, p, prefork.Job{ID: int64(i + 1), Name: tt.task})
			if res.Outcome != prefork.Died {
				t.Fatalf("outcome = %v (err %v), want died", res.Outcome, res.Err)
			}
			var ee *prefork.ExitError
			if !errors.As(res.Err, &ee) {
				t.Fatalf("err = %#v, want an *ExitError", res.Err)
			}
			if !containsAny(res.Err.Error(), tt.cause) {
				t.Errorf("err = %q, want one of %q", res.Err, tt.cause)
			}
			if tt.stack != "" && !strings.Contains(string(ee.Stack), tt.stack) {
				t.Errorf("stack = %q, want it to contain %q (stderr tail %q)", ee.Stack, tt.stack, ee.Stderr)
			}
			// The pool replaces the child and goes on.
			res = do(t, p, prefork.Job{ID: 100, Name: "noop"})
			if res.Outcome != prefork.Done {
				t.Errorf("noop after the death: %v %v, want done", res.Outcome, res.Err)
			}
		})
	}
	s := p.Snapshot()
	if s.Deaths != int64(len(tests)) || s.Restarts != int64(len(tests)) {
		t.Errorf("deaths, restarts = %d, %d; want %d each", s.Deaths, s.Restarts, len(tests))
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// kill -9 of a busy child: its job fails with the cause, a new child
// takes its place.
func TestPool_Do_childKilled(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1})
	got := make(chan prefork.Result, 1)
	go func() {
		res, _ := p.Do(context.Background(), prefork.Job{ID: 7, Name: "block"})
		got <- res
	}()
	var pid int
	waitFor(t, "the child to run job 7", func() bool {
		s := p.Snapshot()
		if len(s.Procs) == 1 && s.Procs[0].State == prefork.Busy && s.Procs[0].TaskID == 7 && s.Procs[0].Task == "block" {
			pid = s.Procs[0].PID
			return true
		}
		return false
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var res prefork.Result
	select {
	case res = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("Do did not return 20s after its child was killed")
	}
	if res.Outcome != prefork.Died || res.Err == nil || res.Err.Error() != "worker process died: killed by SIGKILL" {
		t.Errorf("result = %v %v, want died: worker process died: killed by SIGKILL", res.Outcome, res.Err)
	}
	waitFor(t, "a new child", func() bool {
		s := p.Snapshot()
		return len(s.Procs) == 1 && s.Procs[0].State == prefork.Idle && s.Procs[0].PID != pid
	})
	if !reaped(pid) {
		t.Errorf("killed child %d still there, or a zombie", pid)
	}
}

// A job that ignores its context is killed at its timeout plus grace; the
// slot is freed and the result says timed out.
func TestPool_Do_hardTimeout(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1, Grace: 100 * time.Millisecond, KillWait: 200 * time.Millisecond})
	start := time.Now()
	res := do(t, p, prefork.Job{ID: 1, Name: "block", Timeout: 100 * time.Millisecond})
	if res.Outcome != prefork.TimedOut || !errors.Is(res.Err, prefork.ErrTimedOut) {
		t.Fatalf("result = %v %v, want timed out", res.Outcome, res.Err)
	}
	// The test child catches SIGTERM (to cancel its job), and the handler
	// ignores that, so SIGKILL ends it.
	if !strings.Contains(res.Err.Error(), "killed by SIGKILL") {
		t.Errorf("err = %v, want the cause, killed by SIGKILL", res.Err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("returned after %v; the timeout, grace and kill wait add up to 400ms", d)
	}
	// A cooperative handler meets its deadline in the child: no kill.
	res = do(t, p, prefork.Job{ID: 2, Name: "wait", Timeout: 50 * time.Millisecond})
	if res.Outcome != prefork.Failed || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("wait with a timeout: %v %v, want failed with context.DeadlineExceeded", res.Outcome, res.Err)
	}
	s := p.Snapshot()
	if s.Kills != 1 || s.SIGKILLs != 1 || s.Deaths != 0 {
		t.Errorf("kills, sigkills, deaths = %d, %d, %d; want 1, 1, 0", s.Kills, s.SIGKILLs, s.Deaths)
	}
}

// Cancelling Do's context cancels the job's context in the child; a job
// that ignores it is killed after the grace period.
func TestPool_Do_cancel(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1, Grace: 100 * time.Millisecond, KillWait: 100 * time.Millisecond})
	for _, tt := range []struct {
		task    string
		outcome prefork.Outcome
		is      error
	}{
		{"wait", prefork.Failed, context.Canceled},
		{"block", prefork.Killed, prefork.ErrIgnoredCancel},
	} {
		t.Run(tt.task, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			got := make(chan prefork.Result, 1)
			go func() {
				res, _ := p.Do(ctx, prefork.Job{ID: 3, Name: tt.task})
				got <- res
			}()
			waitFor(t, "the job to run", func() bool { return countState(p.Snapshot(), prefork.Busy) == 1 })
			cancel()
			select {
			case res := <-got:
				if res.Outcome != tt.outcome || !errors.Is(res.Err, tt.is) {
					t.Errorf("result = %v %v, want %v matching %v", res.Outcome, res.Err, tt.outcome, tt.is)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Do did not return 20s after cancel")
			}
		})
	}
}

// A child has only stdin, stdout, stderr and its socket open: nothing of
// the parent's, such as a database file, leaks into it.
func TestPool_childDescriptors(t *testing.T) {
	db, err := os.Create(filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A descriptor the parent inherited without close-on-exec (from a
	// shell or supervisor) is passed on by exec; the child closes it.
	inherited, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer inherited.Close()
	if _, err := unix.FcntlInt(inherited.Fd(), unix.F_SETFD, 0); err != nil {
		t.Fatal(err)
	}
	p := startPool(t, prefork.Config{Min: 1, Max: 1})
	res := do(t, p, prefork.Job{ID: 1, Name: "fds"})
	if res.Outcome != prefork.Failed {
		t.Fatalf("fds: %v %v", res.Outcome, res.Err)
	}
	sockets := 0
	seen := map[int]bool{}
	for line := range strings.Lines(res.Err.Error()) {
		num, target, _ := strings.Cut(strings.TrimSpace(line), " ")
		fd, _ := strconv.Atoi(num)
		seen[fd] = true
		switch {
		case fd <= 2:
			// stdin and stdout are /dev/null; stderr is the pool's pipe.
		case strings.HasPrefix(target, "socket:"):
			sockets++
			if fd != 3 {
				t.Errorf("socket at fd %d, want it only at 3", fd)
			}
		case strings.HasPrefix(target, "anon_inode:"), strings.HasPrefix(target, "/sys/fs/cgroup/"):
			// the Go runtime's epoll, eventfd and CPU limit files
		case strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd"):
			// the listing itself
		default:
			t.Errorf("fd %d -> %s is open in the child; want only 0-2, the socket and the runtime's own", fd, target)
		}
		if target == db.Name() {
			t.Errorf("the parent's %s leaked into the child as fd %d", db.Name(), fd)
		}
	}
	if sockets != 1 || !seen[0] || !seen[1] || !seen[2] {
		t.Errorf("child fds:\n%s\nwant 0, 1, 2 and one socket at 3", res.Err)
	}
}

// Recycling: MaxTasksPerProc and MaxRSS retire a child after its job.
func TestPool_recycle(t *testing.T) {
	t.Run("MaxTasksPerProc", func(t *testing.T) {
		p := startPool(t, prefork.Config{Min: 1, Max: 1, MaxTasksPerProc: 3})
		pids := map[int]int{}
		for i := range 9 {
			res := do(t, p, prefork.Job{ID: int64(i), Name: "noop"})
			if res.Outcome != prefork.Done {
				t.Fatalf("noop: %v %v", res.Outcome, res.Err)
			}
			pids[res.PID]++
		}
		if len(pids) != 3 {
			t.Errorf("jobs per pid = %v, want 3 children with 3 jobs each", pids)
		}
		for pid, n := range pids {
			if n != 3 {
				t.Errorf("pid %d ran %d jobs, want 3", pid, n)
			}
		}
		if s := p.Snapshot(); s.Deaths != 0 || s.Retired < 2 {
			t.Errorf("deaths, retired = %d, %d; want 0, at least 2", s.Deaths, s.Retired)
		}
	})
	t.Run("MaxRSS", func(t *testing.T) {
		// Measure a child before and after one job (the race detector's
		// shadow memory makes both larger), then set the limit between
		// the second and third job's size.
		m := startPool(t, prefork.Config{Min: 1, Max: 1})
		waitFor(t, "an idle child", func() bool { return countState(m.Snapshot(), prefork.Idle) == 1 })
		base := m.Snapshot().Procs[0].RSSBytes
		do(t, m, prefork.Job{Name: "alloc50"})
		grow := m.Snapshot().Procs[0].RSSBytes - base
		if grow < 40<<20 {
			t.Fatalf("rss grew by %d bytes after allocating 50 MB, want at least 40 MB", grow)
		}
		p := startPool(t, prefork.Config{Min: 1, Max: 1, MaxRSS: base + grow*5/2})
		var pids []int
		for i := range 6 {
			res := do(t, p, prefork.Job{ID: int64(i), Name: "alloc50"})
			if res.Outcome != prefork.Done {
				t.Fatalf("alloc50: %v %v", res.Outcome, res.Err)
			}
			pids = append(pids, res.PID)
		}
		// After its third 50 MB a child is over the limit and retires, so
		// every child runs three jobs.
		if pids[0] != pids[2] || pids[2] == pids[3] || pids[3] != pids[5] {
			t.Errorf("pids = %v, want a new child after every third job", pids)
		}
	})
}

// Min children start before any job; more start while jobs wait, up to
// Max; idle ones above Min retire after Idle.
func TestPool_minMaxIdle(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 3, Idle: 300 * time.Millisecond, StartRate: 1000})
	waitFor(t, "the minimum of 1 idle child", func() bool {
		s := p.Snapshot()
		return len(s.Procs) == 1 && s.Procs[0].State == prefork.Idle
	})
	gate := filepath.Join(t.TempDir(), "gate")
	args, _ := json.Marshal(map[string]string{"Path": gate})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			res, err := p.Do(context.Background(), prefork.Job{ID: int64(i), Name: "untilfile", Args: args})
			if err != nil || res.Outcome != prefork.Done {
				t.Errorf("untilfile: %v %v %v", res.Outcome, res.Err, err)
			}
		})
	}
	// Six jobs: more children start, up to Max, and three jobs wait.
	waitFor(t, "3 busy children and 3 jobs waiting", func() bool {
		s := p.Snapshot()
		return countState(s, prefork.Busy) == 3 && s.Waiting == 3
	})
	if s := p.Snapshot(); len(s.Procs) != 3 {
		t.Errorf("%d children, want Max 3", len(s.Procs))
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	waitFor(t, "idle children to retire down to Min 1", func() bool {
		s := p.Snapshot()
		return len(s.Procs) == 1 && s.Procs[0].State == prefork.Idle
	})
}

// Shutdown with jobs running: they finish in parallel under one deadline;
// then TERM, then KILL, to all at once; nothing is left.
func TestPool_Shutdown(t *testing.T) {
	t.Run("drain", func(t *testing.T) {
		p := startPool(t, prefork.Config{Min: 3, Max: 3})
		waitFor(t, "3 idle children", func() bool { return countState(p.Snapshot(), prefork.Idle) == 3 })
		gate := filepath.Join(t.TempDir(), "gate")
		args, _ := json.Marshal(map[string]string{"Path": gate})
		results := make(chan prefork.Result, 3)
		for i := range 3 {
			go func() {
				res, _ := p.Do(context.Background(), prefork.Job{ID: int64(i), Name: "untilfile", Args: args})
				results <- res
			}()
		}
		waitFor(t, "3 busy children", func() bool { return countState(p.Snapshot(), prefork.Busy) == 3 })
		pids := pidsOf(p.Snapshot())
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		type shut struct {
			st  prefork.ShutdownStats
			err error
		}
		done := make(chan shut, 1)
		go func() {
			st, err := p.Shutdown(ctx)
			done <- shut{st, err}
		}()
		// Intake stops at once, while the three jobs still run.
		waitFor(t, "Do to refuse work", func() bool {
			_, err := p.Do(context.Background(), prefork.Job{Name: "noop"})
			return errors.Is(err, prefork.ErrClosed)
		})
		if n := countState(p.Snapshot(), prefork.Busy); n != 3 {
			t.Errorf("%d busy children after Shutdown began, want the 3 still running their jobs", n)
		}
		// All three finish together: they drain in parallel.
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		sh := <-done
		if sh.err != nil {
			t.Fatalf("Shutdown: %v", sh.err)
		}
		if sh.st.Drained != 3 || sh.st.Terminated != 0 {
			t.Errorf("stats = %+v, want 3 drained, none terminated", sh.st)
		}
		for range 3 {
			if res := <-results; res.Outcome != prefork.Done {
				t.Errorf("drained job: %v %v, want done", res.Outcome, res.Err)
			}
		}
		for _, pid := range pids {
			if !reaped(pid) {
				t.Errorf("child %d still there (or a zombie) after Shutdown", pid)
			}
		}
	})
	t.Run("deadline", func(t *testing.T) {
		p := startPool(t, prefork.Config{Min: 2, Max: 2, KillWait: 2 * time.Second})
		results := make(chan prefork.Result, 2)
		for i, task := range []string{"wait", "block"} {
			go func() {
				res, _ := p.Do(context.Background(), prefork.Job{ID: int64(i), Name: task})
				results <- res
			}()
		}
		waitFor(t, "2 busy children", func() bool { return countState(p.Snapshot(), prefork.Busy) == 2 })
		pids := pidsOf(p.Snapshot())
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		st, err := p.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want the deadline", err)
		}
		// "wait" exits on SIGTERM (its context is cancelled); "block"
		// ignores it and needs SIGKILL.
		if st.Terminated != 2 || st.Killed != 1 {
			t.Errorf("stats = %+v, want 2 terminated, 1 killed", st)
		}
		// "wait" sees its context cancelled by SIGTERM and reports that
		// before it exits; "block" is killed.
		want := map[prefork.Outcome]error{prefork.Failed: context.Canceled, prefork.Killed: prefork.ErrStopped}
		for range 2 {
			res := <-results
			if is, ok := want[res.Outcome]; !ok || !errors.Is(res.Err, is) {
				var ee *prefork.ExitError
				errors.As(res.Err, &ee)
				t.Errorf("cut job: %v %v, want failed with context.Canceled or killed with ErrStopped (%+v)", res.Outcome, res.Err, ee)
			}
			delete(want, res.Outcome)
		}
		for _, pid := range pids {
			if !reaped(pid) {
				t.Errorf("child %d still there (or a zombie) after Shutdown", pid)
			}
		}
	})
	// Idle children at a deadline already past (the daemon's, after its
	// foreman drained the tasks) are asked to exit, not terminated: no
	// job was cut short.
	t.Run("idle at a past deadline", func(t *testing.T) {
		p := startPool(t, prefork.Config{Min: 2, Max: 2})
		waitFor(t, "2 idle children", func() bool { return countState(p.Snapshot(), prefork.Idle) == 2 })
		pids := pidsOf(p.Snapshot())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		st, err := p.Shutdown(ctx)
		if err != nil || st.Terminated != 0 || st.Killed != 0 {
			t.Errorf("Shutdown = %+v, %v; want nothing terminated and no error", st, err)
		}
		for _, pid := range pids {
			if !reaped(pid) {
				t.Errorf("child %d still there (or a zombie) after Shutdown", pid)
			}
		}
	})
}

func pidsOf(s prefork.Snapshot) []int {
	var pids []int
	for _, c := range s.Procs {
		pids = append(pids, c.PID)
	}
	return pids
}

// kill -9 of the parent: PR_SET_PDEATHSIG takes every child with it.
func TestPool_parentKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a parent process")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envParent+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	var pids []int
	select {
	case s := <-line:
		f := strings.Fields(s)
		if len(f) != 3 || f[0] != "pids" {
			t.Fatalf("parent printed %q, want pids and two numbers", s)
		}
		for _, x := range f[1:] {
			pid, _ := strconv.Atoi(x)
			pids = append(pids, pid)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("parent did not print its children's pids within 20s")
	}
	for _, pid := range pids {
		if gone(pid) {
			t.Fatalf("child %d gone before the parent was killed", pid)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for _, pid := range pids {
		waitFor(t, "child "+strconv.Itoa(pid)+" to die with its parent", func() bool { return gone(pid) })
	}
}

func TestNew_badConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  prefork.Config
		want string
	}{
		{"no command", prefork.Config{}, "Command is required"},
		{"max below min", prefork.Config{Command: command, Min: 3, Max: 2}, "Max (2) is less than Min (3)"},
		{"negative max", prefork.Config{Command: command, Max: -1}, "Max is -1"},
		{"negative grace", prefork.Config{Command: command, Grace: -time.Second}, "Grace is -1s"},
		{"negative max tasks", prefork.Config{Command: command, MaxTasksPerProc: -1}, "MaxTasksPerProc is -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := prefork.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A command that cannot start is retried with backoff, and the pool stays
// up; Shutdown still returns.
func TestPool_startFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	p := startPool(t, prefork.Config{Min: 1, Max: 1, Command: func() *exec.Cmd { return exec.Command(missing) }})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := p.Do(ctx, prefork.Job{Name: "noop"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Do with no child able to start: %v, want the context's deadline", err)
	}
	if s := p.Snapshot(); s.Starts != 0 || len(s.Procs) != 0 {
		t.Errorf("snapshot = %+v, want no children", s)
	}
}

// The child side refuses to run when not started by a pool.
func TestServeChild_notAChild(t *testing.T) {
	t.Setenv(prefork.EnvFD, "")
	err := prefork.ServeChild(context.Background(), tasks)
	if err == nil || !strings.Contains(err.Error(), "started by the process pool") {
		t.Errorf("ServeChild: %v, want an error saying it is started by the pool", err)
	}
}

// A child that never says it is ready is killed after StartTimeout, and
// replaced with backoff.
func TestPool_startTimeout(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	p := startPool(t, prefork.Config{Min: 1, Max: 1, StartTimeout: 100 * time.Millisecond, KillWait: 100 * time.Millisecond,
		Command: func() *exec.Cmd { return exec.Command(sleep, "60") }})
	waitFor(t, "two children killed for not becoming ready", func() bool {
		s := p.Snapshot()
		return s.Kills >= 2 && s.Starts >= 2
	})
	if s := p.Snapshot(); s.Deaths != 0 || countState(s, prefork.Idle) != 0 {
		t.Errorf("snapshot = %+v, want no deaths (they were killed) and no idle child", s)
	}
}

// A job whose caller's context carries the task's deadline (as the
// foreman's does, set when it claimed the task) is reported as timed out
// when its child is killed, not as a cancel it ignored.
func TestPool_Do_deadlineOnContext(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1, Grace: 50 * time.Millisecond, KillWait: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := p.Do(ctx, prefork.Job{ID: 1, Name: "block"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != prefork.TimedOut || !errors.Is(res.Err, prefork.ErrTimedOut) {
		t.Errorf("result = %v %v, want timed out", res.Outcome, res.Err)
	}
}

// Recycle (a reload): the idle child is replaced at once, the busy one
// after its job, which completes.
func TestPool_Recycle(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 2, Max: 2})
	waitFor(t, "2 idle children", func() bool { return countState(p.Snapshot(), prefork.Idle) == 2 })
	old := pidsOf(p.Snapshot())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan prefork.Result, 1)
	go func() {
		res, _ := p.Do(ctx, prefork.Job{ID: 1, Name: "wait"})
		got <- res
	}()
	waitFor(t, "a busy child", func() bool { return countState(p.Snapshot(), prefork.Busy) == 1 })
	p.Recycle()
	isOld := func(pid int) bool { return pid == old[0] || pid == old[1] }
	waitFor(t, "a new idle child beside the busy old one", func() bool {
		s := p.Snapshot()
		for _, c := range s.Procs {
			if c.State == prefork.Idle && !isOld(c.PID) {
				return countState(s, prefork.Busy) == 1
			}
		}
		return false
	})
	cancel()
	res := <-got
	if !errors.Is(res.Err, context.Canceled) || !isOld(res.PID) {
		t.Errorf("the running job: %v %v on %d, want it to finish on its old child", res.Outcome, res.Err, res.PID)
	}
	waitFor(t, "2 new idle children", func() bool {
		s := p.Snapshot()
		return len(s.Procs) == 2 && countState(s, prefork.Idle) == 2 && !isOld(s.Procs[0].PID) && !isOld(s.Procs[1].PID)
	})
	if s := p.Snapshot(); s.Deaths != 0 || s.Kills != 0 {
		t.Errorf("deaths, kills = %d, %d; want none", s.Deaths, s.Kills)
	}
}

func TestPool_SetLimits(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1})
	waitFor(t, "1 idle child", func() bool { return countState(p.Snapshot(), prefork.Idle) == 1 })
	if err := p.SetLimits(3, 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 idle children", func() bool { return countState(p.Snapshot(), prefork.Idle) == 3 })
	if err := p.SetLimits(1, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "back to 1 child", func() bool { return len(p.Snapshot().Procs) == 1 })
	if err := p.SetLimits(2, 1); err == nil || !strings.Contains(err.Error(), "less than Min") {
		t.Errorf("SetLimits(2, 1): %v, want an error saying Max is less than Min", err)
	}
}

// The snapshot's JSON is what status --json shows under procs.
func TestPool_Snapshot_json(t *testing.T) {
	p := startPool(t, prefork.Config{Min: 1, Max: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan prefork.Result, 1)
	go func() {
		res, _ := p.Do(ctx, prefork.Job{ID: 42, Name: "wait"})
		got <- res
	}()
	waitFor(t, "job 42 to run", func() bool { return countState(p.Snapshot(), prefork.Busy) == 1 })
	b, err := json.Marshal(p.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Procs []map[string]any `json:"procs"`
		Kills *int64           `json:"kills"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Procs) != 1 || v.Kills == nil {
		t.Fatalf("snapshot JSON %s: want one proc and the counters", b)
	}
	pr := v.Procs[0]
	for key, want := range map[string]any{"state": "busy", "task_id": float64(42), "task": "wait", "tasks_done": float64(0)} {
		if pr[key] != want {
			t.Errorf("procs[0].%s = %v, want %v (JSON %s)", key, pr[key], want, b)
		}
	}
	if rss, _ := pr["rss_bytes"].(float64); rss <= 0 {
		t.Errorf("procs[0].rss_bytes = %v, want more than 0", pr["rss_bytes"])
	}
	if pid, _ := pr["pid"].(float64); pid <= 0 {
		t.Errorf("procs[0].pid = %v, want the child's pid", pr["pid"])
	}
	cancel()
	<-got
}

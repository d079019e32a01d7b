package prefork_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/snappea/snappea/prefork"
	"github.com/snappea/snappea/registry"
)

// The test binary is also the child: started by a pool (EnvFD is set), it
// serves the handlers below; started with envParent, it is a parent
// process that runs a pool, for the test that kills a parent with -9.
const envParent = "PREFORK_TEST_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(prefork.EnvFD) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := prefork.ServeChild(ctx, tasks)
		stop()
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(envParent) != "" {
		os.Exit(runParent())
	}
	goleak.VerifyTestMain(m)
}

var tasks = registry.New()

type none struct{}

// leak keeps what alloc50 allocates, as a leaking handler would.
var leak [][]byte

func init() {
	reg := func(name string, fn func(ctx context.Context) error) {
		registry.Register(tasks, name, func(ctx context.Context, _ none) error { return fn(ctx) })
	}
	reg("noop", func(context.Context) error { return nil })
	reg("sleep100", func(ctx context.Context) error {
		select {
		case <-time.After(100 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	// untilfile holds its child until the test creates the file: a job
	// that finishes when the test says, whatever the machine's load.
	registry.Register(tasks, "untilfile", func(ctx context.Context, a struct{ Path string }) error {
		for {
			if _, err := os.Stat(a.Path); err == nil {
				return nil
			}
			select {
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	reg("fail", func(context.Context) error { return errors.New("smtp down") })
	// whoami fails with what JobFrom says, for the test to read.
	reg("whoami", func(ctx context.Context) error {
		j, ok := prefork.JobFrom(ctx)
		return fmt.Errorf("ok=%v id=%d name=%s attempt=%d/%d timeout=%v args=%d pid=%d", ok, j.ID, j.Name, j.Attempt, j.MaxAttempts, j.Timeout, len(j.Args), os.Getpid())
	})
	reg("exit3", func(context.Context) error { os.Exit(3); return nil })
	reg("panic", func(context.Context) error { panic("kaboom") })
	reg("gopanic", func(context.Context) error {
		// A panic on another goroutine cannot be recovered: it ends the process.
		done := make(chan struct{})
		go func() { panic("kaboom in a goroutine") }()
		<-done
		return nil
	})
	reg("segv", func(context.Context) error {
		syscall.Kill(os.Getpid(), syscall.SIGSEGV)
		time.Sleep(time.Minute)
		return nil
	})
	reg("block", func(context.Context) error {
		for { // ignores its context
			time.Sleep(time.Hour)
		}
	})
	reg("wait", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	reg("alloc50", func(context.Context) error {
		b := make([]byte, 50<<20)
		for i := range b {
			b[i] = 1 // touch every page: resident, not just reserved
		}
		leak = append(leak, b)
		return nil
	})
	reg("fds", func(context.Context) error {
		// The outcome is the list of open descriptors, as an error text.
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			return err
		}
		var lines []string
		for _, e := range ents {
			target, err := os.Readlink("/proc/self/fd/" + e.Name())
			if err != nil {
				continue // the directory's own descriptor, closed by now
			}
			lines = append(lines, e.Name()+" "+target)
		}
		return errors.New(strings.Join(lines, "\n"))
	})
}

// command starts this test binary as a child.
func command() *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(exe)
	// The race detector sleeps a second at exit by default.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	return cmd
}

// startPool runs a pool with cfg (Command filled in) until the test ends.
func startPool(t testing.TB, cfg prefork.Config) *prefork.Pool {
	t.Helper()
	if cfg.Command == nil {
		cfg.Command = command
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := prefork.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ran := make(chan error, 1)
	go func() { ran <- p.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return 15s after Shutdown")
		}
	})
	return p
}

// waitFor polls cond until it holds, failing the test after 20s with what.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countState(s prefork.Snapshot, st prefork.State) int {
	n := 0
	for _, p := range s.Procs {
		if p.State == st {
			n++
		}
	}
	return n
}

// reaped reports whether this process's child pid is gone and reaped: no
// zombie left.
func reaped(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return os.IsNotExist(err)
}

// gone reports whether pid has exited (no such process, or a zombie that
// its new parent has not reaped yet).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// runParent is a parent process: it runs a pool of two, starts a job on
// one child that blocks, prints the children's pids and waits to be killed.
func runParent() int {
	p, err := prefork.New(prefork.Config{Command: command, Min: 2, Max: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	go p.Run(context.Background())
	go p.Do(context.Background(), prefork.Job{ID: 1, Name: "block"})
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.Snapshot()
		if countState(s, prefork.Busy) == 1 && countState(s, prefork.Idle) == 1 {
			var pids []string
			for _, c := range s.Procs {
				pids = append(pids, strconv.Itoa(c.PID))
			}
			fmt.Println("pids", strings.Join(pids, " "))
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("error: children not ready after 20s")
			return 1
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(time.Hour) // until killed
	return 0
}

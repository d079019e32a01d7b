package pidfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
)

// deadline bounds every wait on the helper process.
const deadline = 10 * time.Second

// paths returns a lock path in a directory that does not exist yet, and a
// pidfile path.
func paths(tb testing.TB) (lockPath, pidPath string) {
	tb.Helper()
	dir := tb.TempDir()
	return filepath.Join(dir, "run", "snappea", "lock"), filepath.Join(dir, "snappea.pid")
}

func mustAcquire(tb testing.TB, lockPath, pidPath string) *Lock {
	tb.Helper()
	l, err := Acquire(lockPath, pidPath)
	if err != nil {
		tb.Fatalf("Acquire: %v", err)
	}
	tb.Cleanup(func() { l.Release() })
	return l
}

// fileContent reads path, failing the test if it cannot.
func fileContent(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func wantRunning(tb testing.TB, lockPath string, want int) {
	tb.Helper()
	got, err := Running(lockPath)
	if err != nil || got != want {
		tb.Errorf("Running = %d, %v; want %d, nil", got, err, want)
	}
}

func wantMode(tb testing.TB, path string, want os.FileMode) {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		tb.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestAcquire_Release(t *testing.T) {
	lockPath, pidPath := paths(t)
	me := strconv.Itoa(os.Getpid()) + "\n"

	l := mustAcquire(t, lockPath, pidPath)
	if got := fileContent(t, lockPath); got != me {
		t.Errorf("lock file = %q, want %q", got, me)
	}
	if got := fileContent(t, pidPath); got != me {
		t.Errorf("pidfile = %q, want %q", got, me)
	}
	wantMode(t, lockPath, 0o600)
	wantMode(t, filepath.Dir(lockPath), 0o700)
	wantMode(t, pidPath, 0o644)
	wantRunning(t, lockPath, os.Getpid())
	if l.File() == nil {
		t.Error("File = nil while held")
	}

	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := os.Stat(pidPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile after Release: %v, want it removed", err)
	}
	if _, err := os.Stat(lockPath); err != nil {
		t.Errorf("lock file after Release: %v, want it kept", err)
	}
	wantRunning(t, lockPath, 0)
	if l.File() != nil {
		t.Error("File != nil after Release")
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}

	// Free again.
	mustAcquire(t, lockPath, pidPath)
}

func TestAcquire_SameProcess(t *testing.T) {
	// flock locks belong to open file descriptions, so a second open in the
	// same process conflicts like another process would.
	lockPath, pidPath := paths(t)
	mustAcquire(t, lockPath, pidPath)
	otherPid := filepath.Join(t.TempDir(), "other.pid")

	l, err := Acquire(lockPath, otherPid)
	if err == nil {
		l.Release()
		t.Fatal("second Acquire succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v does not match ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("error %v is not a *LockedError", err)
	}
	if le.PID != os.Getpid() || le.Path != lockPath {
		t.Errorf("LockedError = %+v, want PID %d, Path %s", le, os.Getpid(), lockPath)
	}
	if _, err := os.Stat(otherPid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile of the failed Acquire: %v, want none", err)
	}
	wantRunning(t, lockPath, os.Getpid())
}

func TestLockedError_Error(t *testing.T) {
	tests := []struct {
		err  LockedError
		want string
	}{
		{LockedError{Path: "/run/snappea/lock", PID: 42}, "another snappea daemon is running on /run/snappea/lock (pid 42)"},
		{LockedError{Path: "/run/snappea/lock"}, "another snappea daemon is running on /run/snappea/lock (pid unknown)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(&tt.err, ErrLocked) {
			t.Errorf("%v does not match ErrLocked", &tt.err)
		}
	}
}

func TestRunning_NoLockFile(t *testing.T) {
	wantRunning(t, filepath.Join(t.TempDir(), "missing", "lock"), 0)
}

func TestRunning_HeldWithoutPID(t *testing.T) {
	lockPath, _ := paths(t)
	l := mustAcquire(t, lockPath, "")
	if err := l.File().Truncate(0); err != nil {
		t.Fatal(err)
	}
	pid, err := Running(lockPath)
	var le *LockedError
	if pid != 0 || !errors.As(err, &le) || le.PID != 0 {
		t.Errorf("Running = %d, %v; want 0 and a *LockedError with no pid", pid, err)
	}
}

func TestAcquire_Stale(t *testing.T) {
	// What kill -9 leaves behind: files naming a pid that is gone.
	lockPath, pidPath := paths(t)
	stale := "2147483646\n"
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{lockPath, pidPath} {
		if err := os.WriteFile(p, []byte(stale), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wantRunning(t, lockPath, 0)
	mustAcquire(t, lockPath, pidPath)
	me := strconv.Itoa(os.Getpid()) + "\n"
	if got := fileContent(t, lockPath); got != me {
		t.Errorf("lock file = %q, want %q", got, me)
	}
	if got := fileContent(t, pidPath); got != me {
		t.Errorf("pidfile = %q, want %q", got, me)
	}
}

func TestAcquire_NoPidfile(t *testing.T) {
	lockPath, _ := paths(t)
	l := mustAcquire(t, lockPath, "")
	wantRunning(t, lockPath, os.Getpid())
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if got := fileContent(t, lockPath); got != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("lock file = %q", got)
	}
}

func TestAcquire_Errors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("lock path under a file", func(t *testing.T) {
		lockPath := filepath.Join(file, "lock")
		_, err := Acquire(lockPath, "")
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("Acquire error = %v, want one naming %s", err, file)
		}
	})
	t.Run("pidfile under a file", func(t *testing.T) {
		lockPath, _ := paths(t)
		pidPath := filepath.Join(file, "snappea.pid")
		_, err := Acquire(lockPath, pidPath)
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("Acquire error = %v, want one naming %s", err, file)
		}
		// The failed Acquire let go of the lock.
		wantRunning(t, lockPath, 0)
	})
}

func TestRelease_PidfileRewritten(t *testing.T) {
	lockPath, pidPath := paths(t)
	l := mustAcquire(t, lockPath, pidPath)
	if err := os.WriteFile(pidPath, []byte("12345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if got := fileContent(t, pidPath); got != "12345\n" {
		t.Errorf("pidfile after Release = %q, want another daemon's pidfile left alone", got)
	}
}

func TestAcquire_WhileRunningProbes(t *testing.T) {
	// Running's brief shared lock must not make Acquire report a daemon.
	lockPath, _ := paths(t)
	mustAcquire(t, lockPath, "").Release()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := Running(lockPath); err != nil {
				var le *LockedError
				if !errors.As(err, &le) { // held by the loop below, pid being written
					t.Errorf("Running: %v", err)
					return
				}
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 50 {
		l, err := Acquire(lockPath, "")
		if err != nil {
			t.Fatalf("Acquire during Running probes: %v", err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHelperProcess is not a test: TestAcquire_OtherProcess runs the test
// binary as a second process that holds the lock.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("PIDFILE_HELPER") != "1" {
		t.Skip("helper process for TestAcquire_OtherProcess")
	}
	l, err := Acquire(os.Getenv("PIDFILE_LOCK"), os.Getenv("PIDFILE_PID"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin or kills us
	l.Release()
	os.Exit(0)
}

func TestAcquire_OtherProcess(t *testing.T) {
	lockPath, pidPath := paths(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "PIDFILE_HELPER=1", "PIDFILE_LOCK="+lockPath, "PIDFILE_PID="+pidPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			stdin.Close()
			cmd.Process.Kill()
			cmd.Wait()
		}
	})

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s != "locked\n" {
			cmd.Process.Kill()
			cmd.Wait()
			waited = true
			t.Fatalf("helper said %q, want %q; stderr: %s", s, "locked\n", stderr.String())
		}
	case <-time.After(deadline):
		t.Fatalf("helper did not lock within %v", deadline)
	}
	child := cmd.Process.Pid

	_, err = Acquire(lockPath, pidPath)
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.PID != child {
		t.Fatalf("Acquire while the helper holds the lock = %v, want a *LockedError with pid %d", err, child)
	}
	wantRunning(t, lockPath, child)
	if got, want := fileContent(t, pidPath), strconv.Itoa(child)+"\n"; got != want {
		t.Errorf("pidfile = %q, want %q", got, want)
	}

	// kill -9: the helper cannot clean up; the kernel drops its lock.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	waited = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper exit: %v, want killed by SIGKILL", err)
	}
	wantRunning(t, lockPath, 0)
	mustAcquire(t, lockPath, pidPath)
	if got, want := fileContent(t, pidPath), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("pidfile after taking over = %q, want %q", got, want)
	}
}

func TestInherit(t *testing.T) {
	lockPath, pidPath := paths(t)
	l := mustAcquire(t, lockPath, pidPath)
	// A dup shares the open file description, and so the lock, as a
	// descriptor that crossed exec does.
	fd, err := unix.Dup(int(l.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	newPid := filepath.Join(t.TempDir(), "new.pid")
	l2, err := Inherit(uintptr(fd), lockPath, newPid)
	if err != nil {
		unix.Close(fd)
		t.Fatalf("Inherit: %v", err)
	}
	if got, want := fileContent(t, newPid), strconv.Itoa(os.Getpid())+"\n"; got != want {
		t.Errorf("pidfile = %q, want %q", got, want)
	}
	flags, err := unix.FcntlInt(l2.File().Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("inherited descriptor flags = %#x, %v; want close-on-exec", flags, err)
	}
	wantRunning(t, lockPath, os.Getpid())

	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	wantRunning(t, lockPath, 0)
	if err := l.Release(); err != nil {
		t.Errorf("Release of the original: %v", err)
	}
}

func TestInherit_Errors(t *testing.T) {
	lockPath, _ := paths(t)
	l := mustAcquire(t, lockPath, "")

	other, err := os.OpenFile(filepath.Join(t.TempDir(), "other"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// Another open of the lock file: the lock is held, but not through it.
	second, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	readOnly, err := os.Open(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer readOnly.Close()

	tests := []struct {
		name     string
		fd       uintptr
		wantLock bool
		want     string
	}{
		{"another file", other.Fd(), false, "is another file"},
		{"not holding the lock", second.Fd(), true, "(pid " + strconv.Itoa(os.Getpid()) + ")"},
		{"read-only", readOnly.Fd(), false, "not open for reading and writing"},
		{"closed descriptor", 1 << 20, false, "bad file descriptor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l2, err := Inherit(tt.fd, lockPath, "")
			if err == nil {
				l2.Release()
				t.Fatal("Inherit succeeded")
			}
			if errors.Is(err, ErrLocked) != tt.wantLock || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Inherit error = %v, want one containing %q (matching ErrLocked: %v)", err, tt.want, tt.wantLock)
			}
			if tt.fd < 1<<20 {
				// Left untouched: still open.
				if _, err := unix.FcntlInt(tt.fd, unix.F_GETFD, 0); err != nil {
					t.Errorf("descriptor after a failed Inherit: %v", err)
				}
			}
		})
	}
	wantRunning(t, lockPath, os.Getpid())
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

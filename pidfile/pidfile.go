package pidfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is matched (errors.Is) by the error Acquire returns when another
// process holds the lock.
var ErrLocked = errors.New("another snappea daemon is running")

// LockedError says who holds the lock. It matches ErrLocked.
type LockedError struct {
	Path string // the lock file
	PID  int    // the holder's pid; 0 when the lock file names none
}

// Error reports the lock file and the holder's pid, for example
// "another snappea daemon is running on /run/snappea/lock (pid 42)".
func (e *LockedError) Error() string {
	pid := "pid unknown"
	if e.PID != 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("%v on %s (%s)", ErrLocked, e.Path, pid)
}

// Is reports whether target is ErrLocked.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Running probes with a brief shared flock, so an Acquire that coincides with
// a probe sees the lock held for a moment. Acquire retries that many times,
// lockRetryDelay apart (about 50ms in all), before it believes a daemon is
// running: a status check must not make a start fail.
const (
	lockAttempts   = 6
	lockRetryDelay = 10 * time.Millisecond
)

// Lock is the held single-instance lock. Release it when the daemon stops;
// if the process dies instead, the kernel releases it.
type Lock struct {
	mu      sync.Mutex
	f       *os.File // nil once released
	path    string
	pidPath string
	pid     int
}

// Acquire takes the single-instance lock on lockPath and records the current
// pid in it and, unless pidPath is "", in the pidfile pidPath.
//
// It creates lockPath's directory (mode 0700) and the lock file (mode 0600)
// if missing and takes an exclusive, non-blocking flock on it. The kernel
// releases a flock when its process dies, so a stale lock file or pidfile
// left by kill -9 never blocks a start. The pid is written into the lock
// file, so that it always names its holder, and into pidPath atomically
// (a temporary file in the same directory, renamed; mode 0644; the
// directory is created with mode 0755 if missing).
//
// When another process holds the lock, Acquire returns a *LockedError,
// which matches ErrLocked, with the pid read from the lock file.
func Acquire(lockPath, pidPath string) (*Lock, error) {
	if lockPath == "" {
		return nil, errors.New("acquire lock: lock path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		return nil, fmt.Errorf("acquire lock: create its directory: %w", err)
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("acquire lock: %w", err)
	}
	if err := lockRetry(f); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Path: lockPath, PID: readPID(f)}
		}
		return nil, fmt.Errorf("acquire lock: flock %s: %w", lockPath, err)
	}
	l := &Lock{f: f, path: lockPath, pidPath: pidPath, pid: os.Getpid()}
	if err := l.writePID(); err != nil {
		l.unlockClose()
		return nil, fmt.Errorf("acquire lock: %w", err)
	}
	return l, nil
}

// Inherit adopts a lock file descriptor passed across exec by a process that
// held the lock, typically the daemon itself before it re-executed (see
// File). It verifies that fd refers to lockPath and that the lock is this
// process's, rewrites the pid in the lock file and in pidPath as Acquire
// does, and returns the Lock.
//
// The check takes flock(LOCK_EX|LOCK_NB) on fd again: flock locks belong to
// the open file description, which crossed exec with fd, so this succeeds at
// once when the lock came along and fails with a *LockedError when another
// process holds it. Inherit sets close-on-exec on fd again, so the lock does
// not leak into the daemon's own children.
//
// If a check fails, fd is left open and untouched. If writing the pid
// fails, the lock is released and fd closed.
func Inherit(fd uintptr, lockPath, pidPath string) (*Lock, error) {
	var got, want unix.Stat_t
	if err := unix.Fstat(int(fd), &got); err != nil {
		return nil, fmt.Errorf("inherit lock %s: descriptor %d: %w", lockPath, fd, err)
	}
	if err := unix.Stat(lockPath, &want); err != nil {
		return nil, fmt.Errorf("inherit lock: %w", &fs.PathError{Op: "stat", Path: lockPath, Err: err})
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		return nil, fmt.Errorf("inherit lock %s: descriptor %d is another file", lockPath, fd)
	}
	flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("inherit lock %s: descriptor %d: %w", lockPath, fd, err)
	}
	if flags&unix.O_ACCMODE != unix.O_RDWR {
		return nil, fmt.Errorf("inherit lock %s: descriptor %d is not open for reading and writing", lockPath, fd)
	}
	if err := lockRetryFd(int(fd)); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &LockedError{Path: lockPath, PID: readPIDFd(int(fd))}
		}
		return nil, fmt.Errorf("inherit lock: flock %s: %w", lockPath, err)
	}
	unix.CloseOnExec(int(fd))
	l := &Lock{f: os.NewFile(fd, lockPath), path: lockPath, pidPath: pidPath, pid: os.Getpid()}
	if err := l.writePID(); err != nil {
		l.unlockClose()
		return nil, fmt.Errorf("inherit lock: %w", err)
	}
	return l, nil
}

// File returns the open lock file, so that a daemon that re-executes itself
// can pass the descriptor on; the new program adopts it with Inherit.
//
// The file is close-on-exec, as Go opens every file. Passing it in
// os/exec's Cmd.ExtraFiles clears that in the child; with syscall.Exec,
// clear it first (fcntl F_SETFD 0). Do not close the file yourself, and do
// not call Release in a process that handed the descriptor to another one:
// the lock belongs to the open file description both now share, and Release
// would unlock it for the new holder; let that process exit instead.
// File returns nil after Release.
func (l *Lock) File() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

// Path returns the lock file's path, as given to Acquire or Inherit.
func (l *Lock) Path() string { return l.path }

// Release removes the pidfile if it still names this process, unlocks the
// lock file and closes it. The lock file itself stays: see the package
// documentation. Release is idempotent.
func (l *Lock) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	var errs []error
	if l.pidPath != "" {
		// Leave a pidfile another daemon has rewritten since.
		if pid, err := readPIDFile(l.pidPath); err == nil && pid == l.pid {
			if err := os.Remove(l.pidPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove pidfile: %w", err))
			}
		}
	}
	if err := l.unlockClose(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release lock %s: %w", l.path, err)
	}
	return nil
}

// unlockClose unlocks and closes the lock file. The explicit unlock matters
// when a descriptor sharing the lock's open file description lingers
// elsewhere: closing ours alone would not release the lock.
func (l *Lock) unlockClose() error {
	uerr := flockFile(l.f, unix.LOCK_UN)
	if uerr != nil {
		uerr = fmt.Errorf("unlock: %w", uerr)
	}
	cerr := l.f.Close()
	l.f = nil
	return errors.Join(uerr, cerr)
}

// writePID records l.pid in the lock file and in the pidfile.
func (l *Lock) writePID() error {
	b := []byte(strconv.Itoa(l.pid) + "\n")
	// Write, then cut to length, rather than truncate then write: a
	// concurrent Running never finds the file empty, only a longer old pid
	// partly overwritten, and it reads the first line.
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write pid into lock file: %w", err)
	}
	if err := l.f.Truncate(int64(len(b))); err != nil {
		return fmt.Errorf("write pid into lock file: %w", err)
	}
	if l.pidPath == "" {
		return nil
	}
	if err := writeFileAtomic(l.pidPath, b, 0o644); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	return nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory and a rename, so that readers see the old content or the new,
// never a part.
func writeFileAtomic(path string, b []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(perm) // CreateTemp makes 0600
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// Running reports the pid of the process holding the lock on lockPath, or 0
// when none does, including when the lock file does not exist.
//
// It probes with a shared, non-blocking flock, released at once, and reads
// the pid from the lock file when the lock is held. A holder that has not
// written its pid yet yields 0 and a *LockedError with PID 0.
func Running(lockPath string) (pid int, err error) {
	f, err := os.Open(lockPath)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("check lock: %w", err)
	}
	defer f.Close()
	err = flockFile(f, unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		flockFile(f, unix.LOCK_UN)
		return 0, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return 0, fmt.Errorf("check lock: flock %s: %w", lockPath, err)
	}
	if pid := readPID(f); pid != 0 {
		return pid, nil
	}
	return 0, &LockedError{Path: lockPath}
}

// lockRetry takes an exclusive non-blocking flock on f, retrying while it is
// held for up to about 50ms; see lockAttempts.
func lockRetry(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) { err = lockRetryFd(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

func lockRetryFd(fd int) error {
	var err error
	for i := range lockAttempts {
		if i > 0 {
			time.Sleep(lockRetryDelay)
		}
		if err = flock(fd, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
	}
	return err
}

func flockFile(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) { err = flock(int(fd), how) }); cerr != nil {
		return cerr
	}
	return err
}

func flock(fd, how int) error {
	for {
		if err := unix.Flock(fd, how); err != unix.EINTR {
			return err
		}
	}
}

// maxPIDLen bounds what is read of a lock file or pidfile.
const maxPIDLen = 64

// readPID returns the pid on the first line of the lock file, or 0.
func readPID(f *os.File) int {
	b := make([]byte, maxPIDLen)
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return 0
	}
	return parsePID(b[:n])
}

func readPIDFd(fd int) int {
	b := make([]byte, maxPIDLen)
	n, err := unix.Pread(fd, b, 0)
	if err != nil {
		return 0
	}
	return parsePID(b[:n])
}

func readPIDFile(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readPID(f), nil
}

// parsePID parses the first line of b as a positive pid; anything else is 0.
func parsePID(b []byte) int {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || pid < 0 {
		return 0
	}
	return pid
}

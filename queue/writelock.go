package queue

import (
	"errors"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WriteLockSuffix names the file beside the database on which producers
// and the daemon take turns to write: DBPath + WriteLockSuffix.
const WriteLockSuffix = "-writelock"

// writeLock is the turn a Queue takes before each of its write statements
// and transactions: a mutex among its own goroutines, then a flock shared
// with every other process's Queue on the same database.
//
// SQLite alone would make the loser of a collision between processes wait
// in its busy handler, which sleeps 1, 2, 5, 10 ms and more between tries
// (modernc.org/sqlite offers no way to change that): a daemon's claim that
// meets a producer's insert started tasks tens of milliseconds late. The
// flock is retried every few tens of microseconds instead. It only orders
// writers; SQLite's own locking still guarantees correctness, so when the
// lock file cannot be opened (a read-only directory) or the turn does not
// come within the busy timeout, the write goes ahead and SQLite decides, as
// it would without the lock.
type writeLock struct {
	mu   sync.Mutex
	f    *os.File // nil: no cross-process turn-taking
	fd   int
	wait time.Duration
	held bool
}

// openWriteLock opens (creating, mode 0600) the lock file beside dbPath.
func openWriteLock(dbPath string, wait time.Duration) *writeLock {
	l := &writeLock{wait: wait}
	f, err := os.OpenFile(dbPath+WriteLockSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		l.f, l.fd = f, int(f.Fd())
	}
	return l
}

// Lock waits for this process's turn, then for the database's.
func (l *writeLock) Lock() {
	l.mu.Lock()
	if l.f == nil {
		return
	}
	fd := l.fd
	var deadline time.Time
	pause := 20 * time.Microsecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			l.held = true
			return
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(l.wait)
		} else if now.After(deadline) {
			return
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Millisecond)
	}
}

// Unlock gives the turn up.
func (l *writeLock) Unlock() {
	if l.held {
		unix.Flock(l.fd, unix.LOCK_UN)
		l.held = false
	}
	l.mu.Unlock()
}

// close closes the lock file.
func (l *writeLock) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

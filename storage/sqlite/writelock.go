package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/snappea/snappea"
	"golang.org/x/sys/unix"
)

// WriteLockSuffix names the file beside the database on which producers
// and the daemon take turns to write: DBPath + WriteLockSuffix.
const WriteLockSuffix = "-writelock"

// turnPatience is how long a writer waits for the turn while nobody gets
// it and its holder is stopped (SIGSTOP, a debugger): the writer then goes
// ahead under SQLite's own locking. A holder that is not stopped (frozen,
// in a long transaction, or only descheduled on a loaded machine, which
// should not send every writer to SQLite's sleeping busy handler) is given
// turnPatienceRunning. A normal turn lasts microseconds, a large claim a
// millisecond or two, and while other writers keep getting the turn the
// wait goes on (up to the busy timeout): a long queue of quick writers is
// not a stall.
const (
	turnPatience        = 5 * time.Millisecond
	turnPatienceRunning = 50 * time.Millisecond
)

// writeLock is the turn a Queue takes before each of its write statements
// and transactions: a one-slot semaphore among its own goroutines, then a
// flock shared with every other process's Queue on the same database.
//
// SQLite alone would make the loser of a collision between processes wait
// in its busy handler, which sleeps 1, 2, 5, 10 ms and more between tries
// (modernc.org/sqlite offers no way to change that): a daemon's claim that
// meets a producer's insert started tasks tens of milliseconds late. The
// flock is retried every few tens of microseconds instead. It only orders
// writers; SQLite's own locking still guarantees correctness, so when the
// lock file cannot be opened (a read-only directory), or the turn makes no
// progress for turnPatience (see there), the write goes ahead and SQLite
// decides, as it would without the lock; later writes do not wait for that
// holder again. Progress is a counter in the lock file, mapped into memory
// and incremented by every process that takes the turn, beside the pid of
// the last to take it.
//
// Every wait ends: at the caller's context, at the deadline (the busy
// timeout, the total a write may wait), or at once with ErrInsideInTx when
// the goroutine that asks holds the turn already, inside InTx or WriteTx.
type writeLock struct {
	sem   chan struct{} // one slot: this process's turn
	owner atomic.Int64  // goroutine id running InTx's or WriteTx's fn with the turn; 0: none
	wait  time.Duration // the busy timeout
	pid   int64         // ours

	// Under the semaphore:
	f          *os.File       // nil: no cross-process turn-taking
	fd         int            //
	mem        []byte         // the mapped lock file; nil if it cannot be mapped
	turns      *atomic.Uint64 // in mem: turns taken by anyone; nil without mem
	holder     *atomic.Int64  // in mem: the pid of the process that took the last turn
	held       bool           // the flock is ours
	stalled    bool           // the last wait gave up, at turn stalledAt
	stalledAt  uint64         //
	alwaysWait bool           // for tests: never skip the flock
}

// newWriteLock is a writeLock without cross-process turn-taking.
func newWriteLock(wait time.Duration) *writeLock {
	return &writeLock{wait: wait, sem: make(chan struct{}, 1), pid: int64(os.Getpid())}
}

// openWriteLock opens (creating, mode 0600) the lock file beside dbPath.
func openWriteLock(dbPath string, wait time.Duration) *writeLock {
	l := newWriteLock(wait)
	f, err := os.OpenFile(dbPath+WriteLockSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return l
	}
	l.f, l.fd = f, int(f.Fd())
	// The counter lives in the file's first 8 bytes; growing the file is
	// harmless if another process does it too (older versions only flock
	// it).
	const size = 4096
	if fi, err := f.Stat(); err == nil && (fi.Size() >= size || f.Truncate(size) == nil) {
		if mem, err := unix.Mmap(l.fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
			l.mem = mem
			l.turns = (*atomic.Uint64)(unsafe.Pointer(&mem[0]))
			l.holder = (*atomic.Int64)(unsafe.Pointer(&mem[8]))
		}
	}
	return l
}

// ErrInsideInTx: a write on a Queue was called from inside the function
// given to that Queue's InTx (or WriteTx), which holds the Queue's write
// turn for its transaction. Write with the transaction instead.
var ErrInsideInTx = errors.New("write called inside InTx on the same queue, which would wait for itself: inside InTx use EnqueueTx with its transaction")

// Lock waits for this process's turn, then for the database's, at most
// for the busy timeout and until ctx ends. It fails with ErrInsideInTx,
// snappea.ErrBusy or ctx's error, without the turn; on nil the caller must Unlock.
func (l *writeLock) Lock(ctx context.Context) error {
	_, err := l.lock(ctx)
	return err
}

// lock is Lock, also returning the deadline by which the write must be
// done when it had to wait: the zero time when it did not, and the
// database's own busy timeout bounds what is left.
func (l *writeLock) lock(ctx context.Context) (deadline time.Time, err error) {
	select {
	case l.sem <- struct{}{}:
	default:
		if id := l.owner.Load(); id != 0 && id == goid() {
			return time.Time{}, ErrInsideInTx
		}
		deadline = time.Now().Add(l.wait)
		t := time.NewTimer(l.wait)
		select {
		case l.sem <- struct{}{}:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, fmt.Errorf("wait for the write turn: %w", ctx.Err())
		case <-t.C:
			return time.Time{}, fmt.Errorf("%w (this process's other writes held the turn past the busy timeout, %v; a long InTx, or one waiting on a goroutine that writes?)", snappea.ErrBusy, l.wait)
		}
	}
	if l.f == nil {
		return deadline, nil
	}
	if unix.Flock(l.fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
		l.took()
		return deadline, nil
	}
	// Still the holder that made the last wait give up: do not wait again.
	if l.stalled && l.turns != nil && l.turns.Load() == l.stalledAt && !l.alwaysWait {
		return deadline, nil
	}
	now := time.Now()
	if deadline.IsZero() {
		deadline = now.Add(l.wait)
	}
	var last uint64
	if l.turns != nil {
		last = l.turns.Load()
	}
	since, nextLook := now, now
	pause := 20 * time.Microsecond
	for {
		time.Sleep(pause)
		pause = min(2*pause, time.Millisecond)
		err := unix.Flock(l.fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			l.took()
			return deadline, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return deadline, nil
		}
		if err := ctx.Err(); err != nil {
			<-l.sem
			return time.Time{}, fmt.Errorf("wait for the write turn: %w", err)
		}
		now = time.Now()
		if now.After(deadline) {
			<-l.sem
			return time.Time{}, fmt.Errorf("%w (other processes' writes held the turn past the busy timeout, %v)", snappea.ErrBusy, l.wait)
		}
		if l.turns != nil {
			if n := l.turns.Load(); n != last {
				last, since = n, now
				continue
			}
		}
		if stall := now.Sub(since); stall >= turnPatience && !l.alwaysWait {
			// A look at the holder's state every turnPatience.
			look := !now.Before(nextLook)
			if look {
				nextLook = now.Add(turnPatience)
			}
			if stall >= turnPatienceRunning || (look && l.holder != nil && stopped(l.holder.Load())) {
				l.stalled, l.stalledAt = true, last
				return deadline, nil
			}
		}
	}
}

// stopped reports whether process pid is stopped by a signal or a tracer,
// from its state in /proc; false when that cannot be told.
func stopped(pid int64) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatInt(pid, 10) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'T' || b[i+2] == 't'
}

// took records that the flock is ours.
func (l *writeLock) took() {
	l.held, l.stalled = true, false
	if l.turns != nil {
		l.turns.Add(1)
		l.holder.Store(l.pid)
	}
}

// Unlock gives the turn up.
func (l *writeLock) Unlock() {
	if l.held {
		unix.Flock(l.fd, unix.LOCK_UN)
		l.held = false
	}
	<-l.sem
}

// close closes the lock file, unless a write keeps the turn past the busy
// timeout (a Close inside InTx): the file is then left to the process's
// end.
func (l *writeLock) close() {
	select {
	case l.sem <- struct{}{}:
	case <-time.After(l.wait):
		return
	}
	defer func() { <-l.sem }()
	if l.mem != nil {
		unix.Munmap(l.mem)
		l.mem, l.turns, l.holder = nil, nil, nil
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// goid is the id of the calling goroutine, from the first line of its
// stack trace ("goroutine 123 [running]:"). A few microseconds: only InTx,
// WriteTx and a write that finds the turn taken pay it.
func goid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	const prefix = "goroutine "
	if len(b) < len(prefix) {
		return 0
	}
	var id int64
	for _, c := range b[len(prefix):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + int64(c-'0')
	}
	return id
}

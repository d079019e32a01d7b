package wakeup

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// FileName is the name of the one wake file producers create in the wakeup
// directory.
const FileName = "wake"

// DefaultCheckInterval is the CheckInterval used when Config leaves it zero.
const DefaultCheckInterval = time.Second

// Notify tells a Watcher on dir that work may be queued. Call it after the
// transaction that queued the work has committed.
//
// It creates dir/[FileName] with O_CREAT|O_EXCL (mode 0600) and closes it. If
// the file already exists a wake is already pending (the watcher removes the
// file before it signals, and the daemon claims after that), so Notify
// returns nil: a burst of producers pays one failed open each, not a file
// each. If dir does not exist, Notify creates it (mode 0700) and tries once
// more.
//
// Errors name what was being done and the path, for example
// "wake snappea: create /x/wakeup/wake: permission denied".
func Notify(dir string) error {
	path := filepath.Join(dir, FileName)
	err := createWakeFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("wake snappea: %w", err)
		}
		err = createWakeFile(path)
	}
	if err != nil {
		return fmt.Errorf("wake snappea: %w", err)
	}
	return nil
}

// createWakeFile creates path exclusively; an existing file is a pending wake
// and not an error.
func createWakeFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Op = "create"
		}
		return err
	}
	return f.Close()
}

// Config configures a Watcher. Its zero value, apart from Dir, means the
// defaults.
type Config struct {
	// Dir is the wakeup directory, the one producers pass to Notify.
	// Required. It is created (mode 0700) if missing.
	Dir string

	// CheckInterval is how often the watch is verified against the directory
	// on disk, to notice a directory that was deleted, renamed away or
	// replaced without an event saying so. Zero means
	// DefaultCheckInterval (1s); negative is an error.
	CheckInterval time.Duration

	// Logger receives the watcher's warnings and errors. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Watcher watches a wakeup directory and delivers a value on Wakes whenever
// work may have been queued. Create one with New and stop it with Close.
type Watcher struct {
	dir      string // absolute and clean: fsnotify reports events on the directory itself under this name
	wakePath string
	interval time.Duration
	log      *slog.Logger
	wakes    chan struct{}
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when run returns

	// Owned by the run goroutine once New returns; Close reads fsw only
	// after done is closed.
	fsw     *fsnotify.Watcher
	info    os.FileInfo // the directory as it was when the watch was added
	failing string      // the last re-establish error logged, to log each reason once

	handled func(fsnotify.Event) // called after each event is handled; for tests

	closeOnce sync.Once
	closeErr  error
}

// New creates cfg.Dir if missing, removes every entry in it (wakes from
// before a restart: the caller drains the backlog after New anyway), watches
// it and starts the goroutine that delivers wakes. Stop it with Close.
func New(cfg Config) (*Watcher, error) {
	return newWatcher(cfg, nil)
}

func newWatcher(cfg Config, handled func(fsnotify.Event)) (*Watcher, error) {
	if cfg.Dir == "" {
		return nil, errors.New("new wakeup watcher: Config.Dir is required")
	}
	if cfg.CheckInterval < 0 {
		return nil, fmt.Errorf("new wakeup watcher: Config.CheckInterval is %v; it must not be negative (zero means %v)", cfg.CheckInterval, DefaultCheckInterval)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("new wakeup watcher: resolve Config.Dir %q: %w", cfg.Dir, err)
	}
	w := &Watcher{
		dir:      dir,
		wakePath: filepath.Join(dir, FileName),
		interval: cmp.Or(cfg.CheckInterval, DefaultCheckInterval),
		log:      cfg.Logger,
		wakes:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		handled:  handled,
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.fsw, err = fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("new wakeup watcher on %s: %w", dir, err)
	}
	if err := w.watch(); err != nil {
		w.fsw.Close()
		return nil, fmt.Errorf("new wakeup watcher: %w", err)
	}
	// Clear the directory only once the watch is in place: a wake file
	// created before the watch and removed here is covered by the backlog
	// the caller drains after New, and one created after it raises an
	// event. Clearing first would let a file created in between outlive us
	// unseen, and every later Notify would find it and return silently.
	if err := clearDir(dir); err != nil {
		w.fsw.Close()
		return nil, fmt.Errorf("new wakeup watcher: %w", err)
	}
	go w.run()
	return w, nil
}

// clearDir removes every entry in dir.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clear wakeup directory: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("clear wakeup directory: %w", err)
		}
	}
	return nil
}

// Wakes delivers a value whenever work may have been queued: receive, then
// claim. It has capacity 1 and the watcher never blocks on it, so wakes that
// arrive while one is pending coalesce into it. The channel is not closed by
// Close; a reader stops on its own context.
func (w *Watcher) Wakes() <-chan struct{} { return w.wakes }

// Close stops the watcher's goroutine and its inotify watch. It is
// idempotent and safe to call while other goroutines receive from Wakes;
// every call returns the result of the first.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.stop)
		<-w.done
		if w.fsw != nil {
			if err := w.fsw.Close(); err != nil {
				w.closeErr = fmt.Errorf("close wakeup watcher on %s: %w", w.dir, err)
			}
		}
	})
	return w.closeErr
}

// run is the watcher's goroutine. It blocks in select between events: the
// ticker is the only periodic thing, so an idle watcher costs no CPU.
func (w *Watcher) run() {
	defer close(w.done)
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		var (
			events <-chan fsnotify.Event
			errs   <-chan error
		)
		if w.fsw != nil {
			events, errs = w.fsw.Events, w.fsw.Errors
		}
		select {
		case <-w.stop:
			return
		case ev, ok := <-events:
			if !ok {
				w.lostWatcher()
				continue
			}
			w.handleEvent(ev)
			if w.handled != nil {
				w.handled(ev)
			}
		case err, ok := <-errs:
			if !ok {
				w.lostWatcher()
				continue
			}
			w.handleError(err)
		case <-tick.C:
			w.check()
		}
	}
}

// lostWatcher drops an fsnotify watcher whose channels closed without Close;
// the next check starts a new one.
func (w *Watcher) lostWatcher() {
	w.log.Error("wakeup watcher stopped unexpectedly; starting it again at the next check", "dir", w.dir)
	w.fsw.Close()
	w.fsw = nil
	w.info = nil
}

func (w *Watcher) handleEvent(ev fsnotify.Event) {
	if ev.Name == w.dir {
		// The directory itself was deleted, moved or changed. An event
		// for a watch already replaced is harmless: check finds the
		// current watch sound and does nothing.
		w.check()
		return
	}
	// A file was created, written or touched. Remove and Rename events are
	// not wakes: they are mostly our own removals, and waking on them would
	// loop.
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Chmod) {
		w.wake()
	}
}

func (w *Watcher) handleError(err error) {
	// Either way events may have been lost, the creation of the wake file
	// among them; wake, which also removes a wake file nobody would
	// otherwise remove.
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.log.Debug("wakeup events overflowed; waking", "dir", w.dir)
	} else {
		w.log.Warn("wakeup watcher error; waking in case an event was lost", "dir", w.dir, "err", err)
	}
	w.wake()
}

// wake removes the wake file, then signals.
//
// The order is the protocol's guarantee. Every interval in which the file
// exists starts with a create event and ends with a removal here, and a
// signal follows each removal. A producer whose Notify created the file or
// found it existing committed before that removal, so the claim the daemon
// makes after receiving the signal sees its work. Signalling first would let
// a producer find the file after the signal, return, and have the file
// removed with no signal after it: a lost wake.
//
// The send never blocks: if a value is already pending, the daemon has not
// received it yet, so its claim still comes after this removal.
func (w *Watcher) wake() {
	if err := os.Remove(w.wakePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.log.Error("remove wake file", "path", w.wakePath, "err", err)
	}
	select {
	case w.wakes <- struct{}{}:
	default:
	}
}

// check verifies the watch against the directory on disk and re-establishes
// it if the directory was deleted, renamed away or replaced.
func (w *Watcher) check() {
	if !w.sound() {
		w.reestablish()
		return
	}
	// A wake file that outlives a check interval means its create event
	// was lost; left alone it would swallow every later Notify. Cheap
	// insurance: one lstat per interval.
	if _, err := os.Lstat(w.wakePath); err == nil {
		w.wake()
	}
}

// sound reports whether the watch is in place on the directory now at w.dir.
func (w *Watcher) sound() bool {
	if w.fsw == nil || w.info == nil {
		return false
	}
	fi, err := os.Stat(w.dir)
	if err != nil || !os.SameFile(fi, w.info) {
		return false
	}
	// The same directory may be back after being renamed away and back
	// again; fsnotify drops the watch on the first rename.
	return slices.Contains(w.fsw.WatchList(), w.dir)
}

// reestablish watches the directory again and wakes, because wakes may have
// been missed while it was not watched. On failure it logs and leaves the
// retry to the next check.
func (w *Watcher) reestablish() {
	w.info = nil
	if w.fsw == nil {
		fsw, err := fsnotify.NewWatcher()
		if err != nil {
			w.logFailure(fmt.Errorf("start watching: %w", err))
			return
		}
		w.fsw = fsw
	} else {
		_ = w.fsw.Remove(w.dir) // usually gone with the old directory already
	}
	if err := w.watch(); err != nil {
		w.logFailure(err)
		return
	}
	w.failing = ""
	w.wake() // removes a wake file created while unwatched, then signals
	w.log.Warn("wakeup directory was deleted or replaced; watching it again", "dir", w.dir)
}

// logFailure logs a failure to re-establish the watch, once per distinct
// reason: the check retries every interval and would otherwise log each time.
func (w *Watcher) logFailure(err error) {
	if msg := err.Error(); msg != w.failing {
		w.failing = msg
		w.log.Error("cannot watch the wakeup directory; producers' wakes are not seen until it can be watched again; retrying",
			"dir", w.dir, "err", err, "retry_every", w.interval)
	}
}

// watch creates the directory if missing and adds the watch on it.
func (w *Watcher) watch() error {
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return fmt.Errorf("create wakeup directory %s (check that its parent exists and is writable): %w", w.dir, err)
	}
	// Stat before adding the watch: if the directory is replaced in
	// between, the captured info names the old one and the next check
	// re-establishes. Stat after could capture the new directory while the
	// watch sits on the old one, and no check would ever notice.
	fi, err := os.Stat(w.dir)
	if err != nil {
		return fmt.Errorf("stat wakeup directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("wakeup directory %s is not a directory", w.dir)
	}
	if err := w.fsw.Add(w.dir); err != nil {
		return fmt.Errorf("watch wakeup directory %s: %w", w.dir, err)
	}
	w.info = fi
	return nil
}

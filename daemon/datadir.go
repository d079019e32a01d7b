package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/snappea/snappea/foreman"
)

// dataDirCheckInterval is how often the daemon checks that its database,
// lock file and watched files are still the files at their paths: a stat
// call each, nothing else.
const dataDirCheckInterval = time.Second

// watched is a file the daemon is found by through its path, and the file
// found there when Run started.
type watched struct {
	what, path string
	file       fs.FileInfo
}

// check returns an error matching ErrDataDirGone when the file at the path
// is missing or another file, and another error when the path cannot be
// looked at.
func (w watched) check() error {
	fi, err := os.Stat(w.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s was removed: %w", w.what, w.path, ErrDataDirGone)
	case err != nil:
		return fmt.Errorf("check %s %s: %w", w.what, w.path, err)
	case !os.SameFile(fi, w.file):
		return fmt.Errorf("%s %s was replaced by another file: %w", w.what, w.path, ErrDataDirGone)
	}
	return nil
}

// dataDirFiles are the files whose paths other processes find the daemon
// by: the database producers write to, the lock 'status' and a second
// daemon look at, and Config.WatchFiles (cli's control socket).
func (d *Daemon) dataDirFiles() ([]watched, error) {
	var files []watched
	if d.lite {
		dbPath := d.q.Config().DBPath
		db, err := os.Stat(dbPath)
		if err != nil {
			return nil, fmt.Errorf("stat the database: %w", err)
		}
		files = append(files, watched{"database", dbPath, db})
	}
	if d.lock != nil {
		lf := d.lock.File()
		if lf == nil {
			return nil, errors.New("the single-instance lock was released")
		}
		lock, err := lf.Stat()
		if err != nil {
			return nil, fmt.Errorf("stat the lock file: %w", err)
		}
		files = append(files, watched{"lock file", d.lock.Path(), lock})
	}
	for _, f := range d.cfg.WatchFiles {
		if fi, err := os.Lstat(f.Path); err == nil {
			files = append(files, watched{f.What, f.Path, fi})
		}
	}
	return files, nil
}

// watchDataDir is the service that notices, within about
// dataDirCheckInterval, that the data directory was deleted or its files
// replaced under the running daemon. The daemon would otherwise go on with
// a database no new process can see: producers and a second daemon would
// use a fresh one, and the tasks split between them. It stops the daemon
// instead, and Run returns an error matching ErrDataDirGone, so that the
// program (cli: its exit status, for a supervisor) starts a daemon on the
// new directory.
func (d *Daemon) watchDataDir() foreman.Service {
	return foreman.Service{Name: "datadir-watch", Run: func(ctx context.Context) error {
		files := d.files // as found when Run started, before the foreman ran
		t := time.NewTicker(dataDirCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			for _, f := range files {
				err := f.check()
				if errors.Is(err, ErrDataDirGone) {
					d.dataDirGone(err)
					return nil
				}
				if err != nil {
					return err // restarted after a backoff, shown in status
				}
			}
		}
	}}
}

// dataDirGone stops the daemon because its files left their paths; Run
// then returns err.
func (d *Daemon) dataDirGone(err error) {
	d.mu.Lock()
	first := d.gone == nil
	if first {
		d.gone = err
	}
	d.mu.Unlock()
	if !first {
		return
	}
	d.log.Error("the data directory's files are no longer at their paths: no new process can reach this daemon or its database; stopping, so that a daemon can start on the new directory",
		"err", err)
	if d.cfg.DataDirGone != nil {
		d.cfg.DataDirGone(err)
	}
	d.stop()
}

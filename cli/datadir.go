package cli

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
// lock file and control socket are still the files at their paths: three
// stat calls, nothing else.
const dataDirCheckInterval = time.Second

// errGone is matched by the error of a file that is no longer at its path.
var errGone = errors.New("no longer at its path")

// pathFile is a file the daemon uses by its path, and the file it found
// there at start.
type pathFile struct {
	what, path string
	file       fs.FileInfo
}

// check returns an error matching errGone when the file at the path is
// missing or another file, and another error when the path cannot be
// looked at.
func (p pathFile) check() error {
	fi, err := os.Stat(p.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s was removed: %w", p.what, p.path, errGone)
	case err != nil:
		return fmt.Errorf("check %s %s: %w", p.what, p.path, err)
	case !os.SameFile(fi, p.file):
		return fmt.Errorf("%s %s was replaced by another file: %w", p.what, p.path, errGone)
	}
	return nil
}

// dataDirFiles are the files whose paths other processes find the daemon
// by: the database producers write to, the lock 'status' and a second
// daemon look at, and the control socket the commands connect to. Run
// calls it once they are all open.
func (d *daemon) dataDirFiles() ([]pathFile, error) {
	dbPath := d.q.Config().DBPath
	db, err := os.Stat(dbPath)
	if err != nil {
		return nil, fmt.Errorf("stat the database: %w", err)
	}
	lock, err := d.lock.File().Stat()
	if err != nil {
		return nil, fmt.Errorf("stat the lock file: %w", err)
	}
	files := []pathFile{{"database", dbPath, db}, {"lock file", d.f.data.lockPath(), lock}}
	if sock, err := os.Lstat(d.ctl.Path()); err == nil {
		files = append(files, pathFile{"control socket", d.ctl.Path(), sock})
	}
	return files, nil
}

// watchDataDir is the service that notices, within about
// dataDirCheckInterval, that the data directory was deleted or its files
// replaced under the running daemon. The daemon would otherwise go on with
// a database no new process can see: producers and a second daemon would
// use a fresh one, and the tasks split between them. It stops the daemon
// instead, which then exits with ExitDataDirGone, so that a supervisor
// starts it again on the new directory.
func (d *daemon) watchDataDir() foreman.Service {
	return foreman.Service{Name: "datadir-watch", Run: func(ctx context.Context) error {
		files := d.files // as found at start-up, before the foreman ran
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
				if errors.Is(err, errGone) {
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

// dataDirGone stops the daemon because its files left their paths; run
// then exits with ExitDataDirGone.
func (d *daemon) dataDirGone(err error) {
	d.mu.Lock()
	d.gone = true
	d.mu.Unlock()
	d.log.Error("the data directory's files are no longer at their paths: no new process can reach this daemon or its database; stopping, to exit so that a supervisor starts it on the new directory",
		"err", err, "exit_code", ExitDataDirGone)
	d.stop(false, "data directory gone")
}

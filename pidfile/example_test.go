package pidfile_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/snappea/snappea/pidfile"
)

func Example() {
	dir, err := os.MkdirTemp("", "snappea-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lockPath := filepath.Join(dir, "snappea.lock")
	pidPath := filepath.Join(dir, "snappea.pid")

	// The daemon takes the lock at start and releases it at exit.
	lock, err := pidfile.Acquire(lockPath, pidPath)
	if err != nil {
		log.Fatal(err)
	}

	// A second daemon is refused; a status command asks Running.
	_, err = pidfile.Acquire(lockPath, pidPath)
	fmt.Println("second daemon refused:", errors.Is(err, pidfile.ErrLocked))
	pid, _ := pidfile.Running(lockPath)
	fmt.Println("running pid is ours:", pid == os.Getpid())

	if err := lock.Release(); err != nil {
		log.Fatal(err)
	}
	pid, _ = pidfile.Running(lockPath)
	fmt.Println("running pid after release:", pid)
	// Output:
	// second daemon refused: true
	// running pid is ours: true
	// running pid after release: 0
}

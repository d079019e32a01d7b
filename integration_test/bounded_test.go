package integration_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// holdLockEnv makes the test binary, re-executed, a process that holds a
// database's write lock: it opens the database named by the variable,
// begins an IMMEDIATE transaction, prints "locked" and waits until its
// standard input closes.
const holdLockEnv = "SNAPPEA_INTEGRATION_HOLD_WRITE_LOCK"

func init() {
	if path := os.Getenv(holdLockEnv); path != "" {
		os.Exit(holdWriteLockMain(path))
	}
}

func holdWriteLockMain(path string) int {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		return 1
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		fmt.Fprintln(os.Stderr, "begin immediate:", err)
		return 1
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	conn.ExecContext(context.Background(), "ROLLBACK")
	return 0
}

// holdWriteLock starts another process that holds dbPath's write lock
// until the returned func is called (or the test ends).
func holdWriteLock(t *testing.T, dbPath string) (release func()) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+dbPath)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			stdin.Close()
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "locked" {
			t.Fatalf("the lock holder printed %q, want \"locked\"", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lock holder did not take the write lock within 30s")
	}
	return release
}

// A stop honours --graceful-timeout while another process holds the
// database's write lock: the claim waiting for it is abandoned and the
// last statistics write is bounded. Before, a stop with a 1s graceful
// timeout took about 10s (the claim's busy timeout, then the statistics').
func TestStop_GracefulTimeoutWithDatabaseLocked(t *testing.T) {
	for _, how := range []string{"TERM", "snappea stop"} {
		t.Run(how, func(t *testing.T) {
			dir := dataDir(t)
			d := startDaemon(t, dir, "--graceful-timeout", "1s", "--poll-interval", "20ms")
			// A finished task, so that the stop has statistics to write.
			mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop")
			d.waitFor(30*time.Second, "the task to run", isMsg("task done"))

			holdWriteLock(t, filepath.Join(dir, "snappea.db"))
			// With the lock held, the daemon's next poll claims and waits
			// for it in SQLite's busy handler (5s by default): its loop
			// stops answering the health check's ping.
			waitClaimWaiting(t, dir)
			start := time.Now()
			if how == "TERM" {
				d.signal(syscall.SIGTERM)
			} else {
				r := snappea(t, "stop", "--dir", dir)
				if r.code != 0 {
					t.Fatalf("snappea stop: exit %d\n%s", r.code, r.stderr)
				}
			}
			if code := d.wait(30 * time.Second); code != 0 {
				t.Fatalf("daemon exited with %d, want 0\n%s", code, d.output())
			}
			took := time.Since(start)
			t.Logf("stopped %v after %s with the database locked", took, how)
			if took > 4*time.Second {
				t.Errorf("the stop took %v with a 1s graceful timeout, want at most about 1s (asserting < 4s)\n%s", took, d.output())
			}
			rec := d.waitFor(time.Second, "the warning about statistics not written", isMsg("could not write the last statistics before the stop deadline; they are lost"))
			if rec.int("tasks") != 1 {
				t.Errorf("the warning counts %d tasks not written, want 1: %v", rec.int("tasks"), rec)
			}
		})
	}
}

// waitClaimWaiting waits until the daemon's loop is inside a claim that
// waits for the database's write lock, which 'snappea health' shows as the
// main loop not answering its ping (2s).
func waitClaimWaiting(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := snappea(t, "health", "--dir", dir)
		if r.code != 0 && strings.Contains(r.stdout, "main loop is not answering") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's loop still answers 30s after the write lock was taken: %d %s%s", r.code, r.stdout, r.stderr)
		}
	}
}

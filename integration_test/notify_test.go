package integration_test

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a unix datagram socket standing in for systemd's
// NOTIFY_SOCKET; it collects the messages the daemon sends.
type notifySocket struct {
	t    *testing.T
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen on %s: %v", path, err)
	}
	n := &notifySocket{t: t, path: path, msgs: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return n
}

// next returns the next message that is not a watchdog keep-alive,
// failing the test after timeout; it counts the keep-alives skipped.
func (n *notifySocket) next(timeout time.Duration, what string, d *daemon) (msg string, keepAlives int) {
	n.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-n.msgs:
			if m == "WATCHDOG=1" {
				keepAlives++
				continue
			}
			return m, keepAlives
		case <-deadline:
			n.t.Fatalf("timed out after %v waiting for %s on the notify socket\n%s", timeout, what, d.output())
			return "", 0
		}
	}
}

func TestRun_NotifiesSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("a process test; skipped under -short")
	}
	dir := dataDir(t)
	ns := listenNotify(t)
	env := []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=200000"}
	d := launchProgramEnv(t, bin, dir, env, "--graceful-timeout", "5s")

	if m, _ := ns.next(30*time.Second, "READY=1", d); m != "READY=1" {
		t.Fatalf("first message %q, want READY=1\n%s", m, d.output())
	}
	readyAt := time.Now()
	// The log comes through a pipe and may be read after the datagram:
	// compare the record's own time with READY's arrival.
	started := d.waitFor(5*time.Second, "the foreman started record", isMsg("foreman started"))
	if at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(started["time"])); err != nil || at.After(readyAt) {
		t.Errorf("READY=1 came at %v, before the foreman started (%v, %v)\n%s", readyAt, started["time"], err, d.output())
	}
	// The keep-alives come every 100ms: wait for a few.
	deadline := time.After(30 * time.Second)
	for seen := 0; seen < 3; {
		select {
		case m := <-ns.msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("message %q while running, want WATCHDOG=1", m)
			}
			seen++
		case <-deadline:
			t.Fatalf("saw %d WATCHDOG=1 in 30s, want 3\n%s", seen, d.output())
		}
	}

	// A HUP re-executes the program: RELOADING=1 with the monotonic time,
	// then READY=1 from the new program once it claims.
	d.signal(syscall.SIGHUP)
	m, _ := ns.next(30*time.Second, "RELOADING=1", d)
	lines := strings.Split(m, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("reload message %q, want RELOADING=1 and MONOTONIC_USEC=...", m)
	}
	if usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64); err != nil || usec <= 0 {
		t.Errorf("MONOTONIC_USEC in %q: not a positive number", m)
	}
	if m, _ := ns.next(30*time.Second, "READY=1 after the reload", d); m != "READY=1" {
		t.Fatalf("message after RELOADING=1: %q, want READY=1\n%s", m, d.output())
	}
	if n := d.count(isMsg("foreman started")); n != 2 {
		t.Errorf("READY=1 after the reload with %d foreman starts, want 2\n%s", n, d.output())
	}
	// The new program keeps the watchdog going.
	select {
	case m := <-ns.msgs:
		if m != "WATCHDOG=1" {
			t.Errorf("message after the reload's READY=1: %q, want WATCHDOG=1", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no WATCHDOG=1 in 30s after the reload\n%s", d.output())
	}

	d.stop()
	if m, _ := ns.next(5*time.Second, "STOPPING=1", d); m != "STOPPING=1" {
		t.Fatalf("message after TERM: %q, want STOPPING=1", m)
	}
}

package integration_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStatus_AsAUserWhoMayOnlyRead: a monitoring account that may read the
// data directory but not write it gets the queue from 'status' while the
// daemon runs, and the exact reason when it cannot read it; it never
// changes anything.
func TestStatus_AsAUserWhoMayOnlyRead(t *testing.T) {
	asNobody, dir, db := nobodyReadsAQueue(t)
	mustSnappea(t, "enqueue", "--dir", dir, "--count", "3", "--delay", "1h", "snappea.noop")
	listing := func() []string {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	// No process has the database open: SQLite would need to create the
	// -shm file, which this user may not.
	before := listing()
	r := snappeaWith(t, asNobody, "status", "--dir", dir)
	if r.code != 1 || !strings.Contains(r.stderr, db+"-shm") || !strings.Contains(r.stderr, "may not write") {
		t.Errorf("status as nobody without a daemon: exit %d, %q; want 1 and why", r.code, r.stderr)
	}
	if after := listing(); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("status as nobody changed the data directory: %v, then %v", before, after)
	}

	// While the daemon runs, the reader gets the queue from the database.
	d := startDaemon(t, dir)
	r = snappeaWith(t, asNobody, "status", "--json", "--dir", dir)
	if r.code != 0 {
		t.Fatalf("status as nobody with a daemon: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var s struct {
		Pending, Delayed int
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.Pending != 3 || s.Delayed != 3 {
		t.Errorf("status --json as nobody: %q (%v), want 3 pending, delayed", r.stdout, err)
	}
	if !strings.Contains(r.stderr, "cannot tell whether a daemon runs") || !strings.Contains(r.stderr, "snappea.lock") {
		t.Errorf("status as nobody: stderr %q does not say why the daemon is unknown", r.stderr)
	}
	r = snappeaWith(t, asNobody, "status", "--dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "unknown: this user may not read the lock") {
		t.Errorf("status as nobody: exit %d, %q", r.code, r.stdout)
	}
	// Where it may read the lock, it knows the daemon runs, and that the
	// control socket is not for it.
	if err := os.Chmod(filepath.Join(dir, "snappea.lock"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = snappeaWith(t, asNobody, "status", "--dir", dir)
	if want := fmt.Sprintf("pid %d is running; its control socket answers only the daemon's user and root", d.pid()); r.code != 0 ||
		!strings.Contains(r.stdout, want) || !regexp.MustCompile(`(?m)^pending\s+3 `).MatchString(r.stdout) {
		t.Errorf("status as nobody, the lock readable: exit %d, %q, %q; want %q and the queue", r.code, r.stdout, r.stderr, want)
	}
	r = snappeaWith(t, asNobody, "pending", "--dir", dir)
	if r.code != 0 || strings.Count(r.stdout, "snappea.noop") != 3 {
		t.Errorf("pending as nobody: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	d.stop()
}

package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of the given size (mount's size= option) on a
// new directory, unmounted when the test ends, and returns the directory.
// It skips the test where mounting is not permitted (not root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs on %s to fill it up (needs root or CAP_SYS_ADMIN): %v", dir, err)
	}
	// Registered before the daemon's, this cleanup runs after it, once the
	// daemon is killed; MNT_DETACH all the same, so that a process left
	// behind cannot fail the test.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount the tmpfs on %s: %v", dir, err)
		}
	})
	return dir
}

// fillArgs make tasks small, so that the pages a checkpoint adds to the
// database file fit in the room made (a real limit: SQLite cannot
// checkpoint into a database file that cannot grow).
var fillArgs = fmt.Sprintf(`{"pad": %q}`, strings.Repeat("x", 50))

// fillUp leaves a little room taken by a file, then enqueues tasks until
// the file system is full: the way a disk fills up under a producer, the
// write-ahead log taking what is left. It returns the file (removing it
// frees the room) and how many tasks were queued.
func fillUp(t *testing.T, mnt, dir string) (room string, queued int) {
	t.Helper()
	room = filepath.Join(mnt, "room")
	if err := os.WriteFile(room, make([]byte, 256<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	r := snappea(t, "enqueue", "--dir", dir, "--count", "1000000", "snappea.noop", fillArgs)
	if r.code == 0 {
		t.Fatalf("enqueued 1,000,000 tasks on a file system of 8 MiB; want a disk-full error")
	}
	if !strings.Contains(r.stderr, "full") {
		t.Fatalf("enqueue on a full file system: exit %d, want an error saying the disk is full:\n%s", r.code, r.stderr)
	}
	queued = len(strings.Fields(r.stdout))
	t.Logf("queued %d tasks before: %s", queued, strings.TrimSpace(r.stderr))
	if queued == 0 {
		t.Fatalf("no task was queued before the disk was full:\n%s", r.stderr)
	}
	return room, queued
}

// waitDrained waits until the daemon has run n tasks and none is pending.
func waitDrained(t *testing.T, d *daemon, n int, what string) {
	t.Helper()
	d.waitUntil(60*time.Second, fmt.Sprintf("the %d queued tasks to run %s", n, what), func() bool {
		return d.count(isMsg("task done")) >= n
	})
	if s := getStatus(t, d.dir); s.Pending != 0 {
		t.Errorf("status after %d tasks ran: pending %d, want 0", n, s.Pending)
	}
}

// A daemon running while its file system fills up claims again once some
// room is freed, without a restart: its checkpoint is retried although
// nothing could be written, and truncating the write-ahead log gives the
// space the log took back.
func TestFullDisk_runningDaemonCatchesUp(t *testing.T) {
	mnt := mountTmpfs(t, "8m")
	dir := filepath.Join(mnt, "data")
	mustSnappea(t, "migrate", "--dir", dir)
	d := startDaemon(t, dir)
	mustSnappea(t, "pause", "--dir", dir)
	room, queued := fillUp(t, mnt, dir)

	mustSnappea(t, "resume", "--dir", dir)
	// Let it meet the full disk before room is made.
	d.waitUntil(30*time.Second, "a claim to fail on the full disk, or every task to run", func() bool {
		return d.count(func(r record) bool { return strings.HasPrefix(r.msg(), "claiming tasks failed") }) > 0 || d.count(isMsg("task done")) >= queued
	})
	if err := os.Remove(room); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, d, queued, "after room was made")

	// And it goes on working: a new task runs.
	mustSnappea(t, "enqueue", "--dir", dir, "snappea.noop")
	waitDrained(t, d, queued+1, "after room was made, and one more")
	d.stop()
}

// A daemon started on a file system that was full, once a little room is
// freed, drains the queue: it truncates the write-ahead log before its own
// first writes can take that room.
func TestFullDisk_restartDrains(t *testing.T) {
	mnt := mountTmpfs(t, "8m")
	dir := filepath.Join(mnt, "data")
	mustSnappea(t, "migrate", "--dir", dir)
	room, queued := fillUp(t, mnt, dir)
	if err := os.Remove(room); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir)
	waitDrained(t, d, queued, "after a start on a freed disk")
	if fi, err := os.Stat(filepath.Join(dir, "snappea.db-wal")); err == nil && fi.Size() > 4<<20 {
		t.Errorf("the write-ahead log is %d bytes after the drain, want it truncated (at most 4 MiB)", fi.Size())
	}
	d.stop()
}

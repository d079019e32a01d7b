package prefork

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ProcInfo describes one child, for status.
type ProcInfo struct {
	PID       int       `json:"pid"`
	State     State     `json:"state"`             // starting, idle, busy, retiring
	TaskID    int64     `json:"task_id,omitempty"` // the running job, when busy
	Task      string    `json:"task,omitempty"`    //
	RSSBytes  int64     `json:"rss_bytes"`         // resident set from /proc; 0 if unreadable
	TasksDone int64     `json:"tasks_done"`        // jobs finished
	StartedAt time.Time `json:"started_at"`        //
}

// Snapshot is the pool's state at one moment.
type Snapshot struct {
	Procs []ProcInfo `json:"procs"` // by pid
	Counters
	Waiting int `json:"waiting"` // Do calls waiting for a child
	Min     int `json:"min"`
	Max     int `json:"max"`
}

// Snapshot describes every child and the counters.
func (p *Pool) Snapshot() Snapshot {
	p.mu.Lock()
	s := Snapshot{Counters: p.counts, Waiting: len(p.waiters), Min: p.cfg.Min, Max: p.cfg.Max}
	for c := range p.children {
		pi := ProcInfo{PID: c.pid, State: c.state, TasksDone: c.tasks, StartedAt: c.started}
		if c.job != nil {
			pi.TaskID, pi.Task = c.job.ID, c.job.Name
		}
		s.Procs = append(s.Procs, pi)
	}
	p.mu.Unlock()
	for i := range s.Procs {
		s.Procs[i].RSSBytes, _ = readRSS(s.Procs[i].PID)
	}
	slices.SortFunc(s.Procs, func(a, b ProcInfo) int { return a.PID - b.PID })
	return s
}

var pageSize = int64(os.Getpagesize())

// readRSS reads a process's resident set size from /proc/PID/statm (the
// second field, in pages): one small read, cheap enough after every job.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, fmt.Errorf("read rss: %w", err)
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("read rss: /proc/%d/statm: %q", pid, b)
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read rss: /proc/%d/statm: %w", pid, err)
	}
	return pages * pageSize, nil
}

// ring keeps the last bytes written to it: a child's stderr tail.
type ring struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newRing(n int) *ring { return &ring{max: n} }

func (r *ring) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(b)
	if len(b) >= r.max {
		b = b[len(b)-r.max:]
		r.buf = r.buf[:0]
	}
	if over := len(r.buf) + len(b) - r.max; over > 0 {
		r.buf = append(r.buf[:0], r.buf[over:]...)
	}
	r.buf = append(r.buf, b...)
	return n, nil
}

// Bytes returns a copy of what is kept.
func (r *ring) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf)
}

// teeWriter writes to the tail and passes on to the command's own Stderr,
// whose errors do not stop the tail.
type teeWriter struct {
	tail *ring
	out  io.Writer
}

func (t teeWriter) Write(b []byte) (int, error) {
	t.tail.Write(b)
	t.out.Write(b)
	return len(b), nil
}

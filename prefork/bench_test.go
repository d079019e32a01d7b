package prefork_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snappea/snappea/prefork"
)

// BenchmarkPool_Do is the round trip of a no-op job through the pool:
// frame out, run in the child, frame back. With 2 children two callers
// keep both busy; tasks/s is the burn-down rate.
func BenchmarkPool_Do(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(map[int]string{1: "procs=1", 2: "procs=2"}[procs], func(b *testing.B) {
			p := startPool(b, prefork.Config{Min: procs, Max: procs})
			waitFor(b, "the children to be ready", func() bool { return countState(p.Snapshot(), prefork.Idle) == procs })
			ctx := context.Background()
			var id atomic.Int64
			job := func() {
				res, err := p.Do(ctx, prefork.Job{ID: id.Add(1), Name: "noop"})
				if err != nil || res.Outcome != prefork.Done {
					b.Fatalf("noop: %v %v %v", res.Outcome, res.Err, err)
				}
			}
			pids := pidsOf(p.Snapshot())
			parent0, child0 := selfCPU(), childrenCPU(pids)
			b.ResetTimer()
			start := time.Now()
			if procs == 1 {
				for b.Loop() {
					job()
				}
			} else {
				b.SetParallelism(1) // GOMAXPROCS callers: 2 on this machine
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						job()
					}
				})
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
			// Where the time goes: CPU per task in this process (Do, the
			// monitor, the runtime) and in the children (Serve, the handler).
			b.ReportMetric(float64(selfCPU()-parent0)/float64(time.Microsecond)/float64(b.N), "parent-cpu-µs/task")
			b.ReportMetric(float64(childrenCPU(pids)-child0)/float64(time.Microsecond)/float64(b.N), "child-cpu-µs/task")
		})
	}
}

// selfCPU is this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childrenCPU is the user and system CPU time of running processes, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func childrenCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// f[0] is field 3 (state): utime is field 14, stime 15.
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+st) * 10 * time.Millisecond
	}
	return total
}

package foreman

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snappea/snappea/queue"
)

// lockedSource is a queue whose database another process holds locked: a
// claim waits until its context ends, as queue.Claim does in SQLite's busy
// handler. With committed set, the claim's DELETE is taken to have
// committed just as the stop came: it returns its tasks all the same.
type lockedSource struct {
	*fakeSource
	committed bool
	waiting   atomic.Int32 // claims waiting now
}

func (s *lockedSource) Claim(ctx context.Context, n int) ([]queue.Task, error) {
	s.waiting.Add(1)
	<-ctx.Done()
	s.waiting.Add(-1)
	if s.committed {
		return s.fakeSource.Claim(context.Background(), n)
	}
	return nil, fmt.Errorf("claim tasks: %w", ctx.Err())
}

func TestForeman_StopCancelsAClaimWaitingOnALock(t *testing.T) {
	for _, committed := range []bool{false, true} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Config{Workers: 4, GracefulTimeout: 10 * time.Second}, nil)
				src := &lockedSource{fakeSource: h.src, committed: committed}
				h.f.cfg.Source = src
				h.src.add("snappea.noop", ``, 3)
				h.start()
				synctest.Wait()
				if src.waiting.Load() != 1 {
					t.Fatalf("%d claims waiting, want 1", src.waiting.Load())
				}
				start := time.Now()
				h.stop()
				h.wait(t) // without the claim cancelled, Run never returns: synctest reports the deadlock
				if d := time.Since(start); d >= time.Second {
					t.Errorf("Run returned %v after the stop, want at once", d)
				}
				c := h.f.Counters()
				if committed {
					// The claim committed: its tasks were taken from the queue
					// and must run, never be dropped.
					if c.Done != 3 || h.src.pending() != 0 {
						t.Errorf("done %d, pending %d; want the 3 claimed tasks run", c.Done, h.src.pending())
					}
				} else if c.Done != 0 || h.src.pending() != 3 {
					t.Errorf("done %d, pending %d; want nothing claimed, 3 still queued", c.Done, h.src.pending())
				}
				if errs, _ := h.rep.snapshot(); len(errs) != 0 {
					t.Errorf("reported %v: a claim cut short by the stop is not a failure", errs)
				}
			})
		})
	}
}

func TestForeman_ShutdownCancelsAClaimWaitingOnALock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{Workers: 2}, nil)
		src := &lockedSource{fakeSource: h.src}
		h.f.cfg.Source = src
		h.start()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := h.f.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown = %v, want nil: nothing was running", err)
		}
		h.wait(t)
	})
}

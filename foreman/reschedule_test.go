package foreman

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/snappea/snappea/registry"
)

// reschedule moves the delayed task id to due, as a debounced replace
// does in a backend.
func (s *fakeSource) reschedule(id int64, due time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.delayed {
		if s.delayed[i].t.ID == id {
			s.delayed[i].due = due
			return
		}
	}
	s.t.Fatalf("no delayed task %d to reschedule", id)
}

// A debounced replace pushes a delayed task back: the timer armed for its
// old due time finds nothing due and is armed again for the new one, with
// the wake the replace sends or without it (a wake lost, or coalesced
// with an earlier one), instead of waiting for the poll.
func TestForeman_RescheduledTaskRunsWhenNewlyDue(t *testing.T) {
	for _, woken := range []bool{true, false} {
		name := "woken"
		if !woken {
			name = "not woken"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				started := make(chan time.Time, 1)
				h := newHarness(t, Config{PollInterval: time.Hour}, func(r *registry.Registry) {
					registry.Register(r, "stamp", func(ctx context.Context, _ struct{}) error {
						started <- time.Now()
						return nil
					})
				})
				begin := time.Now()
				id := h.src.addAt("stamp", begin.Add(30*time.Second))
				h.start()
				synctest.Wait() // asleep until 30s
				time.Sleep(10 * time.Second)
				h.src.reschedule(id, begin.Add(90*time.Second))
				if woken {
					h.wake.wake()
				}
				if got := (<-started).Sub(begin); got != 90*time.Second {
					t.Errorf("rescheduled task started at %v, want 90s (its new due time, not its old one or the 1h poll)", got)
				}
				h.stop()
				h.wait(t)
			})
		})
	}
}

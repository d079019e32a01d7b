package foreman

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/registry"
)

// ledgerSource is a fakeSource that is also a Ledger: it records what it
// was told settled, and what the store had written by then.
type ledgerSource struct {
	*fakeSource
	store *fakeStore

	mu      sync.Mutex
	settled map[int64]Outcome
	writes  map[int64]int // the store's retries and failures when t was settled
}

func (l *ledgerSource) Settled(t *snappea.Task, o Outcome) {
	l.store.mu.Lock()
	w := len(l.store.retry) + len(l.store.fail)
	l.store.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.settled[t.ID] = o
	l.writes[t.ID] = w
}

func (l *ledgerSource) Held() bool { return false }

// A Source that is a Ledger is told of every claimed task once it is
// settled, after its retry or failed record was written, and of a task
// interrupted by the hard stop as Interrupted.
func TestForeman_LedgerSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		h := newHarness(t, Config{Workers: 4, Store: store, GracefulTimeout: -1}, func(r *registry.Registry) {
			registry.Register(r, "ok", func(context.Context, struct{}) error { return nil })
			registry.Register(r, "bad", func(context.Context, struct{}) error { return errors.New("boom") })
			registry.Register(r, "hang", func(ctx context.Context, _ struct{}) error { <-ctx.Done(); return ctx.Err() })
		})
		ls := &ledgerSource{fakeSource: h.src, store: store, settled: map[int64]Outcome{}, writes: map[int64]int{}}
		h.f.cfg.Source, h.f.ledger = ls, ls
		h.src.add("ok", `{}`, 1)     // 1
		h.src.add("bad", `{}`, 1)    // 2: failed for good
		h.src.add("nosuch", `{}`, 1) // 3: discarded
		h.src.add("hang", `{}`, 1)   // 4: interrupted at the stop
		h.start()
		waitFor(t, "three tasks settled", func() bool {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			return len(ls.settled) == 3
		})
		h.stop()
		h.wait(t)
		ls.mu.Lock()
		defer ls.mu.Unlock()
		want := map[int64]Outcome{1: Done, 2: Failed, 3: Discarded, 4: Interrupted}
		for id, o := range want {
			if got, ok := ls.settled[id]; !ok || got != o {
				t.Errorf("task %d settled as %v (told: %v), want %v", id, got, ok, o)
			}
		}
		if ls.writes[2] < 1 || ls.writes[3] < 1 {
			t.Errorf("failed tasks settled before their failed records were written: %v", ls.writes)
		}
		if ids := slices.Sorted(func(yield func(int64) bool) {
			for id := range ls.settled {
				if !yield(id) {
					return
				}
			}
		}); len(ids) != 4 {
			t.Errorf("settled %v, want each of the 4 tasks once", ids)
		}
	})
}

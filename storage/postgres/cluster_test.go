package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// openSibling opens another backend, with its own pool, on b's schema: a
// second daemon or producer process, as far as the database can tell.
func openSibling(t *testing.T, b *Backend) *Backend {
	t.Helper()
	s, err := Open(t.Context(), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCluster_exactlyOnce: three claimers with pools of their own and two
// producers at the same time; every task is claimed exactly once.
func TestCluster_exactlyOnce(t *testing.T) {
	b := mustOpen(t, Config{})
	daemons := []*Backend{b, openSibling(t, b), openSibling(t, b)}
	producers := []*Backend{openSibling(t, b), openSibling(t, b)}
	const perProducer = 1000
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var produced sync.WaitGroup
	for _, p := range producers {
		produced.Go(func() {
			for i := range perProducer {
				r := storage.Row{Task: "t", Args: []byte(`{}`), CreatedAt: time.Now(), Priority: i % 2}
				if _, err := p.Insert(ctx, nil, []storage.Row{r}); err != nil {
					t.Errorf("producer: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { produced.Wait(); close(done) }()

	var mu sync.Mutex
	seen := make(map[int64]int)
	var claimed sync.WaitGroup
	for _, d := range daemons {
		for range 2 {
			claimed.Go(func() {
				for {
					ts, err := d.Claim(ctx, 16)
					if err != nil {
						t.Errorf("claim: %v", err)
						return
					}
					mu.Lock()
					for _, task := range ts {
						seen[task.ID]++
					}
					mu.Unlock()
					if len(ts) == 0 {
						select {
						case <-done:
							// Producers finished: one more empty claim means all taken.
							if ts, err := d.Claim(ctx, 16); err != nil || len(ts) > 0 {
								mu.Lock()
								for _, task := range ts {
									seen[task.ID]++
								}
								mu.Unlock()
								continue
							}
							return
						default:
						}
					}
				}
			})
		}
	}
	claimed.Wait()
	if len(seen) != len(producers)*perProducer {
		t.Errorf("claimed %d distinct tasks, want %d", len(seen), len(producers)*perProducer)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("task %d claimed %d times", id, n)
		}
	}
}

// TestRequestCancel_reachesOtherDaemons: a cancel request sent through one
// backend reaches the Waker of every other.
func TestRequestCancel_reachesOtherDaemons(t *testing.T) {
	b := mustOpen(t, Config{})
	other := openSibling(t, b)
	var ws []storage.Waker
	for _, d := range []*Backend{b, other} {
		w, err := d.Waker(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws = append(ws, w)
	}
	cli := openSibling(t, b)
	if err := cli.RequestCancel(t.Context(), 77); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		select {
		case id := <-w.Cancels():
			if id != 77 {
				t.Errorf("waker %d: cancel request for %d, want 77", i, id)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("waker %d: no cancel request within 30s", i)
		}
	}
}

package prefork

import (
	"io"
	"log/slog"
	"os/exec"
	"testing"
	"testing/synctest"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := Config{Min: 2, Max: 4, Idle: time.Minute, StartRate: 10} // 100ms between growth starts
	ago := func(d time.Duration) time.Time { return t0.Add(-d) }
	tests := []struct {
		name string
		v    view
		want decision
	}{
		{"empty pool: start toward Min", view{}, decision{start: true}},
		{"at Min, nothing waits: nothing to do", view{alive: 2, idleSince: []time.Time{ago(time.Second), ago(time.Second)}}, decision{}},
		{"a job waits, a child starts: no second start", view{alive: 3, starting: 1, waiters: 1, lastGrow: ago(time.Second)}, decision{wake: t0.Add(time.Minute)}},
		{"two wait, one starting: start another", view{alive: 3, starting: 1, waiters: 2, lastGrow: ago(time.Second)}, decision{start: true, wake: t0.Add(time.Minute)}},
		{"growth is rate-limited", view{alive: 3, waiters: 2, lastGrow: ago(30 * time.Millisecond)}, decision{wake: t0.Add(70 * time.Millisecond)}},
		{"below Min is not rate-limited", view{alive: 1, lastGrow: ago(time.Millisecond)}, decision{start: true}},
		{"never above Max", view{alive: 4, waiters: 9}, decision{wake: t0.Add(time.Minute)}},
		{"one death: replace at once", view{alive: 1, failures: 1, lastFail: t0}, decision{start: true}},
		{"deaths in a row back off", view{alive: 1, failures: 3, lastFail: ago(50 * time.Millisecond)}, decision{wake: t0.Add(150 * time.Millisecond)}},
		{"backoff over", view{alive: 1, failures: 3, lastFail: ago(time.Second)}, decision{start: true}},
		{"idle above Min: retire the expired one", view{alive: 3, idleSince: []time.Time{ago(2 * time.Minute), ago(time.Second), ago(time.Second)}}, decision{retire: 1}},
		{"idle above Min, not expired: wake then", view{alive: 3, idleSince: []time.Time{ago(20 * time.Second), ago(time.Second), ago(time.Second)}}, decision{wake: t0.Add(40 * time.Second)}},
		{"busy above Min: look again after Idle", view{alive: 3}, decision{wake: t0.Add(time.Minute)}},
		{"never below Min", view{alive: 4, idleSince: []time.Time{ago(time.Hour), ago(time.Hour), ago(time.Hour), ago(time.Hour)}}, decision{retire: 2}},
		{"busy ones count toward Min", view{alive: 3, idleSince: []time.Time{ago(time.Hour)}}, decision{retire: 1}},
		{"above Max: retire idle ones at once", view{alive: 6, idleSince: []time.Time{ago(time.Second), t0, t0}}, decision{retire: 2, wake: t0.Add(time.Minute)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.v.now = t0
			if got := decide(&cfg, tt.v); got != tt.want {
				t.Errorf("decide(%+v) = %+v, want %+v", tt.v, got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{2, 100 * time.Millisecond}, {3, 200 * time.Millisecond}, {5, 800 * time.Millisecond}, {20, backoffMax}} {
		if got := backoff(tt.n); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

// Run's timing with fake time: a pool whose children cannot start retries
// on the backoff schedule, not in a busy loop, and Shutdown ends it. The
// command fails before any process exists, so the bubble holds no real
// process.
func TestPool_Run_backoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tries := 0
		p, err := New(Config{Min: 1, Logger: discard, Command: func() *exec.Cmd {
			tries++
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- p.Run(t.Context()) }()
		synctest.Wait()
		// Tries at 0, 0 (the first failure replaces at once), then after
		// 100ms, 200ms, 400ms, 800ms: 6 by 1.5s.
		time.Sleep(1500*time.Millisecond + time.Millisecond)
		synctest.Wait()
		if tries != 6 {
			t.Errorf("%d start attempts in 1.5s, want 6 (backoff 100ms doubling)", tries)
		}
		p.Shutdown(t.Context())
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

package daemon

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/storage"
)

type lostReporter struct {
	mu  sync.Mutex
	ids []int64
	got chan struct{}
}

func (r *lostReporter) Report(err error, t *snappea.Task) {
	var le *snappea.LostError
	if !errors.As(err, &le) || t == nil {
		return
	}
	r.mu.Lock()
	r.ids = append(r.ids, t.ID)
	r.mu.Unlock()
	r.got <- struct{}{}
}

// A daemon that starts after one died records the dead one's tasks in
// flight, reports each recorded failed once, and enqueues the RetryLost
// ones again; the next start finds nothing left.
func TestDaemon_RecoversLostTasks(t *testing.T) {
	dir := t.TempDir()
	reg := registry.New()
	registry.Register(reg, "once", func(context.Context, struct{}) error { return nil })
	ran := make(chan int, 10)
	registry.Register(reg, "again", func(ctx context.Context, _ struct{}) error {
		info, _ := registry.InfoFrom(ctx)
		ran <- info.Attempt
		return nil
	}, registry.Options{RetryLost: true})
	q := mustOpen(t, dir, reg)
	ctx := context.Background()
	for _, name := range []string{"once", "again"} {
		if _, err := q.Enqueue(ctx, name, struct{}{}); err != nil {
			t.Fatal(err)
		}
	}
	// A daemon that claimed both and died.
	if c, err := q.Backend().ClaimFor(ctx, storage.ClaimRequest{Owner: 77, N: 2}); err != nil || len(c.Tasks) != 2 {
		t.Fatalf("ClaimFor = %+v, %v", c, err)
	}

	rep := &lostReporter{got: make(chan struct{}, 10)}
	d, err := New(Config{Queue: q, Registry: reg, Reporter: rep, StatsRetention: -1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	done := start(t, d)
	wait(t, rep.got, "the lost task's report")
	if attempt := wait(t, ran, "the RetryLost task to run again"); attempt != 2 {
		t.Errorf("the task enqueued again ran as attempt %d, want 2", attempt)
	}
	shutdown(t, d, done)
	rep.mu.Lock()
	if len(rep.ids) != 1 || rep.ids[0] != 1 {
		t.Errorf("reported lost: %v, want task 1 once", rep.ids)
	}
	rep.mu.Unlock()
	if n, err := q.Backend().CountLost(ctx); err != nil || n != 1 {
		t.Errorf("CountLost = %d, %v; want 1", n, err)
	}
	if maxRunning, retry := d.Limits(); len(maxRunning) != 0 || len(retry) != 1 || retry[0] != "again" {
		t.Errorf("Limits = %v, %v; want no limits, RetryLost again", maxRunning, retry)
	}

	// Nothing is left for the next start, whose recovery has run once
	// its foreman answers.
	d2, err := New(Config{Queue: q, Registry: reg, Reporter: rep, StatsRetention: -1, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	done2 := start(t, d2)
	for deadline := time.Now().Add(waitFor); d2.Foreman().Ping(ctx) != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second daemon's foreman did not start")
		}
	}
	shutdown(t, d2, done2)
	select {
	case <-rep.got:
		t.Error("a second start reported a lost task again")
	default:
	}
	if fs, err := q.Backend().InFlight(ctx, 0); err != nil || len(fs) != 0 {
		t.Errorf("InFlight after clean stops = %+v, %v; want none", fs, err)
	}
}

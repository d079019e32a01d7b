package queue

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

func TestQueue_Pending(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	enq := func(task string, opts registry.Options) int64 {
		t.Helper()
		res, err := q.EnqueueWith(ctx, task, map[string]string{"secret": "s3cret"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	low := enq("a", registry.Options{})
	high := enq("b", registry.Options{Priority: 5, Key: "k", MaxAttempts: 3})
	later := enq("a", registry.Options{Delay: 2 * time.Hour})
	soon := enq("b", registry.Options{Delay: time.Hour})
	low2 := enq("a", registry.Options{})

	ids := func(ps []PendingTask) []int64 {
		var out []int64
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		f    PendingFilter
		want []int64
	}{
		{"claim order, then by due time", PendingFilter{}, []int64{high, low, low2, soon, later}},
		{"newest first", PendingFilter{Newest: true}, []int64{later, soon, low2, low, high}},
		{"limit", PendingFilter{Limit: 2}, []int64{high, low}},
		{"task", PendingFilter{Task: "a"}, []int64{low, low2, later}},
		{"delayed", PendingFilter{Delayed: true}, []int64{soon, later}},
		{"delayed task, newest", PendingFilter{Delayed: true, Task: "a", Newest: true}, []int64{later}},
		{"no such task", PendingFilter{Task: "zzz"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := q.Pending(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("ids %v, want %v", ids(got), tt.want)
			}
		})
	}

	all, err := q.Pending(ctx, PendingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	h := all[0]
	if h.Task != "b" || h.Priority != 5 || h.Key != "k" || h.Attempt != 1 || h.MaxAttempts != 3 || !h.Ready() ||
		time.Since(h.EnqueuedAt) > time.Minute {
		t.Errorf("first task = %+v", h)
	}
	if s := all[3]; s.Ready() || time.Until(s.RunAt) < 59*time.Minute || time.Until(s.RunAt) > time.Hour {
		t.Errorf("delayed task %d runs at %v, want in an hour", s.ID, s.RunAt)
	}

	if _, err := q.Pending(ctx, PendingFilter{Limit: -1}); err == nil {
		t.Error("a negative limit was accepted")
	}
	// The default limit.
	jobs := make([]Job, DefaultPendingLimit+10)
	for i := range jobs {
		jobs[i] = Job{Task: "c"}
	}
	if _, err := q.EnqueueMany(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.Pending(ctx, PendingFilter{Task: "c"}); len(got) != DefaultPendingLimit {
		t.Errorf("listed %d tasks, want the default limit %d", len(got), DefaultPendingLimit)
	}
}

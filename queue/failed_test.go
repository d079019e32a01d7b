package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

// mustFail claims the next task and records it as failed with cause.
func mustFail(t testing.TB, q *Queue, cause string) Task {
	t.Helper()
	ts := mustClaim(t, q, 1)
	if len(ts) != 1 {
		t.Fatalf("claimed %d tasks, want 1", len(ts))
	}
	if err := q.Fail(context.Background(), &ts[0], errors.New(cause)); err != nil {
		t.Fatal(err)
	}
	return ts[0]
}

func failureIDs(fs []Failure) []int64 {
	ids := make([]int64, len(fs))
	for i, f := range fs {
		ids[i] = f.ID
	}
	return ids
}

func TestQueue_FailAndFailures(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	mustEnqueueWith(t, q, "a", 1, registry.Options{Priority: 2, MaxAttempts: 3, Timeout: time.Second})
	mustEnqueueWith(t, q, "b", 2, registry.Options{})
	before := time.Now()
	ta := mustFail(t, q, "smtp down")
	tb := mustFail(t, q, "bad address")

	all, err := q.Failures(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("Failures(0) = %d records, want 2", len(all))
	}
	if all[0].TaskID != tb.ID || all[1].TaskID != ta.ID {
		t.Errorf("Failures task ids = %d, %d; want newest first: %d, %d", all[0].TaskID, all[1].TaskID, tb.ID, ta.ID)
	}
	got := all[1]
	want := Failure{ID: got.ID, TaskID: ta.ID, Task: "a", Args: []byte("1"), Error: "smtp down", Attempts: 1,
		FailedAt: got.FailedAt, Priority: 2, MaxAttempts: 3, Timeout: time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("failure = %+v, want %+v", got, want)
	}
	if got.FailedAt.Before(before) || time.Since(got.FailedAt) > time.Minute {
		t.Errorf("FailedAt = %v, want about now", got.FailedAt)
	}

	if one, err := q.Failures(ctx, 1); err != nil || len(one) != 1 || one[0].ID != all[0].ID {
		t.Errorf("Failures(1) = %v, %v; want the newest, %d", failureIDs(one), err, all[0].ID)
	}
	byID, err := q.FailureByID(ctx, got.ID)
	if err != nil || fmt.Sprint(byID) != fmt.Sprint(got) {
		t.Errorf("FailureByID = %+v, %v; want %+v", byID, err, got)
	}
	if _, err := q.FailureByID(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("FailureByID(unknown) = %v, want ErrNotFound", err)
	}
}

func TestQueue_RetryFailure(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	mustEnqueueWith(t, q, "a", 1, registry.Options{Priority: 2, MaxAttempts: 3, Timeout: time.Second, Key: "k"})
	failed := mustFail(t, q, "boom")
	// A failure on a later attempt: its retry starts over at attempt 1.
	if _, err := q.DB().Exec(`UPDATE snappea_failed SET attempts = 3`); err != nil {
		t.Fatal(err)
	}
	fs, _ := q.Failures(ctx, 0)

	clearWake(t, q)
	id, err := q.RetryFailure(ctx, fs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !wakePending(q) {
		t.Error("RetryFailure did not wake")
	}
	ts := mustClaim(t, q, 10)
	want := Task{ID: id, Name: "a", Args: []byte("1"), Priority: 2, Attempt: 1, MaxAttempts: 3, Timeout: time.Second}
	if len(ts) != 1 || !sameTask(ts[0], want) || id <= failed.ID {
		t.Errorf("claimed %+v, want %+v", ts, want)
	}
	if fs, _ := q.Failures(ctx, 0); len(fs) != 0 {
		t.Errorf("%d failure records left after the retry, want 0", len(fs))
	}
	if _, err := q.RetryFailure(ctx, fs[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second RetryFailure = %v, want ErrNotFound", err)
	}
}

func TestQueue_RetryAllAndPurgeFailures(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	if n, err := q.RetryAllFailures(ctx); err != nil || n != 0 {
		t.Errorf("RetryAllFailures with none = %d, %v", n, err)
	}
	for i := range 3 {
		mustEnqueueWith(t, q, "t", i, registry.Options{})
		mustFail(t, q, "x")
	}
	n, err := q.RetryAllFailures(ctx)
	if err != nil || n != 3 {
		t.Fatalf("RetryAllFailures = %d, %v; want 3", n, err)
	}
	if got := argsOf(mustClaim(t, q, 10)); got != "0 1 2" {
		t.Errorf("claimed %s, want the three, oldest failure first", got)
	}
	if fs, _ := q.Failures(ctx, 0); len(fs) != 0 {
		t.Errorf("%d failure records left, want 0", len(fs))
	}

	for range 2 {
		mustEnqueueWith(t, q, "t", nil, registry.Options{})
		mustFail(t, q, "x")
	}
	if n, err := q.PurgeFailures(ctx); err != nil || n != 2 {
		t.Errorf("PurgeFailures = %d, %v; want 2", n, err)
	}
	if fs, _ := q.Failures(ctx, 0); len(fs) != 0 {
		t.Errorf("%d failure records left, want 0", len(fs))
	}
}

func TestQueue_PruneFailures(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	ages := []time.Duration{72 * time.Hour, 48 * time.Hour, 24 * time.Hour, time.Hour, time.Minute}
	tests := []struct {
		name    string
		maxAge  time.Duration
		maxRows int
		want    int // deleted: the oldest this many
	}{
		{"neither", 0, 0, 0},
		{"by age", 36 * time.Hour, 0, 2},
		{"by rows", 0, 2, 3},
		{"both, age stricter", 2 * time.Hour, 4, 3},
		{"both, rows stricter", 100 * time.Hour, 1, 4},
		{"nothing beyond", 100 * time.Hour, 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := mustOpen(t, Config{})
			for i, age := range ages {
				if _, err := q.DB().Exec(`INSERT INTO snappea_failed
					(task_id, task, args, error, attempts, failed_at) VALUES (?, 't', '', 'x', 1, ?)`,
					i+1, now.Add(-age).UnixNano()); err != nil {
					t.Fatal(err)
				}
			}
			n, err := q.PruneFailures(ctx, tt.maxAge, tt.maxRows)
			if err != nil || n != tt.want {
				t.Errorf("PruneFailures(%v, %d) = %d, %v; want %d", tt.maxAge, tt.maxRows, n, err, tt.want)
			}
			fs, _ := q.Failures(ctx, 0)
			var got []int64
			for _, f := range fs {
				got = append(got, f.TaskID)
			}
			var want []int64
			for i := len(ages); i > tt.want; i-- {
				want = append(want, int64(i))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("left task ids %v, want %v", got, want)
			}
		})
	}
	q := mustOpen(t, Config{})
	if _, err := q.PruneFailures(ctx, -time.Hour, 0); err == nil {
		t.Error("negative maxAge accepted")
	}
	if _, err := q.PruneFailures(ctx, 0, -1); err == nil {
		t.Error("negative maxRows accepted")
	}
}

// A task built without arguments (nil Args) can still be failed and
// retried: the args column is NOT NULL.
func TestQueue_FailAndRetryNilArgs(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{})
	task := &Task{ID: 7, Name: "t", Attempt: 1}
	if err := q.Fail(ctx, task, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Retry(ctx, task, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n, err := q.RetryAllFailures(ctx); err != nil || n != 1 {
		t.Errorf("RetryAllFailures = %d, %v", n, err)
	}
	if ts := mustClaim(t, q, 10); len(ts) != 2 {
		t.Errorf("claimed %d, want 2", len(ts))
	}
}

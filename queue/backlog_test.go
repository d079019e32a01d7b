package queue

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

// expireBacklogCount makes q's next enqueue count the backlog again, as it
// would once the refresh interval has passed.
func expireBacklogCount(q *Queue) {
	q.backlog.mu.Lock()
	q.backlog.countAt = q.backlog.countAt.Add(-q.backlog.interval)
	q.backlog.mu.Unlock()
}

func TestQueue_MaxBacklog(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{MaxBacklog: 3})
	for range 3 {
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatal(err)
		}
	}
	inTx := func(fn func(tx *sql.Tx) error) error {
		tx, err := q.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		return fn(tx)
	}
	tests := []struct {
		name    string
		enqueue func() error
	}{
		{"Enqueue", func() error { _, err := q.Enqueue(ctx, "t", nil); return err }},
		{"EnqueueWith", func() error {
			_, err := q.EnqueueWith(ctx, "t", nil, registry.Options{Priority: 9})
			return err
		}},
		{"EnqueueWith delayed", func() error {
			_, err := q.EnqueueWith(ctx, "t", nil, registry.Options{Delay: time.Hour})
			return err
		}},
		{"EnqueueMany", func() error { _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}}); return err }},
		{"EnqueueTx", func() error {
			return inTx(func(tx *sql.Tx) error { _, err := q.EnqueueTx(ctx, tx, "t", nil); return err })
		}},
		{"EnqueueWithTx", func() error {
			return inTx(func(tx *sql.Tx) error {
				_, err := q.EnqueueWithTx(ctx, tx, "t", nil, registry.Options{})
				return err
			})
		}},
		{"EnqueueManyTx", func() error {
			return inTx(func(tx *sql.Tx) error { _, err := q.EnqueueManyTx(ctx, tx, []Job{{Task: "t"}}); return err })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.enqueue()
			if !errors.Is(err, ErrBacklogFull) {
				t.Fatalf("%s past the limit = %v, want ErrBacklogFull", tt.name, err)
			}
			for _, s := range []string{"behind or stopped", "shed load", "MaxBacklog", "limit 3"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q does not say %q", err, s)
				}
			}
		})
	}
	if n := countRows(t, q, "1"); n != 3 {
		t.Errorf("%d rows, want the 3 enqueued before the limit", n)
	}

	// Retries re-run accepted work: they are not refused.
	if _, err := q.Retry(ctx, &Task{ID: 1, Name: "t", Args: []byte("null"), Attempt: 1}, time.Time{}); err != nil {
		t.Errorf("Retry at the limit = %v, want nil", err)
	}

	// The daemon catches up: once the count is refreshed, there is room.
	mustClaim(t, q, 10)
	expireBacklogCount(q)
	for i := range 3 {
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatalf("enqueue %d after claims made room: %v", i, err)
		}
	}
	// Without a refresh, this Queue's own enqueues count.
	if _, err := q.Enqueue(ctx, "t", nil); !errors.Is(err, ErrBacklogFull) {
		t.Errorf("4th enqueue = %v, want ErrBacklogFull", err)
	}
}

func TestQueue_MaxBacklogBatchIsAllOrNone(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{MaxBacklog: 3})
	if _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}, {Task: "t"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}, {Task: "t"}}); !errors.Is(err, ErrBacklogFull) {
		t.Errorf("batch past the limit = %v, want ErrBacklogFull", err)
	}
	if n := countRows(t, q, "1"); n != 2 {
		t.Errorf("%d rows, want 2: a refused batch writes nothing", n)
	}
	if _, err := q.EnqueueMany(ctx, []Job{{Task: "t"}}); err != nil {
		t.Errorf("batch up to the limit = %v", err)
	}
}

// Tasks delayed into the future are not backlog; at the limit, they are
// refused all the same.
func TestQueue_MaxBacklogDelayed(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{MaxBacklog: 2})
	for i := range 5 {
		if _, err := q.EnqueueWith(ctx, "t", nil, registry.Options{Delay: time.Hour}); err != nil {
			t.Fatalf("delayed enqueue %d: %v", i, err)
		}
	}
	expireBacklogCount(q)
	for i := range 2 {
		if _, err := q.Enqueue(ctx, "t", nil); err != nil {
			t.Fatalf("enqueue %d with only delayed tasks waiting: %v", i, err)
		}
	}
	if _, err := q.EnqueueWith(ctx, "t", nil, registry.Options{Delay: time.Hour}); !errors.Is(err, ErrBacklogFull) {
		t.Errorf("delayed enqueue at the limit = %v, want ErrBacklogFull", err)
	}
	// Once due, delayed tasks count, promoted or not.
	mustClaim(t, q, 2)
	if _, err := q.DB().Exec(`UPDATE snappea_tasks SET run_at = ?`, time.Now().Add(-time.Second).UnixNano()); err != nil {
		t.Fatal(err)
	}
	expireBacklogCount(q)
	if _, err := q.Enqueue(ctx, "t", nil); !errors.Is(err, ErrBacklogFull) {
		t.Errorf("enqueue with 5 tasks due = %v, want ErrBacklogFull", err)
	}
}

// A duplicate writes nothing and takes no room.
func TestQueue_MaxBacklogDuplicates(t *testing.T) {
	ctx := context.Background()
	q := mustOpen(t, Config{MaxBacklog: 2})
	for range 5 {
		if _, err := q.EnqueueWith(ctx, "t", nil, registry.Options{Key: "k"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.EnqueueMany(ctx, []Job{{Task: "t", Options: registry.Options{Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, "t", nil); err != nil {
		t.Errorf("enqueue after duplicates = %v, want room for it", err)
	}
}

// Other processes' enqueues count once this Queue counts again.
func TestQueue_MaxBacklogOtherProcesses(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	limited := mustOpen(t, Config{Dir: dir, MaxBacklog: 3})
	other := mustOpen(t, Config{Dir: dir})
	if _, err := limited.Enqueue(ctx, "t", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := other.EnqueueMany(ctx, []Job{{Task: "t"}, {Task: "t"}, {Task: "t"}}); err != nil {
		t.Fatal(err)
	}
	expireBacklogCount(limited)
	if _, err := limited.Enqueue(ctx, "t", nil); !errors.Is(err, ErrBacklogFull) {
		t.Errorf("enqueue with 4 waiting, limit 3 = %v, want ErrBacklogFull", err)
	}
}

func TestConfig_MaxBacklogNegative(t *testing.T) {
	if err := (&Config{MaxBacklog: -1}).setDefaults(); err == nil || !strings.Contains(err.Error(), "MaxBacklog") {
		t.Errorf("negative MaxBacklog = %v, want an error naming it", err)
	}
}

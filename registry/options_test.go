package registry

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOptions_Merge(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	defaults := Options{Priority: 5, Delay: time.Minute, Timeout: time.Second, MaxAttempts: 3, Key: "d"}
	tests := []struct {
		name       string
		base, over Options
		want       Options
	}{
		{"nothing over", defaults, Options{}, defaults},
		{"nothing under", Options{}, defaults, defaults},
		{"every field over", defaults,
			Options{Priority: -1, Delay: time.Hour, Timeout: time.Minute, MaxAttempts: 1, Key: "o"},
			Options{Priority: -1, Delay: time.Hour, Timeout: time.Minute, MaxAttempts: 1, Key: "o"}},
		{"some fields over", defaults, Options{Priority: 9, Key: "o"},
			Options{Priority: 9, Delay: time.Minute, Timeout: time.Second, MaxAttempts: 3, Key: "o"}},
		{"RunAt over Delay replaces it", defaults, Options{RunAt: at},
			Options{Priority: 5, RunAt: at, Timeout: time.Second, MaxAttempts: 3, Key: "d"}},
		{"Delay over RunAt replaces it", Options{RunAt: at}, Options{Delay: time.Hour},
			Options{Delay: time.Hour}},
		{"zero priority cannot override", Options{Priority: 5}, Options{Priority: 0}, Options{Priority: 5}},
		{"Replace and Debounce over", Options{Key: "d"}, Options{OnDuplicate: Replace, Debounce: time.Second},
			Options{Key: "d", OnDuplicate: Replace, Debounce: time.Second}},
		{"a default Replace and Debounce stay", Options{OnDuplicate: Replace, Debounce: time.Second}, Options{Key: "o"},
			Options{Key: "o", OnDuplicate: Replace, Debounce: time.Second}},
		{"Delay over Debounce replaces it", Options{OnDuplicate: Replace, Debounce: time.Second}, Options{Delay: time.Hour},
			Options{OnDuplicate: Replace, Delay: time.Hour}},
		{"Debounce over Delay replaces it", defaults, Options{OnDuplicate: Replace, Debounce: time.Second},
			Options{Priority: 5, Timeout: time.Second, MaxAttempts: 3, Key: "d", OnDuplicate: Replace, Debounce: time.Second}},
		{"Keep over Replace drops its Debounce", Options{OnDuplicate: Replace, Debounce: time.Second}, Options{OnDuplicate: Keep},
			Options{OnDuplicate: Keep}},
		{"Isolated is the definition's", Options{Isolated: true}, Options{Priority: 1}, Options{Priority: 1, Isolated: true}},
		{"an enqueue's Isolated is ignored", Options{}, Options{Isolated: true}, Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.base.Merge(tt.over); got != tt.want {
				t.Errorf("Merge = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOptions_Validate(t *testing.T) {
	tests := []struct {
		opts  Options
		field string // "" for valid
	}{
		{Options{}, ""},
		{Options{Priority: -10, Delay: time.Hour, RunAt: time.Now(), Timeout: time.Second, MaxAttempts: 5, Key: "k"}, ""},
		{Options{RunAt: time.Unix(0, 0).Add(-time.Hour)}, ""}, // in the past: now
		{Options{Delay: -time.Second}, "Delay"},
		{Options{Timeout: -1}, "Timeout"},
		{Options{MaxAttempts: -1}, "MaxAttempts"},
		{Options{OnDuplicate: Replace, Debounce: time.Second, Delay: time.Hour, Key: "k"}, "Debounce and Delay"},
		{Options{OnDuplicate: Replace, Debounce: time.Second, RunAt: time.Now()}, "Debounce and Delay or RunAt"},
		{Options{OnDuplicate: Replace, Debounce: time.Second}, ""}, // a definition: the Key comes per enqueue
		{Options{OnDuplicate: Replace, Delay: time.Hour}, ""},      // delays the first enqueue; a replace keeps it
		{Options{OnDuplicate: Keep, Key: "k"}, ""},
		{Options{OnDuplicate: Replace, Debounce: -1}, "Debounce"},
		{Options{Debounce: time.Second, Key: "k"}, "needs OnDuplicate: Replace"},
		{Options{OnDuplicate: Keep, Debounce: time.Second, Key: "k"}, "needs OnDuplicate: Replace"},
		{Options{OnDuplicate: 7}, "OnDuplicate 7"},
		{Options{OnDuplicate: -1}, "OnDuplicate -1"},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		if tt.field == "" {
			if err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tt.opts, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("Validate(%+v) = %v, want ErrBadOptions naming %s", tt.opts, err, tt.field)
		}
	}
}

func TestOptions_ValidateEnqueue(t *testing.T) {
	if err := (Options{OnDuplicate: Replace, Key: "k", Debounce: time.Second}).ValidateEnqueue(); err != nil {
		t.Errorf("Replace with a Key: %v, want nil", err)
	}
	err := Options{OnDuplicate: Replace, Debounce: time.Second}.ValidateEnqueue()
	if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), "needs a Key") {
		t.Errorf("Replace without a Key: got %v, want ErrBadOptions saying it needs a Key", err)
	}
	err = Options{Delay: -1}.ValidateEnqueue()
	if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), "Delay") {
		t.Errorf("ValidateEnqueue of a negative Delay: got %v, want Validate's error", err)
	}
}

func TestDuplicate_String(t *testing.T) {
	for d, want := range map[Duplicate]string{0: "not set", Keep: "Keep", Replace: "Replace", 9: "Duplicate(9)"} {
		if got := d.String(); got != want {
			t.Errorf("Duplicate(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}

func TestRegister_Defaults(t *testing.T) {
	r := New()
	defaults := Options{Priority: 2, Timeout: time.Minute, Key: "only-one"}
	task := Register(r, "with", func(context.Context, struct{}) error { return nil }, defaults)
	plain := Register(r, "without", func(context.Context, struct{}) error { return nil })
	if got := task.Options(); got != defaults {
		t.Errorf("Task.Options = %+v, want %+v", got, defaults)
	}
	if got := r.Options("with"); got != defaults {
		t.Errorf("Registry.Options = %+v, want %+v", got, defaults)
	}
	if got := plain.Options(); got != (Options{}) {
		t.Errorf("Options without defaults = %+v, want zero", got)
	}
	if got := r.Options("nope"); got != (Options{}) {
		t.Errorf("Options of an unknown task = %+v, want zero", got)
	}
}

// fakeEnqueuer records what a Task asked it to enqueue.
type fakeEnqueuer struct {
	task string
	args any
	opts Options
	tx   *sql.Tx
}

func (f *fakeEnqueuer) Enqueue(ctx context.Context, task string, args any) (int64, error) {
	panic("Task must pass its defaults: EnqueueWith, not Enqueue")
}

func (f *fakeEnqueuer) EnqueueTx(ctx context.Context, tx *sql.Tx, task string, args any) (int64, error) {
	panic("Task must pass its defaults: EnqueueWithTx, not EnqueueTx")
}

func (f *fakeEnqueuer) EnqueueWith(ctx context.Context, task string, args any, opts Options) (Result, error) {
	f.task, f.args, f.opts = task, args, opts
	return Result{ID: 7, Duplicate: opts.Key != ""}, nil
}

func (f *fakeEnqueuer) EnqueueWithTx(ctx context.Context, tx *sql.Tx, task string, args any, opts Options) (Result, error) {
	f.tx = tx
	return f.EnqueueWith(ctx, task, args, opts)
}

func TestTask_EnqueueAppliesDefaults(t *testing.T) {
	ctx := context.Background()
	r := New()
	defaults := Options{Priority: 2, Timeout: time.Minute, MaxAttempts: 3}
	task := Register(r, "t", func(context.Context, int) error { return nil }, defaults)
	tx := &sql.Tx{}
	tests := []struct {
		name    string
		enqueue func(q Enqueuer) (int64, error)
		want    Options
		tx      *sql.Tx
	}{
		{"Enqueue", func(q Enqueuer) (int64, error) { return task.Enqueue(ctx, q, 1) }, defaults, nil},
		{"EnqueueTx", func(q Enqueuer) (int64, error) { return task.EnqueueTx(ctx, q, tx, 1) }, defaults, tx},
		{"EnqueueWith", func(q Enqueuer) (int64, error) {
			res, err := task.EnqueueWith(ctx, q, 1, Options{Priority: -1, Key: "k"})
			if !res.Duplicate {
				t.Error("Result not passed through")
			}
			return res.ID, err
		}, Options{Priority: -1, Timeout: time.Minute, MaxAttempts: 3, Key: "k"}, nil},
		{"EnqueueWithTx", func(q Enqueuer) (int64, error) {
			res, err := task.EnqueueWithTx(ctx, q, tx, 1, Options{MaxAttempts: 1})
			return res.ID, err
		}, Options{Priority: 2, Timeout: time.Minute, MaxAttempts: 1}, tx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeEnqueuer{}
			id, err := tt.enqueue(q)
			if err != nil || id != 7 {
				t.Errorf("id, err = %d, %v; want 7, nil", id, err)
			}
			if q.task != "t" || q.args != 1 || q.opts != tt.want || q.tx != tt.tx {
				t.Errorf("enqueued %s %v %+v (tx %p), want t 1 %+v (tx %p)", q.task, q.args, q.opts, q.tx, tt.want, tt.tx)
			}
		})
	}
}

func TestOptions_DueAt(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		name string
		o    Options
		want time.Time
	}{
		{"at once", Options{}, time.Time{}},
		{"delay", Options{Delay: time.Minute}, now.Add(time.Minute)},
		{"run at later", Options{RunAt: now.Add(time.Hour)}, now.Add(time.Hour)},
		{"run at past", Options{RunAt: now.Add(-time.Hour)}, time.Time{}},
		{"debounce", Options{OnDuplicate: Replace, Debounce: time.Second}, now.Add(time.Second)},
	} {
		if got := tt.o.DueAt(now); !got.Equal(tt.want) {
			t.Errorf("%s: DueAt = %v, want %v", tt.name, got, tt.want)
		}
	}
}

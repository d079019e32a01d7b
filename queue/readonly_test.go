package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := OpenReadOnly(ctx, Config{Dir: dir}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no database: err = %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenReadOnly created the data directory: %v", err)
	}

	w := mustOpen(t, Config{Dir: dir})
	if _, err := w.Enqueue(ctx, "t", nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	names := func() []string {
		es, _ := os.ReadDir(dir)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	before := names()

	q, err := OpenReadOnly(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.Stats(ctx)
	if err != nil || st.Pending != 1 {
		t.Errorf("Stats = %+v, %v; want 1 pending", st, err)
	}
	if _, err := q.Enqueue(ctx, "t", nil); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Enqueue on a read-only queue: %v, want ErrReadOnly", err)
	}
	if _, err := q.Claim(ctx, 1); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Claim on a read-only queue: %v, want ErrReadOnly", err)
	}
	q.Close()
	if after := names(); !slices.Equal(before, after) {
		t.Errorf("files %v before, %v after: OpenReadOnly left something behind", before, after)
	}

	// An older schema is not upgraded: that takes a writer.
	w2 := mustOpen(t, Config{Dir: dir})
	if _, err := w2.DB().ExecContext(ctx, `DELETE FROM snappea_migrations WHERE version = (SELECT max(version) FROM snappea_migrations)`); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	if _, err := OpenReadOnly(ctx, Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "snappea migrate") {
		t.Errorf("older schema: err = %v, want it to say 'snappea migrate'", err)
	}
}

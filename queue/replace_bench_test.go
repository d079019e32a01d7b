package queue

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

// BenchmarkEnqueueKeyed is a single enqueue with a unique key: new, a
// duplicate kept (Keep), or a replace of the pending holder, with and
// without a debounce.
func BenchmarkEnqueueKeyed(b *testing.B) {
	for _, bc := range []struct {
		name  string
		opts  registry.Options
		fresh bool // a new key each time: every enqueue writes a task
	}{
		{"new", registry.Options{Key: "k"}, true},
		{"duplicate", registry.Options{Key: "k"}, false},
		{"replace", registry.Options{Key: "k", OnDuplicate: registry.Replace}, false},
		{"replace-debounce", registry.Options{Key: "k", OnDuplicate: registry.Replace, Debounce: time.Minute}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			q := mustOpen(b, Config{})
			opts := bc.opts
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if bc.fresh {
					i++
					opts.Key = "key:" + strconv.Itoa(i)
				}
				if _, err := q.EnqueueWith(ctx, "snappea.noop", nil, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

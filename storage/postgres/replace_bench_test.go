package postgres

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// BenchmarkInsertKeyed is one row with a key: new each time, a duplicate
// kept, or a replace of the pending holder (ON CONFLICT DO UPDATE).
func BenchmarkInsertKeyed(b *testing.B) {
	for _, bc := range []struct {
		name    string
		fresh   bool
		replace bool
	}{
		{"new", true, false},
		{"duplicate", false, false},
		{"replace", false, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			be := mustOpen(b, Config{})
			ctx := context.Background()
			rows := []storage.Row{{Task: "bench", Args: []byte(`{"n":1}`), CreatedAt: time.Now(), Key: "k",
				Replace: bc.replace}}
			b.ReportAllocs()
			k := 0
			for b.Loop() {
				if bc.fresh {
					k++
					rows[0].Key = "k" + strconv.Itoa(k)
				}
				if _, err := be.Insert(ctx, nil, rows); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}

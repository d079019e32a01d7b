package queue

import (
	"context"
	"testing"
)

func BenchmarkZZClaimSQL(b *testing.B) {
	for _, v := range []struct{ name, sql string }{
		{"new", claimSQL},
		{"old-shape-4cols", `DELETE FROM snappea_tasks WHERE id IN (SELECT id FROM snappea_tasks ORDER BY id LIMIT ?) RETURNING id, task, args, created_at`},
		{"new-where-4cols", `DELETE FROM snappea_tasks WHERE id IN (SELECT id FROM snappea_tasks WHERE run_at = 0 ORDER BY priority DESC, id LIMIT ?) RETURNING id, task, args, created_at`},
	} {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			q := mustOpen(b, Config{})
			stmt, err := q.DB().Prepare(v.sql)
			if err != nil {
				b.Fatal(err)
			}
			jobs := make([]Job, 1000)
			for i := range jobs {
				jobs[i] = Job{Task: "snappea.noop"}
			}
			q.EnqueueMany(ctx, jobs)
			for b.Loop() {
				rows, err := stmt.Query(100)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				rows.Close()
				if n < 100 {
					b.StopTimer()
					q.EnqueueMany(ctx, jobs)
					b.StartTimer()
				}
			}
		})
	}
}

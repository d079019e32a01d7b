package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// Claim, next-due and promote must each be one range search of the claim
// index, whatever the queue holds: no table scan, no sort.
func TestBackend_QueryPlans(t *testing.T) {
	ctx := context.Background()
	q := mustOpenIn(t, t.TempDir(), Config{})
	rows := make([]storage.Row, 500)
	now := time.Now()
	for i := range rows {
		rows[i] = storage.Row{Task: "t", CreatedAt: now, Priority: i % 7}
		if i%3 > 0 {
			rows[i].RunAt = now.Add(time.Duration(i%3) * time.Hour)
		}
	}
	if _, err := q.Insert(ctx, nil, rows); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		query string
		args  []any
		index string
	}{
		{"claim", claimSQL, []any{16}, "snappea_tasks_claim"},
		{"claim for a daemon", claimSQLFor(nil), []any{1, 2, 16}, "snappea_tasks_claim"},
		{"next due", nextDueSQL, nil, "snappea_tasks_claim"},
		{"promote", promoteSQL, []any{time.Now().UnixNano()}, "snappea_tasks_claim"},
		{"backlog count", countDueSQL, []any{time.Now().UnixNano(), 1000}, "snappea_tasks_claim"},
		{"key holder", keyHolderSQL, []any{"k"}, "snappea_tasks_key"},
		{"id span", idSpanSQL, nil, ""}, // the primary key's first and last entries
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := q.DB().QueryContext(ctx, `EXPLAIN QUERY PLAN `+tt.query, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			searched := false
			for _, step := range plan {
				// claimSQLFor names the queue t.
				step = strings.Replace(step, "SEARCH t USING", "SEARCH snappea_tasks USING", 1)
				step = strings.Replace(step, "SCAN t ", "SCAN snappea_tasks ", 1)
				if tt.index == "" && step == "SEARCH snappea_tasks" ||
					strings.HasPrefix(step, "SEARCH snappea_tasks USING") && strings.Contains(step, " INDEX "+tt.index+" ") {
					searched = true
				}
				if strings.HasPrefix(step, "SCAN snappea_tasks") || strings.Contains(step, "TEMP B-TREE") {
					t.Errorf("plan step %q: a scan or a sort", step)
				}
			}
			if !searched {
				t.Errorf("plan %q does not SEARCH snappea_tasks (index %q)", plan, tt.index)
			}
		})
	}
}

// TestPendingSQL_plan: every listing reads the claim index in its order,
// never sorting and never reading the table in rowid order.
func TestPendingSQL_plan(t *testing.T) {
	q := mustOpenIn(t, t.TempDir(), Config{})
	for _, f := range []storage.PendingFilter{{}, {Newest: true}, {Delayed: true}, {Delayed: true, Newest: true},
		{Task: "t"}, {Task: "t", Delayed: true, Newest: true}} {
		f.Limit = 10
		query, args := pendingSQL(f)
		rows, err := q.DB().QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+query, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if len(plan) != 1 || !strings.Contains(plan[0], "USING INDEX snappea_tasks_claim") {
			t.Errorf("%+v: plan %q, want one step on the claim index", f, plan)
		}
		if strings.Contains(strings.Join(plan, "\n"), "TEMP B-TREE") {
			t.Errorf("%+v: plan %q sorts", f, plan)
		}
	}
}

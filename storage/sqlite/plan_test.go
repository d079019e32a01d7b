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
		{"replace", replaceSQL, []any{"t", "{}", 1, 0, 1, 0, 0, nil, true, 5, "k"}, "snappea_tasks_key"},
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
// never sorting and never reading the table in rowid order, also each
// range of a page after a cursor.
func TestPendingSQL_plan(t *testing.T) {
	q := mustOpenIn(t, t.TempDir(), Config{})
	prio := 3
	var queries []string
	var queryArgs [][]any
	for _, f := range []storage.PendingFilter{{}, {Newest: true}, {Delayed: true}, {Delayed: true, Newest: true},
		{Task: "t"}, {Task: "t", Delayed: true, Newest: true}, {Ready: true}, {Priority: &prio},
		{Priority: &prio, Task: "t", Newest: true},
		{After: &storage.PendingCursor{Priority: 2, ID: 7}}, {After: &storage.PendingCursor{ID: 7}, Newest: true},
		{After: &storage.PendingCursor{RunAt: time.Unix(5, 0), Priority: 1, ID: 7}, Task: "t", Delayed: true}} {
		for _, seg := range pendingSegments(f) {
			query, args := pendingSQL(f, seg, 10)
			queries, queryArgs = append(queries, query), append(queryArgs, args)
		}
	}
	for i, query := range queries {
		args := queryArgs[i]
		f := query
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
		// One priority among the delayed tasks: the index gives them by
		// due time, and only those due at the same time are sorted by id.
		if strings.Contains(query, "AND priority = ?") && !strings.Contains(query, "run_at = ") &&
			len(plan) == 2 && plan[1] == "USE TEMP B-TREE FOR LAST TERM OF ORDER BY" {
			plan = plan[:1]
		}
		if len(plan) != 1 || !strings.Contains(plan[0], "USING INDEX snappea_tasks_claim") {
			t.Errorf("%+v: plan %q, want one step on the claim index", f, plan)
		}
		if strings.Contains(strings.Join(plan, "\n"), "TEMP B-TREE") {
			t.Errorf("%+v: plan %q sorts", f, plan)
		}
	}
}

// TestCountPendingSQL_plan: the counts are ranges of the claim index; the
// oldest ready task is read in rowid order, never sorted.
func TestCountPendingSQL_plan(t *testing.T) {
	q := mustOpenIn(t, t.TempDir(), Config{})
	rows, err := q.DB().QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+countPendingSQL, 10, 10)
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
	searches := 0
	for _, step := range plan {
		switch {
		case strings.Contains(step, "TEMP B-TREE"):
			t.Errorf("plan %q sorts", plan)
		case strings.HasPrefix(step, "SEARCH snappea_tasks USING COVERING INDEX snappea_tasks_claim"):
			searches++
		case strings.HasPrefix(step, "SCAN snappea_tasks") && strings.Contains(step, "INDEX"):
			t.Errorf("plan step %q reads an index whole", step)
		}
	}
	if searches != 2 {
		t.Errorf("plan %q: want both counts searching the claim index", plan)
	}
}

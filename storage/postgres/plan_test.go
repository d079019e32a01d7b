package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// fill inserts n tasks, every tenth delayed, in batches.
func fill(t testing.TB, b *Backend, n int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	for done := 0; done < n; {
		rows := make([]storage.Row, 0, 1000)
		for i := 0; i < 1000 && done < n; i, done = i+1, done+1 {
			r := storage.Row{Task: "fill", Args: []byte(`{"i":1}`), CreatedAt: now, Priority: done % 3}
			if done%10 == 0 {
				r.RunAt = now.Add(time.Duration(done) * time.Second)
			}
			rows = append(rows, r)
		}
		if _, err := b.Insert(ctx, nil, rows); err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
}

// explain returns the plan of query with args inlined, on conn.
func explain(t *testing.T, conn *sql.Conn, query string, args ...any) string {
	t.Helper()
	for i := len(args); i >= 1; i-- {
		query = strings.ReplaceAll(query, fmt.Sprintf("$%d", i), fmt.Sprint(args[i-1]))
	}
	rows, err := conn.QueryContext(t.Context(), "EXPLAIN "+query)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// TestPlans: claim, promote and the next-due look-up read the claim index,
// never the whole table, with a realistic number of tasks (the statements
// run in a transaction rolled back, as EXPLAIN of a DELETE does not run
// it anyway).
func TestPlans(t *testing.T) {
	b := mustOpen(t, Config{})
	fill(t, b, 20000)
	ctx := t.Context()
	conn, err := b.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `ANALYZE `+b.q.tasks); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Hour).UnixNano()
	for _, tc := range []struct {
		name, query string
		args        []any
		index       string
	}{
		{"claim", b.q.claim, []any{16}, "tasks_claim"},
		{"claim 100", b.q.claim, []any{100}, "tasks_claim"},
		{"promote", b.q.promote, []any{now}, "tasks_claim"},
		{"next due", b.q.nextDue, nil, "tasks_claim"},
		{"backlog", b.q.countDue, []any{now, 1001}, "tasks_claim"},
		{"id span", b.q.idSpan, nil, "tasks_pkey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := explain(t, conn, tc.query, tc.args...)
			if strings.Contains(plan, "Seq Scan") {
				t.Errorf("plan has a sequential scan:\n%s", plan)
			}
			if !strings.Contains(plan, tc.index) {
				t.Errorf("plan does not use %s:\n%s", tc.index, plan)
			}
			if tc.name == "claim" && strings.Contains(plan, "Sort") {
				t.Errorf("claim plan sorts instead of reading the index in order:\n%s", plan)
			}
		})
	}
}

// TestTasksTable_autovacuum: the migration set the churn-friendly
// storage parameters.
func TestTasksTable_autovacuum(t *testing.T) {
	b := mustOpen(t, Config{})
	var opts string
	err := b.DB().QueryRowContext(t.Context(), `SELECT array_to_string(reloptions, ',') FROM pg_class
		WHERE oid = $1::regclass`, b.q.tasks).Scan(&opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"autovacuum_vacuum_scale_factor=0.01", "autovacuum_vacuum_threshold=1000", "fillfactor=90"} {
		if !strings.Contains(opts, want) {
			t.Errorf("tasks reloptions %q lack %s", opts, want)
		}
	}
}

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// The claim with limits (storage.ClaimRequest.MaxRunning, serial keys).
// Every limit is read from the ledger in the claim's own statement, and
// SQLite has one writer at a time, so no two claims can both start the
// last task a limit allows.

// serialFreeSQL holds for a queued row t whose serial key, if it has one,
// lets it run: no task with the key in flight, and none older queued
// (ready or delayed: the key's tasks run in the order they were queued).
const serialFreeSQL = `(t.serial_key IS NULL OR (
		NOT EXISTS (SELECT 1 FROM snappea_inflight f WHERE f.serial_key = t.serial_key) AND
		NOT EXISTS (SELECT 1 FROM snappea_tasks o WHERE o.serial_key = t.serial_key AND o.id < t.id)))`

const claimColumns = `id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key`

// claimSQLFor is the claim for a daemon whose limited task names are
// names (sorted): parameters ?1 the owner, ?2 the claim's time, ?3 the
// most tasks, then each name and its limit. The tasks of names without a
// limit are one range of the claim index, as Claim's; each limited name
// is a range of its own, limited to the tasks it may still start. Rows a
// limit holds back are skipped, never waited on. ?3 is used as ?3+0, an
// expression, for the reason claimSQL gives.
func claimSQLFor(names []string) string {
	if len(names) == 0 {
		// The common case, one range of the claim index as Claim's is:
		// no compound select, whose results SQLite would sort again.
		return `INSERT INTO snappea_inflight
		(id, owner, started, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key)
		SELECT id, ?1, ?2, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key
		FROM snappea_tasks t WHERE run_at = 0 AND ` + serialFreeSQL + `
		ORDER BY priority DESC, id LIMIT ?3+0
		RETURNING id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key`
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO snappea_inflight
		(id, owner, started, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key)
		SELECT id, ?1, ?2, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key FROM (
		SELECT * FROM (SELECT ` + claimColumns + ` FROM snappea_tasks t WHERE run_at = 0`)
	b.WriteString(` AND task NOT IN (`)
	for i := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "?%d", 4+2*i)
	}
	b.WriteString(`)`)
	b.WriteString(` AND ` + serialFreeSQL + ` ORDER BY priority DESC, id LIMIT ?3+0)`)
	for i := range names {
		name, limit := 4+2*i, 5+2*i
		fmt.Fprintf(&b, `
		UNION ALL
		SELECT * FROM (SELECT `+claimColumns+` FROM snappea_tasks t WHERE run_at = 0 AND task = ?%d AND `+serialFreeSQL+`
			ORDER BY priority DESC, id
			LIMIT max(?%d - (SELECT count(*) FROM snappea_inflight f WHERE f.task = ?%d), 0))`, name, limit, name)
	}
	b.WriteString(`)
		ORDER BY priority DESC, id LIMIT ?3+0
		RETURNING id, task, args, created_at, priority, attempt, max_attempts, timeout_ns, key, serial_key`)
	return b.String()
}

// claimStmts are the prepared claims, by the set of limited names: a
// daemon's limits rarely change, so there is usually one.
type claimStmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns the claim for the names in limits (and the order of its
// name parameters).
func (c *claimStmts) get(ctx context.Context, db *sql.DB, limits map[string]int) (*sql.Stmt, []string, error) {
	names := make([]string, 0, len(limits))
	for n := range limits {
		names = append(names, n)
	}
	slices.Sort(names)
	key := strings.Join(names, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[key]; ok {
		return s, names, nil
	}
	s, err := db.PrepareContext(ctx, claimSQLFor(names))
	if err != nil {
		return nil, nil, fmt.Errorf("prepare the claim: %w", dbError(err))
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[key] = s
	return s, names, nil
}

package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/snappea/snappea/storage"
)

// COPY writes a large chunk about twice as fast as INSERT ... SELECT FROM
// unnest (the server inserts it a page at a time), but pgx offers it on
// its own *pgx.Conn only, and a *sql.Tx does not give its connection
// away. So the pool's connections are copyConns: a copyRequest carried in
// the context of an ExecContext of copyProbe, on a transaction of this
// backend's pool, runs as COPY on the transaction's own connection. The
// same probe on any other connection (a transaction of the application's
// own *sql.DB) is an ordinary statement that does nothing, and the request
// stays undone: the caller then writes the rows with INSERT.

// copyMin is the smallest chunk written with COPY: below it the round
// trip that draws the ids costs more than COPY saves.
const copyMin = 1000

// copyProbe is the statement that carries a copyRequest.
const copyProbe = `SELECT 'snappea copy probe' WHERE false`

type copyKey struct{}

// copyRequest is a chunk of rows without keys for a copyConn to write.
type copyRequest struct {
	b    *Backend
	c    *columns
	ids  []int64 // the rows' ids, in the rows' order
	done bool    // a copyConn ran the request (err is its outcome)
	err  error
}

// connector makes the pool's connections copyConns.
type connector struct{ driver.Connector }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if sc, ok := dc.(*stdlib.Conn); ok {
		return &copyConn{sc}, nil
	}
	return dc, nil
}

// copyConn is pgx's database/sql connection, and runs copyRequests.
type copyConn struct{ *stdlib.Conn }

func (c *copyConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	req, ok := ctx.Value(copyKey{}).(*copyRequest)
	pc := c.Conn.Conn()
	// COPY only inside a transaction in progress, never in autocommit
	// (where a failed chunk would leave the others written) nor in a
	// failed one (the probe then fails as any statement would).
	if !ok || query != copyProbe || pc.IsClosed() || pc.PgConn().TxStatus() != 'T' {
		return c.Conn.ExecContext(ctx, query, args)
	}
	req.done = true
	req.err = req.run(ctx, pc)
	if req.err != nil {
		return nil, req.err
	}
	return driver.RowsAffected(len(req.ids)), nil
}

// run draws the chunk's ids and notifies the daemons in one statement,
// then COPYs the rows with those ids. The notification is delivered at
// commit, so only if the rows are written.
func (r *copyRequest) run(ctx context.Context, pc *pgx.Conn) error {
	n := len(r.c.task)
	var woke bool
	if err := pc.QueryRow(ctx, r.b.q.drawIDs, n, r.b.wakeChan).Scan(&r.ids, &woke); err != nil {
		return fmt.Errorf("draw %d ids: %w", n, err)
	}
	if len(r.ids) != n {
		return fmt.Errorf("draw %d ids: the database returned %d", n, len(r.ids))
	}
	// nextval runs in the series' order; sorted, the ids are certainly the
	// rows' order (FIFO).
	slices.Sort(r.ids)
	copied, err := pc.CopyFrom(ctx, pgx.Identifier{r.b.cfg.Schema, "tasks"}, copyColumns, &copySource{r: r, i: -1})
	if err != nil {
		return fmt.Errorf("copy %d rows: %w", n, err)
	}
	if copied != int64(n) {
		return fmt.Errorf("copy %d rows: the database wrote %d", n, copied)
	}
	return nil
}

var copyColumns = []string{"id", "task", "args", "created_at", "priority", "run_at", "attempt", "max_attempts", "timeout_ns"}

// copySource hands pgx the rows of a copyRequest, one slice for every
// row: pgx encodes a row before it asks for the next. (Pointers into the
// columns would save boxing the values, but pgx dereferences them by
// reflection, which allocates more.)
type copySource struct {
	r    *copyRequest
	i    int
	vals [9]any
}

func (s *copySource) Next() bool { s.i++; return s.i < len(s.r.ids) }

func (s *copySource) Values() ([]any, error) {
	c, i := s.r.c, s.i
	s.vals = [9]any{s.r.ids[i], c.task[i], c.args[i], c.created[i], c.priority[i], c.runAt[i],
		c.attempt[i], c.maxAttempts[i], c.timeout[i]}
	return s.vals[:], nil
}

func (s *copySource) Err() error { return nil }

// insertCopy writes a chunk without keys with COPY if tx is a transaction
// of this backend's pool, appending its ids to out. ok is false if it is
// not (nothing was written; use INSERT).
func (b *Backend) insertCopy(ctx context.Context, tx *sql.Tx, c *columns, out []storage.Inserted) (_ []storage.Inserted, ok bool, _ error) {
	req := &copyRequest{b: b, c: c}
	_, err := tx.ExecContext(context.WithValue(ctx, copyKey{}, req), copyProbe)
	if !req.done {
		return out, false, err
	}
	if req.err != nil {
		return nil, true, req.err
	}
	b.copies.Add(1)
	for _, id := range req.ids {
		out = append(out, storage.Inserted{ID: id})
	}
	return out, true, nil
}

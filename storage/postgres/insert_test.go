package postgres

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/storage"
)

// TestInsert_largeBatches: one Insert call of more rows than a statement
// takes, with and without keys, in a transaction of the backend's pool
// (written with COPY), in one of another pool (written with INSERT) and in
// none: the ids come back in the rows' order and claim in it, a key held
// by an earlier chunk reports that chunk's row, and a bad row anywhere
// writes nothing.
func TestInsert_largeBatches(t *testing.T) {
	b := mustOpen(t, Config{})
	ctx := t.Context()
	other, err := sql.Open("pgx", testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	const n = 2*insertChunk + 10
	rows := make([]storage.Row, n)
	for i := range rows {
		rows[i] = storage.Row{Task: "t", Args: []byte(fmt.Sprintf(`{"i":%d}`, i)), CreatedAt: time.Now()}
	}
	keyed := make([]storage.Row, n)
	copy(keyed, rows)
	keyed[1].Key, keyed[2*insertChunk+1].Key = "k", "k" // the second in a later chunk
	keyed[n-1].Key = "last"

	for _, c := range []struct {
		name       string
		db         *sql.DB // nil: no transaction
		rows       []storage.Row
		wantCopies int64
	}{
		// The last chunk, 10 rows, is below copyMin.
		{"own pool", b.DB(), rows, 2},
		{"other pool", other, rows, 0},
		{"no transaction", nil, rows, 2},
		{"keys, own pool", b.DB(), keyed, 1}, // only the chunk without keys
		{"keys, other pool", other, keyed, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			copies := b.copies.Load()
			var out []storage.Inserted
			if c.db == nil {
				out, err = b.Insert(ctx, nil, c.rows)
			} else {
				err = func() error {
					tx, err := c.db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					defer tx.Rollback()
					if out, err = b.Insert(ctx, tx, c.rows); err != nil {
						return err
					}
					return tx.Commit()
				}()
			}
			if err != nil {
				t.Fatalf("Insert of %d rows: %v", n, err)
			}
			if got := b.copies.Load() - copies; got != c.wantCopies {
				t.Errorf("chunks written with COPY: got %d, want %d", got, c.wantCopies)
			}
			if len(out) != n {
				t.Fatalf("Insert returned %d results for %d rows", len(out), n)
			}
			for i := 1; i < n; i++ {
				if c.rows[i].Key == "k" && i > 1 {
					if !out[i].Duplicate || out[i].ID != out[1].ID {
						t.Errorf("row %d, key held by row 1 (id %d): got %+v, want a duplicate of it", i, out[1].ID, out[i])
					}
					continue
				}
				if out[i].Duplicate || out[i].ID <= out[i-1].ID && !out[i-1].Duplicate {
					t.Fatalf("results %d and %d: %+v, %+v; want new ids in the rows' order", i-1, i, out[i-1], out[i])
				}
			}
			want := n
			if c.rows[2*insertChunk+1].Key != "" {
				want--
			}
			ts, err := b.Claim(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != want {
				t.Fatalf("claimed %d tasks, want %d", len(ts), want)
			}
			for i, j := 0, 0; i < n; i++ {
				if out[i].Duplicate {
					continue
				}
				if ts[j].ID != out[i].ID || string(ts[j].Args) != string(c.rows[i].Args) {
					t.Fatalf("claimed task %d: id %d args %s; want row %d's, id %d args %s",
						j, ts[j].ID, ts[j].Args, i, out[i].ID, c.rows[i].Args)
				}
				j++
			}
		})
	}

	// A row that is not JSON in the last chunk: nothing of the call is
	// written, on each path.
	bad := make([]storage.Row, n)
	copy(bad, rows)
	bad[n-1].Args = []byte(`{not json`)
	for _, db := range []*sql.DB{b.DB(), other, nil} {
		if db == nil {
			_, err = b.Insert(ctx, nil, bad)
		} else {
			tx, err2 := db.BeginTx(ctx, nil)
			if err2 != nil {
				t.Fatal(err2)
			}
			_, err = b.Insert(ctx, tx, bad)
			tx.Rollback()
		}
		if err == nil || !strings.Contains(err.Error(), "json") {
			t.Errorf("Insert with a row that is not JSON: got %v, want an error saying so", err)
		}
		if ts, err := b.Claim(ctx, n); err != nil || len(ts) != 0 {
			t.Errorf("after a failed Insert: claimed %d tasks (%v), want none", len(ts), err)
		}
	}
}

package queue_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/storage/postgres"
)

// pgURL is the PostgreSQL server of the tests; without it they skip.
func pgURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("SNAPPEA_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("no PostgreSQL server for the tests: set SNAPPEA_TEST_DATABASE_URL=postgres://user@host:port/dbname?sslmode=disable, or run .ci/run, which starts one")
	}
	return u
}

func pgSchema() string {
	var b [6]byte
	rand.Read(b[:])
	return "snappea_test_" + hex.EncodeToString(b[:])
}

func TestOpen_databaseURL(t *testing.T) {
	u := pgURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	schema := pgSchema()
	q, err := queue.Open(ctx, queue.Config{Dir: dir, DatabaseURL: u, Schema: schema})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() {
		if _, err := q.DB().Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema: %v", err)
		}
		q.Close()
	}()
	if _, ok := q.Backend().(*postgres.Backend); !ok {
		t.Fatalf("Backend is %T, want *postgres.Backend", q.Backend())
	}
	if got := q.Backend().(*postgres.Backend).Config().Schema; got != schema {
		t.Errorf("schema %q, want %q", got, schema)
	}
	id, err := q.Enqueue(ctx, "email", map[string]string{"to": "a@example.com"})
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	ts, err := q.Claim(ctx, 10)
	if err != nil || len(ts) != 1 || ts[0].ID != id {
		t.Fatalf("Claim = %v, %v; want the task %d", ts, err, id)
	}
	// Nothing of SQLite's is created in the data directory.
	if _, err := os.Stat(filepath.Join(dir, queue.DBFile)); !os.IsNotExist(err) {
		t.Errorf("%s exists (or: %v): the SQLite database was created", queue.DBFile, err)
	}
}

func TestOpen_databaseURLBadSchema(t *testing.T) {
	q, err := queue.Open(context.Background(), queue.Config{DatabaseURL: "postgres://nobody@127.0.0.1:1/none", Schema: "Bad Schema"})
	if err == nil {
		q.Close()
		t.Fatal("Open with a bad schema name succeeded")
	}
	if !strings.Contains(err.Error(), "Bad Schema") {
		t.Errorf("error %q does not name the bad schema", err)
	}
}

func TestOpen_databaseURLPasswordNotPrinted(t *testing.T) {
	u, err := url.Parse(pgURL(t))
	if err != nil {
		t.Fatal(err)
	}
	// A server that is not there, with a password.
	u.Host = "127.0.0.1:1"
	u.User = url.UserPassword("snappea", "sekrit-pw")
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, queue.Config{DatabaseURL: u.String(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		q.Close()
		t.Fatal("Open on a closed port succeeded")
	}
	if strings.Contains(err.Error()+logs.String(), "sekrit-pw") {
		t.Errorf("the password is printed: error %q, logs %q", err, logs.String())
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q does not name the server", err)
	}
}

func TestOpenReadOnly_databaseURL(t *testing.T) {
	q, err := queue.OpenReadOnly(context.Background(), queue.Config{Dir: t.TempDir(), DatabaseURL: "postgres://nobody@127.0.0.1:1/none"})
	if err == nil {
		q.Close()
		t.Fatal("OpenReadOnly with a DatabaseURL succeeded: it would have read an SQLite file instead")
	}
	if !strings.Contains(err.Error(), "only for SQLite") {
		t.Errorf("error %q does not say why", err)
	}
}

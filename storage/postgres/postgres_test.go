package postgres

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/snappea/snappea/storage"
	"github.com/snappea/snappea/storage/storagetest"
)

// The server the tests use; without it they skip.
const urlEnv = "SNAPPEA_TEST_DATABASE_URL"

func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(urlEnv)
	if u == "" {
		t.Skip("no PostgreSQL server for the tests: set " + urlEnv +
			"=postgres://user@host:port/dbname?sslmode=disable, or run .ci/run, which starts one")
	}
	return u
}

// randomSchema is a schema name of its own for one test.
func randomSchema(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "snappea_test_" + hex.EncodeToString(b[:])
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// mustOpen opens a backend on a new schema, dropped when the test ends.
func mustOpen(t testing.TB, cfg Config) *Backend {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = testURL(t)
	}
	if cfg.Schema == "" {
		cfg.Schema = randomSchema(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		dropSchema(t, b)
		b.Close()
	})
	return b
}

func dropSchema(t testing.TB, b *Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.DB().ExecContext(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{b.cfg.Schema}.Sanitize()+` CASCADE`); err != nil {
		t.Errorf("drop test schema %s: %v", b.cfg.Schema, err)
	}
}

func TestConformance(t *testing.T) {
	testURL(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return mustOpen(t, Config{})
	}, func(t *testing.T, sb storage.Backend) error {
		b := sb.(*Backend)
		ctx := t.Context()
		if _, err := b.DB().ExecContext(ctx, `INSERT INTO `+pgx.Identifier{b.cfg.Schema}.Sanitize()+
			`.schema_migrations (version, name) VALUES ($1, 'from_the_future')`, Version()+1); err != nil {
			t.Fatal(err)
		}
		b2, err := Open(ctx, b.cfg)
		if err == nil {
			b2.Close()
		}
		return err
	})
}

func TestOpen_migratesOnce(t *testing.T) {
	b := mustOpen(t, Config{})
	ctx := t.Context()
	// Several opens of one schema at once: the advisory lock makes them
	// take turns, and each finds the schema at the version.
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			b2, err := Open(ctx, b.cfg)
			if err == nil {
				b2.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
	var n int
	if err := b.DB().QueryRowContext(ctx, `SELECT count(*) FROM `+pgx.Identifier{b.cfg.Schema}.Sanitize()+
		`.schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != Version() {
		t.Errorf("migrations recorded: got %d, want %d", n, Version())
	}
	if v, err := b.SchemaVersion(ctx); err != nil || v != Version() {
		t.Errorf("SchemaVersion: got %d, %v; want %d", v, err, Version())
	}
}

func TestOpen_newerSchemaRefused(t *testing.T) {
	b := mustOpen(t, Config{})
	ctx := t.Context()
	if _, err := b.DB().ExecContext(ctx, `INSERT INTO `+pgx.Identifier{b.cfg.Schema}.Sanitize()+
		`.schema_migrations (version, name) VALUES (999, 'future')`); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, b.cfg)
	if !errors.Is(err, storage.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: got %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{"version 999", "upgrade snappea"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestConfig_invalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no URL", Config{}, "URL is empty"},
		{"bad schema", Config{URL: "postgres://h/db", Schema: "Robert'); DROP"}, "Schema"},
		{"negative timeout", Config{URL: "postgres://h/db", ConnectTimeout: -1}, "ConnectTimeout"},
		{"negative conns", Config{URL: "postgres://h/db", MaxOpenConns: -1}, "MaxOpenConns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestOpen_serverDown(t *testing.T) {
	// A port nothing listens on (the discard port, closed on test hosts).
	url := "postgres://snappea:s3cr3t-pw@127.0.0.1:9/snappea?sslmode=disable"
	_, err := Open(t.Context(), Config{URL: url, Logger: quietLogger(), ConnectTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("Open with no server: no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "127.0.0.1:9") {
		t.Errorf("error %q does not name the server", msg)
	}
	if strings.Contains(msg, "s3cr3t-pw") {
		t.Errorf("error %q shows the password", msg)
	}
}

func TestOpen_wrongCredentials(t *testing.T) {
	u := testURL(t)
	cc, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts every user it knows; a role it does not know
	// fails authentication whatever the password.
	bad := "postgres://no_such_role:s3cr3t-pw@" + cc.Host + ":" + strconv.Itoa(int(cc.Port)) + "/" + cc.Database + "?sslmode=disable"
	_, err = Open(t.Context(), Config{URL: bad, Logger: quietLogger()})
	if err == nil {
		t.Fatal("Open with a wrong role: no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "no_such_role") || !strings.Contains(msg, cc.Host) {
		t.Errorf("error %q does not name the role and the server", msg)
	}
	if strings.Contains(msg, "s3cr3t-pw") {
		t.Errorf("error %q shows the password", msg)
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@h:5432/db?sslmode=disable", "postgres://u:xxxxx@h:5432/db?sslmode=disable"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgresql://h/db?password=secret&user=u", "postgresql://h/db?password=xxxxx&user=u"},
		{"host=h user=u password=secret dbname=db", "host=h user=u password=xxxxx dbname=db"},
		{"host=h password='se cret' dbname=db", "host=h password=xxxxx dbname=db"},
		{"postgres://u:se%25cret@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u:secret@[bad", "postgres://(unparseable URL)"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(Redact(tc.in), "secret") || strings.Contains(Redact(tc.in), "cret") {
			t.Errorf("Redact(%q) shows the password", tc.in)
		}
	}
}

func TestRedactErr(t *testing.T) {
	inner := errors.New(`cannot parse "postgres://u:p%40ss@h/db": failed; password p@ss`)
	err := redactErr(inner, "p@ss")
	if msg := err.Error(); strings.Contains(msg, "p@ss") || strings.Contains(msg, "p%40ss") {
		t.Errorf("redacted error %q shows the password", msg)
	}
	if !errors.Is(err, inner) {
		t.Error("redacted error does not wrap the original")
	}
	if redactErr(nil, "x") != nil {
		t.Error("redactErr(nil) is not nil")
	}
}

// TestRedactError: the password of the URL given is hidden wherever it
// stands in the message, also when the URL carries it as a parameter
// (what the benchmark's errors are wrapped with).
func TestRedactError(t *testing.T) {
	for _, dsn := range []string{"postgres://u:s3cr3t@h/db", "postgres://u@h/db?password=s3cr3t", "host=h password=s3cr3t"} {
		inner := errors.New("connect: server said no to s3cr3t")
		err := RedactError(inner, dsn)
		if strings.Contains(err.Error(), "s3cr3t") || !errors.Is(err, inner) {
			t.Errorf("RedactError(%q) = %q, want the password hidden and the error wrapped", dsn, err)
		}
	}
}

func TestOpen_badURLRedacted(t *testing.T) {
	_, err := Open(t.Context(), Config{URL: "postgres://u:s3cr3t@h:notaport/db"})
	if err == nil {
		t.Fatal("Open of a bad URL: no error")
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q shows the password", err)
	}
}

// TestInsert_joinsCallerTransaction: a transaction on the application's
// own *sql.DB (its own pool, its own search_path) carries an enqueue,
// which exists only if it commits.
func TestInsert_joinsCallerTransaction(t *testing.T) {
	b := mustOpen(t, Config{})
	ctx := t.Context()
	app, err := sql.Open("pgx", testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if _, err := app.ExecContext(ctx, `CREATE TABLE `+pgx.Identifier{b.cfg.Schema}.Sanitize()+`.orders (id int)`); err != nil {
		t.Fatal(err)
	}
	for _, commit := range []bool{false, true} {
		tx, err := app.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+pgx.Identifier{b.cfg.Schema}.Sanitize()+`.orders VALUES (1)`); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Insert(ctx, tx, []storage.Row{{Task: "ship", Args: []byte(`{}`), CreatedAt: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		ts, err := b.Claim(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if commit {
			want = 1
		}
		if len(ts) != want {
			t.Errorf("commit %v: claimed %d tasks, want %d", commit, len(ts), want)
		}
	}
}

func TestClaim_argsTooLarge(t *testing.T) {
	b := mustOpen(t, Config{MaxArgsSize: 10})
	ctx := t.Context()
	if _, err := b.Insert(ctx, nil, []storage.Row{{Task: "big", Args: []byte(`{"a":"0123456789"}`), CreatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	ts, err := b.Claim(ctx, 1)
	if err != nil || len(ts) != 1 {
		t.Fatalf("Claim: %v, %v", ts, err)
	}
	if ts[0].Err == nil || !strings.Contains(ts[0].Err.Error(), "MaxArgsSize") {
		t.Errorf("Err of a task over MaxArgsSize: got %v", ts[0].Err)
	}
}

func TestInsert_refusesNonJSON(t *testing.T) {
	b := mustOpen(t, Config{})
	_, err := b.Insert(t.Context(), nil, []storage.Row{{Task: "x", Args: []byte(`{not json`), CreatedAt: time.Now()}})
	if err == nil || !strings.Contains(err.Error(), "json") {
		t.Errorf("Insert of arguments that are not JSON: got %v, want an error saying so", err)
	}
}

func TestDaemons_goneAndRemoved(t *testing.T) {
	b := mustOpen(t, Config{})
	ctx := t.Context()
	id, err := b.RegisterDaemon(ctx, storage.Daemon{Host: "h", PID: 1, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Its last heartbeat an hour and a minute ago, by the server's clock.
	if _, err := b.DB().ExecContext(ctx, `UPDATE `+pgx.Identifier{b.cfg.Schema}.Sanitize()+
		`.daemons SET last_seen = now() - interval '61 minutes' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	ds, err := b.Daemons(ctx)
	if err != nil || len(ds) != 1 || !ds[0].Gone {
		t.Fatalf("Daemons: got %+v, %v; want one, gone", ds, err)
	}
	n, err := b.RemoveGoneDaemons(ctx)
	if err != nil || n != 1 {
		t.Errorf("RemoveGoneDaemons: got %d, %v; want 1", n, err)
	}
}

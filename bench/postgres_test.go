package bench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/snappea/snappea/bench"
)

// testDatabase returns SNAPPEA_TEST_DATABASE_URL, a PostgreSQL the
// benchmark may create and drop schemas in, or skips the test.
func testDatabase(t *testing.T) string {
	t.Helper()
	u := os.Getenv("SNAPPEA_TEST_DATABASE_URL")
	if u == "" {
		t.Skip("SNAPPEA_TEST_DATABASE_URL is not set")
	}
	return u
}

// schemaExists reports whether schema is in the database at dbURL.
func schemaExists(t *testing.T, dbURL, schema string) bool {
	t.Helper()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		t.Fatalf("look for schema %s: %v", schema, err)
	}
	return exists
}

func randomSchema(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "snappea_benchtest_" + hex.EncodeToString(b[:])
}

// withPassword adds a password to the URL's user, which a server that
// trusts its local connections ignores: it must not show in any output.
func withPassword(t *testing.T, dbURL, password string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.User.Password(); ok {
		t.Skip("SNAPPEA_TEST_DATABASE_URL has a password already")
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

func TestBenchCommand_PostgresJSON(t *testing.T) {
	dbURL := testDatabase(t)
	bin := snappeaBin(t)
	const password = "bench-secret-3141"
	schema := randomSchema(t)
	tmp := t.TempDir()
	args := append([]string{"bench", "--json", "--database-url", withPassword(t, dbURL, password), "--schema", schema,
		"--tmpdir", tmp, "--mode", "enqueue,burndown,latency,resources,sustained",
		"--sustained-rate", "500", "--sustained-duration", "1s"}, tinyArgs...)
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if strings.Contains(stdout.String()+stderr.String(), password) {
		t.Errorf("the output shows the URL's password:\n%s\n%s", stdout.String(), stderr.String())
	}
	if err != nil {
		t.Fatalf("snappea bench: %v\n%s", err, stderr.String())
	}

	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	// The same keys as on SQLite: every key of Result.
	b, err := json.Marshal(bench.Result{})
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for k := range keys {
		if _, ok := got[k]; !ok {
			t.Errorf("the JSON lacks %s", k)
		}
	}
	if got["backend"] != "postgresql" {
		t.Errorf("backend = %v, want postgresql", got["backend"])
	}
	positive := []string{
		"enqueue_single_per_s", "enqueue_single_multi_per_s", "enqueue_batch_per_s", "enqueue_batch_multi_per_s",
		"burndown_per_s", "loaded_rate_per_s", "loaded_achieved_per_s", "rss_peak_mb", "cpu_seconds", "cpu_us_per_task",
		"sustained_achieved_per_s", "sustained_enqueue_p50_ms", "sustained_enqueue_p99_ms", "sustained_enqueue_max_ms",
		"workers", "tasks", "cpus",
	}
	for _, k := range positive {
		if v, ok := got[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, got[k])
		}
	}
	if v, ok := got["sustained_wal_max_bytes"].(float64); !ok || v != 0 {
		t.Errorf("sustained_wal_max_bytes = %v, want 0 on PostgreSQL", got["sustained_wal_max_bytes"])
	}
	checkPercentiles(t, got, "latency_idle_ms", "latency_loaded_ms", "enqueue_call_idle_ms", "enqueue_call_loaded_ms")
	if ws, ok := got["burndown_by_workers"].([]any); !ok || len(ws) != 3 {
		t.Errorf("burndown_by_workers = %v, want 1, 4 and 16 workers", got["burndown_by_workers"])
	}
	if sw, ok := got["latency_sweep"].([]any); !ok || len(sw) == 0 {
		t.Errorf("latency_sweep = %v, want rates", got["latency_sweep"])
	}

	if schemaExists(t, dbURL, schema) {
		t.Errorf("schema %s is left after the bench", schema)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the temporary directory holds %v after the run, want nothing", left)
	}
}

func TestRun_PostgresCancelDropsSchema(t *testing.T) {
	dbURL := testDatabase(t)
	bin := snappeaBin(t)
	schema := randomSchema(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := bench.Run(ctx, bench.Config{
			Executable: bin, Modes: []bench.Mode{bench.Latency}, Runs: 1, Duration: 10 * time.Second, MaxRate: -1,
			TempDir: tmp, DatabaseURL: dbURL, Schema: schema,
		})
		errc <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for len(processesIn(tmp, bench.ProducerRole)) == 0 {
		select {
		case err := <-errc:
			t.Fatalf("Run returned %v before it was cancelled", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no producer started within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !schemaExists(t, dbURL, schema) {
		t.Fatalf("schema %s does not exist while the bench runs", schema)
	}
	cancel()
	select {
	case err := <-errc:
		if err != context.Canceled {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of the cancel")
	}
	if schemaExists(t, dbURL, schema) {
		t.Errorf("schema %s is left after the cancelled bench", schema)
	}
	if ps := processesIn(tmp, ""); len(ps) != 0 {
		t.Errorf("processes still running after Run returned:\n%s", strings.Join(ps, "\n"))
	}
}

func TestRun_PostgresRefusesExistingSchema(t *testing.T) {
	dbURL := testDatabase(t)
	schema := randomSchema(t)
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	defer db.Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`)
	if _, err := db.Exec(`CREATE TABLE ` + schema + `.keep (x int)`); err != nil {
		t.Fatal(err)
	}
	_, err = bench.Run(context.Background(), bench.Config{
		Executable: "/bin/true", Modes: []bench.Mode{bench.Enqueue}, Runs: 1, TempDir: t.TempDir(),
		DatabaseURL: dbURL, Schema: schema,
	})
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Run = %v, want an error saying the schema exists", err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + schema + `.keep`).Scan(&n); err != nil {
		t.Errorf("the existing schema's table is gone: %v", err)
	}
}

func TestWriteTable_Postgres(t *testing.T) {
	res := &bench.Result{Backend: "postgresql", Modes: []bench.Mode{bench.Sustained}, Runs: 1,
		SustainedRatePerS: 500, SustainedSeconds: 1, SustainedEnqueueP50MS: 1, SustainedEnqueueP99MS: 2, SustainedEnqueueMaxMS: 3}
	var b bytes.Buffer
	if err := res.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "1 run on PostgreSQL") {
		t.Errorf("table does not say PostgreSQL:\n%s", b.String())
	}
	if strings.Contains(b.String(), "write-ahead log") {
		t.Errorf("table shows a write-ahead log size on PostgreSQL:\n%s", b.String())
	}
}

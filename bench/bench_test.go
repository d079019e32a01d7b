package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snappea/snappea/bench"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// snappeaBin builds cmd/snappea once, for the tests that run the real
// thing, and returns its path.
func snappeaBin(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the snappea binary")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "snappea-bench-test")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "snappea")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/snappea").CombinedOutput()
		if err != nil {
			buildErr = errors.New("go build ../cmd/snappea: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// tinyArgs make a full run of every mode in a few seconds.
var tinyArgs = []string{
	"--tasks", "2000", "--rate", "500", "--duration", "1s", "--runs", "1",
	"--worker-sweep", "1,4", "--max-rate", "2000", "--sweep-step", "300ms", "--idle-period", "1s",
}

func TestBenchCommand_JSON(t *testing.T) {
	bin := snappeaBin(t)
	tmp := t.TempDir()
	chart := filepath.Join(t.TempDir(), "bench.png")
	cmd := exec.Command(bin, append([]string{"bench", "--json", "--plot", chart, "--tmpdir", tmp}, tinyArgs...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("snappea bench: %v\n%s", err, stderr.String())
	}

	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	positive := []string{
		"enqueue_single_per_s", "enqueue_batch_per_s", "enqueue_single_multi_per_s", "burndown_per_s",
		"loaded_rate_per_s", "rss_peak_mb", "workers", "tasks", "cpu_seconds", "cpus",
	}
	for _, k := range positive {
		v, ok := got[k].(float64)
		if !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, got[k])
		}
	}
	if got["tasks"] != 2000.0 || got["workers"] != 16.0 || got["loaded_rate_per_s"] != 500.0 {
		t.Errorf("tasks, workers, loaded_rate_per_s = %v, %v, %v; want 2000, 16, 500", got["tasks"], got["workers"], got["loaded_rate_per_s"])
	}
	if rss := got["rss_peak_mb"].(float64); rss > 1000 {
		t.Errorf("rss_peak_mb = %g, implausible", rss)
	}
	checkPercentiles(t, got, "latency_idle_ms", "latency_loaded_ms")
	if _, ok := got["idle_cpu_seconds"].(float64); !ok {
		t.Errorf("idle_cpu_seconds = %v, want a number", got["idle_cpu_seconds"])
	}
	if ws, ok := got["burndown_by_workers"].([]any); !ok || len(ws) != 3 {
		t.Errorf("burndown_by_workers = %v, want 1, 4 and 16 workers", got["burndown_by_workers"])
	}

	f, err := os.Open(chart)
	if err != nil {
		t.Fatalf("--plot wrote no chart: %v", err)
	}
	defer f.Close()
	img, format, err := image.Decode(f)
	if err != nil {
		t.Fatalf("the chart does not decode: %v", err)
	}
	if format != "png" || img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
		t.Errorf("chart is a %s of %v, want a PNG of some size", format, img.Bounds())
	}

	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("the temporary directory holds %v after the run, want nothing", left)
	}
}

func TestBenchCommand_Table(t *testing.T) {
	bin := snappeaBin(t)
	out, err := exec.Command(bin, "bench", "--mode", "burndown", "--worker-sweep", "", "--tasks", "500", "--runs", "2",
		"--tmpdir", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("snappea bench: %v\n%s", err, out)
	}
	for _, want := range []string{"medians of 2 runs", "burn-down of 500 queued no-ops", "16 workers", "tasks/s", "peak RSS"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("enqueue")) {
		t.Errorf("table of --mode burndown shows enqueue figures:\n%s", out)
	}
}

// fakeSnappea writes a script that runs the real binary except for the
// command named, which fails with a message on stderr.
func fakeSnappea(t *testing.T, failing string) string {
	t.Helper()
	bin := snappeaBin(t)
	script := filepath.Join(t.TempDir(), "snappea")
	body := "#!/bin/sh\nif [ \"$1\" = " + failing + " ]; then echo \"boom: $1 cannot start\" >&2; exit 3; fi\nexec " + bin + " \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script
}

func TestRun_reportsFailures(t *testing.T) {
	for _, tc := range []struct {
		failing string
		modes   []bench.Mode
		want    []string
	}{
		{"run", []bench.Mode{bench.BurnDown}, []string{"daemon", "before the daemon to start", "boom: run cannot start"}},
		{"bench", []bench.Mode{bench.Enqueue}, []string{"producer", "exit status 3", "boom: bench cannot start"}},
	} {
		t.Run(tc.failing, func(t *testing.T) {
			tmp := t.TempDir()
			_, err := bench.Run(context.Background(), bench.Config{
				Executable: fakeSnappea(t, tc.failing), Modes: tc.modes, Tasks: 100, Runs: 1,
				WorkerSweep: []int{}, TempDir: tmp,
			})
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("the temporary directory holds %v, want nothing", left)
			}
		})
	}
}

func TestRun_cancelStopsEverything(t *testing.T) {
	bin := snappeaBin(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := bench.Run(ctx, bench.Config{
			Executable: bin, Modes: []bench.Mode{bench.Latency}, Runs: 1, Duration: 10 * time.Second, MaxRate: -1,
			TempDir: tmp,
		})
		errc <- err
	}()
	// Cancel while a paced producer runs beside the daemon.
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
	if len(processesIn(tmp, "run")) == 0 {
		t.Fatal("no daemon is running beside the producer")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of the cancel")
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the temporary directory holds %v, want nothing", left)
	}
	if ps := processesIn(tmp, ""); len(ps) != 0 {
		t.Errorf("processes still running in the temporary directory after Run returned:\n%s", strings.Join(ps, "\n"))
	}
}

// processesIn returns the command lines of the processes whose arguments
// mention dir and hold the argument arg ("": any).
func processesIn(dir, arg string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if arg == "" || slices.Contains(args, arg) {
			out = append(out, strings.Join(args, " "))
		}
	}
	return out
}

func TestBenchCommand_Sustained(t *testing.T) {
	bin := snappeaBin(t)
	cmd := exec.Command(bin, "bench", "--json", "--mode", "sustained", "--sustained-rate", "500",
		"--sustained-duration", "1s", "--runs", "1", "--tmpdir", t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("snappea bench: %v\n%s", err, stderr.String())
	}
	var got map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	var v [3]float64
	for i, k := range []string{"sustained_enqueue_p50_ms", "sustained_enqueue_p99_ms", "sustained_enqueue_max_ms"} {
		f, ok := got[k].(float64)
		if !ok || f <= 0 {
			t.Errorf("%s = %v, want a positive number", k, got[k])
		}
		v[i] = f
	}
	if !(v[0] <= v[1] && v[1] <= v[2]) {
		t.Errorf("sustained enqueue p50, p99, max = %v, want them in order", v)
	}
	for _, k := range []string{"sustained_wal_max_bytes", "sustained_achieved_per_s"} {
		if f, ok := got[k].(float64); !ok || f <= 0 {
			t.Errorf("%s = %v, want a positive number", k, got[k])
		}
	}
	if got["sustained_rate_per_s"] != 500.0 || got["sustained_seconds"] != 1.0 {
		t.Errorf("sustained_rate_per_s, sustained_seconds = %v, %v; want 500, 1", got["sustained_rate_per_s"], got["sustained_seconds"])
	}
	if v, ok := got["enqueue_single_per_s"].(float64); !ok || v != 0 {
		t.Errorf("enqueue_single_per_s = %v, want 0: --mode sustained measures nothing else", got["enqueue_single_per_s"])
	}

	out, err := exec.Command(bin, "bench", "--mode", "sustained", "--sustained-rate", "200",
		"--sustained-duration", "500ms", "--runs", "1", "--tmpdir", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("snappea bench: %v\n%s", err, out)
	}
	for _, want := range []string{"sustained single-task enqueues at 200/s", "Enqueue call", "largest write-ahead log seen", "MiB"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// checkPercentiles checks that each of keys in a bench's JSON is an object
// of positive p50, p95, p99 and max, in that order.
func checkPercentiles(t *testing.T, got map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		p, ok := got[k].(map[string]any)
		if !ok {
			t.Errorf("%s = %v, want an object", k, got[k])
			continue
		}
		var v [4]float64
		for i, q := range []string{"p50", "p95", "p99", "max"} {
			f, ok := p[q].(float64)
			if !ok || f <= 0 {
				t.Errorf("%s.%s = %v, want a positive number", k, q, p[q])
			}
			v[i] = f
		}
		if !(v[0] <= v[1] && v[1] <= v[2] && v[2] <= v[3]) {
			t.Errorf("%s = %v, want p50 <= p95 <= p99 <= max", k, p)
		}
	}
}

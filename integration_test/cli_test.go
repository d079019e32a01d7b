package integration_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHelp(t *testing.T) {
	r := mustSnappea(t, "help")
	for _, cmd := range []string{"run", "enqueue", "status", "stop", "migrate"} {
		if !regexp.MustCompile(`(?m)^\s+` + cmd + `\s+\S`).MatchString(r.stdout) {
			t.Errorf("help does not list the %s command:\n%s", cmd, r.stdout)
		}
	}
	for _, want := range []string{"Signals", "TERM", "INT", "Exit codes"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help does not mention %q:\n%s", want, r.stdout)
		}
	}
	for _, code := range []int{0, 1, 2, 4} {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^\s+%d\s+\S`, code)).MatchString(r.stdout) {
			t.Errorf("help does not explain exit code %d:\n%s", code, r.stdout)
		}
	}

	// Help asked for goes to stdout, whichever way it is asked for.
	for _, args := range [][]string{{"run", "-h"}, {"run", "--help"}, {"help", "run"}} {
		r = mustSnappea(t, args...)
		for _, want := range []string{"SNAPPEA_WORKERS", "SNAPPEA_GRACEFUL_TIMEOUT", "SENTRY_DSN"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%v does not mention %s on stdout:\n%s", args, want, r.stdout)
			}
		}
		if r.stderr != "" {
			t.Errorf("%v wrote to stderr: %q", args, r.stderr)
		}
	}

	r = mustSnappea(t, "help", "enqueue")
	for _, flag := range []string{"count", "batch", "no-check"} {
		if !regexp.MustCompile(`(?m)^\s+--?` + flag + `\b`).MatchString(r.stdout) {
			t.Errorf("help enqueue does not show --%s:\n%s", flag, r.stdout)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []usageError{
		{name: "unknown command", args: []string{"frobnicate"}, want: []string{`"frobnicate"`, "snappea help"}},
		{name: "unknown flag", args: []string{"status", "--dir", "DIR", "--bogus"}, want: []string{"bogus"}},
		{name: "no workers", args: []string{"run", "--dir", "DIR", "--workers", "0"}, want: []string{"--workers 0"}},
		{name: "bad log level", args: []string{"run", "--dir", "DIR", "--log-level", "loud"}, want: []string{"loud"}},
		{name: "enqueue without a task", args: []string{"enqueue", "--dir", "DIR"}, want: []string{"TASK"}},
		{name: "arguments not JSON", args: []string{"enqueue", "--dir", "DIR", "snappea.sleep", "not json"},
			want: []string{"snappea.sleep", "not valid JSON"}},
		{name: "unknown task", args: []string{"enqueue", "--dir", "DIR", "no.such.task"},
			want: []string{"no.such.task", "snappea.noop", "snappea.sleep", "--no-check"}},
		{name: "arguments of the wrong type", args: []string{"enqueue", "--dir", "DIR", "snappea.sleep", `{"ms":"soon"}`},
			want: []string{"snappea.sleep", "--no-check"}},
		{name: "bad environment variable", env: []string{"SNAPPEA_WORKERS=abc"}, args: []string{"run", "--dir", "DIR"},
			want: []string{"SNAPPEA_WORKERS", "abc", "want a whole number", "see snappea run -h"}},
		{name: "SNAPPEA_BATCH is run's number", env: []string{"SNAPPEA_BATCH=true"}, args: []string{"run", "--dir", "DIR"},
			want: []string{`SNAPPEA_BATCH="true"`, "want a whole number", "see snappea run -h"}},
		{name: "bad duration", args: []string{"run", "--dir", "DIR", "--poll-interval", "often"},
			want: []string{`--poll-interval "often": want a duration such as 5s; see snappea run -h`}},
		{name: "bad flag after the arguments", args: []string{"enqueue", "snappea.noop", "--dir", "DIR", "--count", "x"},
			want: []string{`--count "x": want a whole number; see snappea enqueue -h`}},
		{name: "help for no such command", args: []string{"help", "nosuch"}, want: []string{`"nosuch"`}},
	}
	runUsageErrors(t, tests)
	// One line, not the whole usage.
	for _, args := range [][]string{{"status", "--bogus"}, {"run", "--workers", "x"}} {
		if r := snappea(t, args...); r.code != 2 || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line on stderr", args, r.code, r.stdout, r.stderr)
		}
	}
}

// TestFlagsAfterArguments: flags may follow a command's arguments, and
// SNAPPEA_BATCH, run's, does not make enqueue batch.
func TestFlagsAfterArguments(t *testing.T) {
	dir := dataDir(t)
	r := snappeaEnv(t, []string{"SNAPPEA_BATCH=notabool"}, "enqueue", "snappea.echo", `{"msg": "hi"}`, "--dir", dir, "--count", "3")
	if r.code != 0 {
		t.Fatalf("enqueue with flags after the arguments: exit %d\n%s", r.code, r.stderr)
	}
	if got := ids(t, r.stdout); len(got) != 3 {
		t.Errorf("printed %d ids, want 3", len(got))
	}
	if !strings.Contains(r.stderr, "one transaction each") {
		t.Errorf("stderr %q: want one transaction each (SNAPPEA_BATCH is not enqueue's)", r.stderr)
	}
	if s := getStatus(t, dir); s.Pending != 3 {
		t.Errorf("pending = %d, want 3", s.Pending)
	}
}

func TestEnvTwins(t *testing.T) {
	fromEnv, fromFlag := dataDir(t), dataDir(t)
	mustEnv := func(env []string, args ...string) {
		t.Helper()
		if r := snappeaEnv(t, env, args...); r.code != 0 {
			t.Fatalf("%v snappea %s: exit %d\n%s", env, strings.Join(args, " "), r.code, r.stderr)
		}
	}
	mustEnv([]string{"SNAPPEA_DIR=" + fromEnv}, "enqueue", "snappea.noop")
	if s := getStatus(t, fromEnv); s.Pending != 1 {
		t.Errorf("SNAPPEA_DIR: pending in %s = %d, want 1", fromEnv, s.Pending)
	}
	// The command line wins over the environment.
	mustEnv([]string{"SNAPPEA_DIR=" + fromEnv}, "enqueue", "--dir", fromFlag, "snappea.noop")
	if s := getStatus(t, fromFlag); s.Pending != 1 {
		t.Errorf("--dir: pending in %s = %d, want 1", fromFlag, s.Pending)
	}
	if s := getStatus(t, fromEnv); s.Pending != 1 {
		t.Errorf("--dir given: pending in the SNAPPEA_DIR directory = %d, want still 1", s.Pending)
	}
}

func TestEnqueueCountAndBatch(t *testing.T) {
	dir := dataDir(t)
	var all []int64
	for _, mode := range [][]string{nil, {"--batch"}} {
		args := append([]string{"enqueue", "--dir", dir, "--count", "50"}, mode...)
		r := mustSnappea(t, append(args, "snappea.noop")...)
		got := ids(t, r.stdout)
		if len(got) != 50 {
			t.Errorf("%v: printed %d ids, want 50", mode, len(got))
		}
		if !strings.Contains(r.stderr, "enqueued 50") {
			t.Errorf("%v: stderr %q does not say \"enqueued 50\"", mode, r.stderr)
		}
		all = append(all, got...)
	}
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			t.Fatalf("ids not increasing: %d then %d", all[i-1], all[i])
		}
	}

	r := mustSnappea(t, "status", "--json", "--dir", dir)
	var s map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json printed %q: %v", r.stdout, err)
	}
	var keys []string
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// The keys of the first version stay; more came since.
	for _, want := range []string{"daemon_pid", "oldest_age_seconds", "pending", "schema_version"} {
		if !slices.Contains(keys, want) {
			t.Errorf("status --json keys %v, want %s among them", keys, want)
		}
	}
	if s["pending"] != 100.0 || s["daemon_pid"] != 0.0 {
		t.Errorf("status --json: %v, want pending 100 and daemon_pid 0", s)
	}
	if age, _ := s["oldest_age_seconds"].(float64); age <= 0 {
		t.Errorf("oldest_age_seconds = %v, want a positive age", s["oldest_age_seconds"])
	}

	r = mustSnappea(t, "status", "--dir", dir)
	if !regexp.MustCompile(`(?m)^pending\s+100$`).MatchString(r.stdout) || !strings.Contains(r.stdout, "not running") {
		t.Errorf("status:\n%s\nwant pending 100 and the daemon not running", r.stdout)
	}
}

func TestStatusWithoutDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nowhere")
	for _, args := range [][]string{{"status"}, {"status", "--json"}} {
		r := snappea(t, append(args, "--dir", dir)...)
		if r.code != 1 {
			t.Errorf("%v: exit %d, want 1\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "--dir") || !strings.Contains(r.stderr, dir) {
			t.Errorf("%v: message %q does not both name the path and suggest --dir", args, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("%v: printed %q", args, r.stdout)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("status created the data directory: %v", err)
	}
}

// TestPending lists the waiting tasks with the real binary, in claim
// order, never with their arguments.
func TestPending(t *testing.T) {
	dir := dataDir(t)
	enq := func(args ...string) int64 {
		t.Helper()
		r := mustSnappea(t, append([]string{"enqueue", "--dir", dir}, args...)...)
		return ids(t, r.stdout)[0]
	}
	low := enq("snappea.echo", `{"msg": "s3cret-low"}`)
	high := enq("--priority", "3", "--key", "k1", "snappea.echo", `{"msg": "s3cret-high"}`)
	delayed := enq("--delay", "1h", "--max-attempts", "2", "snappea.sleep", `{"ms": 424242}`)

	r := mustSnappea(t, "pending", "--dir", dir)
	for _, secret := range []string{"s3cret", "424242"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("pending shows the arguments (%s):\n%s", secret, r.stdout)
		}
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("pending printed\n%s\nwant a heading and three tasks", r.stdout)
	}
	for i, want := range []string{
		fmt.Sprintf(`^%d\s+snappea.echo\s+3\s+k1\s+ready\s+1\s`, high),
		fmt.Sprintf(`^%d\s+snappea.echo\s+0\s+ready\s+1\s`, low),
		fmt.Sprintf(`^%d\s+snappea.sleep\s+0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+1 of 2\s`, delayed),
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("line %d %q does not match %s", i+1, lines[i+1], want)
		}
	}

	var got []struct {
		ID       int64   `json:"id"`
		Task     string  `json:"task"`
		Priority int     `json:"priority"`
		Key      *string `json:"key"`
		RunAt    *string `json:"run_at"`
		Attempt  int     `json:"attempt"`
		Args     any     `json:"args"`
	}
	pendingJSON := func(args ...string) {
		t.Helper()
		got = nil
		r := mustSnappea(t, append([]string{"pending", "--json", "--dir", dir}, args...)...)
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("pending --json %v printed %q: %v", args, r.stdout, err)
		}
	}
	pendingJSON("--limit", "2")
	if len(got) != 2 || got[0].ID != high || got[1].ID != low || got[0].Key == nil || *got[0].Key != "k1" ||
		got[1].Key != nil || got[0].RunAt != nil || got[0].Args != nil {
		t.Errorf("pending --json --limit 2: %+v", got)
	}
	pendingJSON("--delayed")
	if len(got) != 1 || got[0].ID != delayed || got[0].RunAt == nil || got[0].Attempt != 1 {
		t.Errorf("pending --json --delayed: %+v", got)
	}
	pendingJSON("--task", "snappea.echo", "--newest")
	if len(got) != 2 || got[0].ID != low || got[1].ID != high {
		t.Errorf("pending --json --task snappea.echo --newest: %+v", got)
	}
	r = mustSnappea(t, "pending", "--dir", dir, "--limit", "1")
	if !strings.Contains(r.stderr, "--limit") {
		t.Errorf("pending --limit 1: stderr %q does not say there may be more", r.stderr)
	}
	if r := snappea(t, "pending", "--dir", filepath.Join(t.TempDir(), "none")); r.code != 1 || !strings.Contains(r.stderr, "--dir") {
		t.Errorf("pending without a database: exit %d, %q", r.code, r.stderr)
	}
	runUsageErrors(t, []usageError{
		{name: "limit zero", args: []string{"pending", "--dir", "DIR", "--limit", "0"}, want: []string{"--limit 0: want at least 1"}},
	})
}

// TestStartupRecord: the start-up record gives the batch in effect, and
// JSON logs write durations as text.
func TestStartupRecord(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		batch int64
	}{{[]string{"--workers", "4"}, 4}, {[]string{"--workers", "4", "--batch", "2"}, 2}, {[]string{"--workers", "2", "--batch", "8"}, 2}} {
		d := startDaemon(t, dataDir(t), append(tt.args, "--poll-interval", "1500ms")...)
		rec := d.waitFor(time.Second, "the start-up record", isMsg("foreman started"))
		if got := rec.int("batch"); got != tt.batch {
			t.Errorf("%v: batch %d in the start-up record, want %d", tt.args, got, tt.batch)
		}
		if got := rec["poll_interval"]; got != "1.5s" {
			t.Errorf("%v: poll_interval %#v, want \"1.5s\"", tt.args, got)
		}
		d.stop()
	}
}

// TestEnqueueProgressOnATerminal: a long 'enqueue --count' shows the
// progress bar on a terminal (a pseudo-terminal from script(1)), and
// nothing of it when stderr is not one.
func TestEnqueueProgressOnATerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("a long enqueue")
	}
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to run snappea on a pseudo-terminal")
	}
	dir := dataDir(t)
	count := 100000
	if raceEnabled { // about ten times slower
		count = 15000
	}
	cmdline := fmt.Sprintf("%s enqueue --dir %s --count %d snappea.noop >/dev/null", bin, dir, count)
	cmd := exec.Command(script, "-qec", cmdline, "/dev/null")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, out)
	}
	m := regexp.MustCompile(fmt.Sprintf(`enqueued %d × snappea.noop in (\S+) \(`, count)).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in %q", out)
	}
	took, _ := time.ParseDuration(string(m[1]))
	if took < 3*time.Second {
		t.Skipf("the enqueue took %v: too short to show progress", took)
	}
	if !regexp.MustCompile(`enqueue snappea.noop\s+\d+% \|`).Match(out) {
		t.Errorf("no progress bar in the terminal's output:\n%q", out)
	}
	r := mustSnappea(t, "enqueue", "--dir", dir, "--count", "10", "snappea.noop")
	if strings.Contains(r.stderr, "%") {
		t.Errorf("progress written to a stderr that is not a terminal: %q", r.stderr)
	}
}

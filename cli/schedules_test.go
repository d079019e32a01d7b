package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/control"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/schedule"
)

// runCLI runs one command line in this process.
func runCLI(t testing.TB, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, Env{Stdout: &out, Stderr: &errb, Getenv: mapEnv(env),
		Exit: func(c int) { t.Fatalf("exit %d", c) }}, registry.New())
	return code, out.String(), errb.String()
}

func writeSchedulesFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedules.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSchedulesCommand(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI(t, nil, "schedules", "--dir", dir); code != ExitError || !strings.Contains(errs, "no snappea database") {
		t.Errorf("schedules without a database: exit %d, %q; want %d and the reason", code, errs, ExitError)
	}
	if code, _, errs := runCLI(t, nil, "migrate", "--dir", dir); code != ExitOK {
		t.Fatalf("migrate: exit %d: %s", code, errs)
	}
	if code, out, _ := runCLI(t, nil, "schedules", "--dir", dir); code != ExitOK || !strings.Contains(out, "no schedules") {
		t.Errorf("schedules on an empty database: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, nil, "schedules", "--dir", dir, "--json"); code != ExitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("schedules --json on an empty database: exit %d, %q; want []", code, out)
	}

	file := writeSchedulesFile(t, `[
  {"name": "five", "spec": "*/5 * * * *", "task": "snappea.noop"},
  {"name": "beat", "spec": "@every 30s", "task": "snappea.echo", "args": {"msg": "hi"}}
]`)
	code, out, errs := runCLI(t, nil, "schedules", "--dir", dir, "--schedules", file)
	if code != ExitOK {
		t.Fatalf("schedules --schedules: exit %d: %s", code, errs)
	}
	for _, want := range []string{"NAME", "five", "*/5 * * * *", "snappea.noop", "beat", "@every 30s", "(in "} {
		if !strings.Contains(out, want) {
			t.Errorf("schedules printed\n%s\nwant it to contain %q", out, want)
		}
	}
	// The file comes from the environment too.
	code, out, errs = runCLI(t, map[string]string{"SNAPPEA_SCHEDULES": file}, "schedules", "--dir", dir, "--json")
	var got []control.Schedule
	if code != ExitOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("schedules --json: exit %d, %q, %s", code, out, errs)
	}
	if len(got) != 2 || got[0].Name != "five" || got[1].Name != "beat" || got[1].Task != "snappea.echo" ||
		got[1].Next.Before(time.Now()) || !got[1].Last.IsZero() {
		t.Errorf("schedules --json = %+v, want five and beat, due in the future, never run", got)
	}
	// Nothing stored yet: --all lists the database's rows only.
	if code, out, _ := runCLI(t, nil, "schedules", "--dir", dir, "--schedules", file, "--all"); code != ExitOK || !strings.Contains(out, "no schedules") {
		t.Errorf("schedules --all: exit %d, %q", code, out)
	}

	for _, tc := range []struct{ content, want string }{
		{`[{"name": "a", "spec": "@every 1s", "task": "no.such"}]`, `unknown task "no.such"`},
		{`[{"name": "a", "spec": "@every 1s", "task": "snappea.sleep", "args": {"ms": "x"}}]`, "bad task arguments"},
		{`[{"name": "a", "spec": "@every", "task": "snappea.noop"}]`, `entry 1 ("a")`},
	} {
		bad := writeSchedulesFile(t, tc.content)
		code, _, errs := runCLI(t, nil, "schedules", "--dir", dir, "--schedules", bad)
		if code != ExitUsage || !strings.Contains(errs, "--schedules") || !strings.Contains(errs, tc.want) {
			t.Errorf("schedules with %s: exit %d, %q; want %d naming the flag and %q", tc.content, code, errs, ExitUsage, tc.want)
		}
	}
}

func TestSchedulesHelp(t *testing.T) {
	code, out, _ := runCLI(t, nil, "help", "schedules")
	for _, want := range []string{"Usage: snappea schedules", `"spec"`, "catch_up", "max_attempts", "CRON_TZ", "@every", "SNAPPEA_SCHEDULES"} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("help schedules: exit %d, want %q in\n%s", code, want, out)
		}
	}
}

func TestSchedules_declared(t *testing.T) {
	t.Cleanup(func() { declared.defs = nil })
	Schedules(schedule.Schedule{Name: "code", Spec: "@hourly", Task: registry.NoopTask})
	c := &cmdEnv{reg: registry.New()}
	registry.RegisterBuiltins(c.reg)
	defs, err := c.schedules("")
	if err != nil || len(defs) != 1 || defs[0].Name != "code" {
		t.Errorf("schedules() = %+v, %v; want the one declared in code", defs, err)
	}
	file := writeSchedulesFile(t, `[{"name": "file", "spec": "@daily", "task": "snappea.noop"}]`)
	if defs, err := c.schedules(file); err != nil || len(defs) != 2 {
		t.Errorf("schedules(file) = %+v, %v; want code's and the file's", defs, err)
	}
	dup := writeSchedulesFile(t, `[{"name": "code", "spec": "@daily", "task": "snappea.noop"}]`)
	if _, err := c.schedules(dup); err == nil || !strings.Contains(err.Error(), "also declared with cli.Schedules") {
		t.Errorf("schedules(dup) = %v, want the name conflict", err)
	}
	Schedules(schedule.Schedule{Name: "broken", Spec: "@often", Task: registry.NoopTask})
	if _, err := c.schedules(""); err == nil || !strings.Contains(err.Error(), "cli.Schedules") || !strings.Contains(err.Error(), `"broken"`) {
		t.Errorf("schedules() with a bad declaration = %v, want it named", err)
	}
}

func TestWriteSchedules(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.Local)
	var b bytes.Buffer
	writeSchedules(&b, []control.Schedule{
		{Name: "a", Spec: "*/5 * * * *", Task: "t", Next: now.Add(5 * time.Minute), Last: now},
		{Name: "b", Spec: "@hourly", Task: "u", Next: now.Add(-time.Minute)},
		{Name: "c", Spec: "0 0 29 2 1", Task: "v"},
	}, now)
	for _, want := range []string{
		"2024-05-01 12:05:00 (in 5m0s)",
		"2024-05-01 12:00:00",
		"2024-05-01 11:59:00 (due 1m0s ago)",
		"never",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("writeSchedules printed\n%s\nwant %q", b.String(), want)
		}
	}
}

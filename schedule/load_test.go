package schedule

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedules.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	path := writeFile(t, `[
  {"name": "cleanup", "spec": "*/5 * * * *", "task": "app.cleanup", "args": {"older_than": "24h"},
   "priority": 3, "timeout": "30s", "max_attempts": 3, "catch_up": true},
  {"name": "heartbeat", "spec": "@every 30s", "task": "snappea.echo", "delay": "1s", "key": "hb"}
]
`)
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Schedule{
		{Name: "cleanup", Spec: "*/5 * * * *", Task: "app.cleanup", Args: json.RawMessage(`{"older_than": "24h"}`),
			Options: registry.Options{Priority: 3, Timeout: 30 * time.Second, MaxAttempts: 3}, CatchUp: true},
		{Name: "heartbeat", Spec: "@every 30s", Task: "snappea.echo",
			Options: registry.Options{Delay: time.Second, Key: "hb"}},
	}
	if len(got) != len(want) {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Spec != w.Spec || g.Task != w.Task || string(g.Args) != string(w.Args) ||
			g.Options != w.Options || g.CatchUp != w.CatchUp {
			t.Errorf("entry %d = %+v, want %+v", i+1, g, w)
		}
	}

	for _, content := range []string{"[]", " [ ]\n", "[\n]"} {
		got, err := Load(writeFile(t, content))
		if err != nil || len(got) != 0 {
			t.Errorf("Load(%q) = %v, %v; want no schedules", content, got, err)
		}
	}
}

func TestLoad_errors(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"empty", "", []string{"empty", "[]"}},
		{"object", `{"name": "a"}`, []string{"line 1", "want a JSON array"}},
		{"syntax", "[\n  {\"name\": \"a\",\n   \"spec\" \"@hourly\"}\n]", []string{"line 3", "invalid character"}},
		{"truncated", "[\n  {\"name\": \"a\"", []string{"line 2", "unexpected end"}},
		{"trailing", `[] []`, []string{"unexpected", "after the array"}},
		{"unknown key", "[\n {\"name\": \"a\", \"spec\": \"@hourly\", \"task\": \"t\"},\n {\"name\": \"b\", \"spec\": \"@hourly\", \"task\": \"t\", \"timout\": \"1s\"}\n]",
			[]string{"line 3", `entry 2 ("b")`, `unknown key "timout"`, "max_attempts"}},
		{"type", `[{"name": "a", "spec": "@hourly", "task": "t", "max_attempts": "3"}]`,
			[]string{`entry 1 ("a")`, "max_attempts: want a whole number, found string"}},
		{"number timeout", `[{"name": "a", "spec": "@hourly", "task": "t", "timeout": 30}]`,
			[]string{`entry 1 ("a")`, `timeout: want a duration string such as "30s"`}},
		{"bad timeout", `[{"name": "a", "spec": "@hourly", "task": "t", "timeout": "30"}]`,
			[]string{`entry 1 ("a")`, `timeout "30"`}},
		{"negative delay", `[{"name": "a", "spec": "@hourly", "task": "t", "delay": "-1s"}]`,
			[]string{`entry 1 ("a")`, "Delay -1s is negative"}},
		{"not an object", `["a"]`, []string{"entry 1", "want a JSON object"}},
		{"no name", `[{"spec": "@hourly", "task": "t"}]`, []string{"entry 1", "name is missing"}},
		{"no task", `[{"name": "a", "spec": "@hourly"}]`, []string{`entry 1 ("a")`, "task is empty"}},
		{"bad spec", "[\n\n {\"name\": \"nightly\", \"spec\": \"0 25 * * *\", \"task\": \"t\"}]",
			[]string{"line 3", `entry 1 ("nightly")`, `spec "0 25 * * *"`}},
		{"duplicate", `[{"name": "a", "spec": "@hourly", "task": "t"}, {"name": "a", "spec": "@daily", "task": "t"}]`,
			[]string{`entry 2 ("a")`, `name is taken by entry 1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%q) = nil error", tc.content)
			}
			msg := err.Error()
			for _, w := range append(tc.want, "schedules file "+path) {
				if !strings.Contains(msg, w) {
					t.Errorf("Load(%q) = %q, want it to contain %q", tc.content, msg, w)
				}
			}
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("Load(missing) = %v, want ErrNotExist naming the file", err)
	}
}

// Validation errors of a file entry match ErrBadSchedule, as New's do.
func TestLoad_errorIs(t *testing.T) {
	_, err := Load(writeFile(t, `[{"name": "a", "spec": "@every 1ms", "task": "t"}]`))
	if !errors.Is(err, ErrBadSchedule) {
		t.Errorf("Load = %v, want ErrBadSchedule", err)
	}
}

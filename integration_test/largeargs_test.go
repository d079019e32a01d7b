package integration_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Arguments past the kernel's 128 KiB per command-line argument go through
// standard input (-) or a file (@FILE); past --max-args-size (default 1 MiB)
// they are refused, and nothing is written.
func TestEnqueue_LargeArgs(t *testing.T) {
	dir := dataDir(t)
	args := `{"msg": "` + strings.Repeat("x", 300<<10) + `"}`
	file := filepath.Join(t.TempDir(), "args.json")
	if err := os.WriteFile(file, []byte(args), 0o600); err != nil {
		t.Fatal(err)
	}
	stdin := func(s string) func(*exec.Cmd) {
		return func(cmd *exec.Cmd) { cmd.Stdin = strings.NewReader(s) }
	}
	for _, tc := range []struct {
		name  string
		setup func(*exec.Cmd)
		arg   string
	}{
		{"stdin", stdin(args), "-"},
		{"file", nil, "@" + file},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := snappeaWith(t, tc.setup, "enqueue", "--dir", dir, "snappea.echo", tc.arg)
			if r.code != 0 {
				t.Fatalf("enqueue 300 KiB through %s: exit %d\n%s", tc.name, r.code, r.stderr)
			}
			id := ids(t, r.stdout)
			if len(id) != 1 {
				t.Fatalf("enqueue printed %q, want one id", r.stdout)
			}
			var got string
			if err := openDB(t, dir).QueryRow(`SELECT args FROM snappea_tasks WHERE id = ?`, id[0]).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != args {
				t.Errorf("stored arguments are %d bytes, want the %d given", len(got), len(args))
			}
		})
	}

	big := `{"msg": "` + strings.Repeat("x", 2<<20) + `"}`
	bigFile := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(bigFile, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		setup func(*exec.Cmd)
		args  []string
		want  []string
	}{
		{"stdin over the default", stdin(big), []string{"-"}, []string{"too large", "1048576"}},
		{"file over the default", nil, []string{"@" + bigFile}, []string{"too large", "1048576"}},
		{"over --max-args-size", stdin(args), []string{"--max-args-size", "256KiB", "-"}, []string{"too large", "262144", "--max-args-size"}},
		{"over SNAPPEA_MAX_ARGS_SIZE", func(cmd *exec.Cmd) {
			stdin(args)(cmd)
			cmd.Env = append(cmd.Env, "SNAPPEA_MAX_ARGS_SIZE=100000")
		}, []string{"-"}, []string{"too large", "100000"}},
		{"bad size", nil, []string{"--max-args-size", "lots", "null"}, []string{"max-args-size", "1MiB"}},
		{"missing file", nil, []string{"@" + filepath.Join(dir, "nope.json")}, []string{"nope.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := getStatus(t, dir).Pending
			args := append([]string{"enqueue", "--dir", dir}, tc.args[:len(tc.args)-1]...)
			args = append(args, "snappea.echo", tc.args[len(tc.args)-1])
			r := snappeaWith(t, tc.setup, args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2 (bad input)\n%s%s", r.code, r.stdout, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("message %q lacks %q", r.stderr, w)
				}
			}
			if after := getStatus(t, dir).Pending; after != before {
				t.Errorf("pending went from %d to %d: something was written", before, after)
			}
		})
	}
}

package cli

import (
	"strings"
	"testing"
)

// The pool size has an upper bound at every entry point of the command
// line; 10^9 used to kill the daemon with out-of-memory.
func TestWorkers_Bound(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"run --workers", nil, []string{"run", "--dir", dir, "--workers", "1000000000"}},
		{"run --workers 10001", nil, []string{"run", "--dir", dir, "--workers", "10001"}},
		{"SNAPPEA_WORKERS", map[string]string{"SNAPPEA_WORKERS": "1000000000"}, []string{"run", "--dir", dir}},
		{"workers N", nil, []string{"workers", "--dir", dir, "1000000000"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.env, tt.args...)
			if code != ExitUsage || !strings.Contains(stderr, "1 to 10000") {
				t.Errorf("exit %d, stderr %q; want %d and the limit named", code, stderr, ExitUsage)
			}
		})
	}
}

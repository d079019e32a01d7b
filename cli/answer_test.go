package cli

import (
	"strings"
	"testing"
)

func TestControlTimeout_Flag(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"zero", nil, []string{"status", "--dir", dir, "--control-timeout", "0"}, "must be more than zero"},
		{"negative", nil, []string{"pause", "--dir", dir, "--control-timeout", "-1s"}, "must be more than zero"},
		{"environment", map[string]string{"SNAPPEA_CONTROL_TIMEOUT": "soon"}, []string{"health", "--dir", dir}, "SNAPPEA_CONTROL_TIMEOUT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tt.env, tt.args...)
			if code != ExitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, ExitUsage, tt.want)
			}
		})
	}
}

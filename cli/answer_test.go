package cli

import (
	"errors"
	"os"
	"path/filepath"
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

func TestPathFile_Check(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snappea.db")
	if err := os.WriteFile(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	p := pathFile{"database", path, fi}
	if err := p.check(); err != nil {
		t.Errorf("check = %v on the same file", err)
	}
	// Written in place: the same file.
	if err := os.WriteFile(path, []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.check(); err != nil {
		t.Errorf("check = %v after a write in place", err)
	}
	if err := os.WriteFile(path+".new", []byte("c"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if err := p.check(); !errors.Is(err, errGone) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("check = %v after a rename over it, want it replaced", err)
	}
	os.Remove(path)
	if err := p.check(); !errors.Is(err, errGone) || !strings.Contains(err.Error(), "removed") {
		t.Errorf("check = %v after removal, want it removed", err)
	}
}

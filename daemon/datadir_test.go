package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWatched_Check(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snappea.db")
	if err := os.WriteFile(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	p := watched{"database", path, fi}
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
	if err := p.check(); !errors.Is(err, ErrDataDirGone) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("check = %v after a rename over it, want it replaced", err)
	}
	os.Remove(path)
	if err := p.check(); !errors.Is(err, ErrDataDirGone) || !strings.Contains(err.Error(), "removed") {
		t.Errorf("check = %v after removal, want it removed", err)
	}
}

package report

import (
	"runtime/debug"
	"testing"
)

func TestReleaseFrom(t *testing.T) {
	tests := []struct{ version, want string }{
		{"v1.2.3", "v1.2.3"},
		{"v0.0.0-20260301123000-0123456789ab+dirty", "v0.0.0-20260301123000-0123456789ab+dirty"},
		{"(devel)", ""},
		{"", ""},
	}
	for _, tt := range tests {
		info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/snappea/snappea", Version: tt.version}}
		if got := releaseFrom(info); got != tt.want {
			t.Errorf("releaseFrom(main version %q) = %q, want %q", tt.version, got, tt.want)
		}
	}
}

package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDashboardFlags_listenAddr(t *testing.T) {
	for _, tt := range []struct {
		in, addr string
		loopback bool
		bad      bool
	}{
		{in: ":8080", addr: "127.0.0.1:8080", loopback: true},
		{in: "8080", addr: "127.0.0.1:8080", loopback: true},
		{in: "127.0.0.1:0", addr: "127.0.0.1:0", loopback: true},
		{in: "127.1.2.3:80", addr: "127.1.2.3:80", loopback: true},
		{in: "localhost:8080", addr: "localhost:8080", loopback: true},
		{in: "[::1]:8080", addr: "[::1]:8080", loopback: true},
		{in: "0.0.0.0:8080", addr: "0.0.0.0:8080"},
		{in: "[::]:8080", addr: "[::]:8080"},
		{in: "example.com:8080", addr: "example.com:8080"},
		{in: "10.0.0.5:8080", addr: "10.0.0.5:8080"},
		{in: "127.0.0.1:", bad: true},
		{in: "a:b:c", bad: true},
	} {
		f := dashboardFlags{addr: tt.in}
		addr, loopback, err := f.listenAddr()
		if tt.bad {
			if err == nil {
				t.Errorf("%q: got %q, want an error", tt.in, addr)
			}
			continue
		}
		if err != nil || addr != tt.addr || loopback != tt.loopback {
			t.Errorf("%q: got %q, loopback %v, %v; want %q, loopback %v", tt.in, addr, loopback, err, tt.addr, tt.loopback)
		}
	}
}

func TestDashboardFlags_check(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	basic, token, empty := write("basic", "ops:s3cret\n"), write("token", "tok123\n"), write("empty", "\n")
	for _, tt := range []struct {
		name  string
		f     dashboardFlags
		err   string                // "" : no error
		admit func(r *http.Request) // a request the auth admits; nil: no auth
	}{
		{name: "off", f: dashboardFlags{}},
		{name: "off with auth", f: dashboardFlags{token: "x"}, err: "need --dashboard-addr"},
		{name: "loopback", f: dashboardFlags{addr: ":8080"}},
		{name: "public without auth", f: dashboardFlags{addr: "0.0.0.0:8080"}, err: "requires authentication"},
		{name: "public, basic", f: dashboardFlags{addr: "0.0.0.0:8080", authFile: basic},
			admit: func(r *http.Request) { r.SetBasicAuth("ops", "s3cret") }},
		{name: "public, token file", f: dashboardFlags{addr: "0.0.0.0:8080", authFile: token},
			admit: func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok123") }},
		{name: "public, token", f: dashboardFlags{addr: "0.0.0.0:8080", token: "t0k"},
			admit: func(r *http.Request) { r.Header.Set("Authorization", "Bearer t0k") }},
		{name: "both", f: dashboardFlags{addr: ":1", token: "t", authFile: token}, err: "both set"},
		{name: "empty file", f: dashboardFlags{addr: ":1", authFile: empty}, err: "empty"},
		{name: "missing file", f: dashboardFlags{addr: ":1", authFile: filepath.Join(dir, "nope")}, err: "no such file"},
		{name: "half basic", f: dashboardFlags{addr: ":1", authFile: write("half", "ops:\n")}, err: "both set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, auth, err := tt.f.check()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (auth != nil) != (tt.admit != nil) {
				t.Fatalf("auth set %v, want %v", auth != nil, tt.admit != nil)
			}
			if auth == nil {
				return
			}
			r, _ := http.NewRequest("GET", "/", nil)
			if auth(r) == nil {
				t.Error("a request without credentials is admitted")
			}
			tt.admit(r)
			if err := auth(r); err != nil {
				t.Errorf("a request with the credentials is refused: %v", err)
			}
		})
	}
}

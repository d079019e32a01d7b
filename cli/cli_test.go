package cli

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"dir":              "SNAPPEA_DIR",
		"wakeup-dir":       "SNAPPEA_WAKEUP_DIR",
		"graceful-timeout": "SNAPPEA_GRACEFUL_TIMEOUT",
	} {
		if got := envName(flagName); got != want {
			t.Errorf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestApplyEnv(t *testing.T) {
	newFS := func() (*flag.FlagSet, *string, *time.Duration) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		dsn := fs.String("sentry-dsn", "", withEnv("sentry-dsn", ""))
		d := fs.Duration("graceful-timeout", time.Second, withEnv("graceful-timeout", ""))
		fs.String("key", "", "an option of one invocation: no twin")
		return fs, dsn, d
	}
	fs, dsn, d := newFS()
	err := applyEnv(fs, mapEnv(map[string]string{"SENTRY_DSN": "alias", "SNAPPEA_GRACEFUL_TIMEOUT": "3s", "SNAPPEA_KEY": "k"}))
	if err != nil || *dsn != "alias" || *d != 3*time.Second {
		t.Errorf("applyEnv: dsn %q, timeout %v, err %v", *dsn, *d, err)
	}
	if k := fs.Lookup("key").Value.String(); k != "" {
		t.Errorf("a flag without a twin was set from the environment: %q", k)
	}
	// The flag's own variable wins over an alias; the command line over both.
	fs, dsn, _ = newFS()
	applyEnv(fs, mapEnv(map[string]string{"SENTRY_DSN": "alias", "SNAPPEA_SENTRY_DSN": "own"}))
	if *dsn != "own" {
		t.Errorf("dsn = %q, want the SNAPPEA_ variable", *dsn)
	}
	fs.Parse([]string{"-sentry-dsn", "flag"})
	if *dsn != "flag" {
		t.Errorf("dsn = %q, want the command line's", *dsn)
	}
	fs, _, _ = newFS()
	err = applyEnv(fs, mapEnv(map[string]string{"SNAPPEA_GRACEFUL_TIMEOUT": "soon"}))
	if err == nil || !strings.Contains(err.Error(), "SNAPPEA_GRACEFUL_TIMEOUT") {
		t.Errorf("bad value: err = %v, want it to name the variable", err)
	}
}

func TestQueueConfigFromEnv(t *testing.T) {
	cfg, err := QueueConfigFromEnv(mapEnv(nil))
	if err != nil || cfg.Dir != "snappea-data" || cfg.BusyTimeout != 5*time.Second {
		t.Errorf("defaults = %+v, %v", cfg, err)
	}
	cfg, err = QueueConfigFromEnv(mapEnv(map[string]string{
		"SNAPPEA_DIR": "/d", "SNAPPEA_WAKEUP_DIR": "/w", "SNAPPEA_BUSY_TIMEOUT": "250ms",
	}))
	if err != nil || cfg.Dir != "/d" || cfg.WakeupDir != "/w" || cfg.BusyTimeout != 250*time.Millisecond {
		t.Errorf("from env = %+v, %v", cfg, err)
	}
	if _, err := QueueConfigFromEnv(mapEnv(map[string]string{"SNAPPEA_BUSY_TIMEOUT": "-1s"})); err == nil {
		t.Error("a negative busy timeout was accepted")
	}
	var d dataFlags
	d.dir = "/data"
	if got := d.lockPath(); got != filepath.Join("/data", LockFile) {
		t.Errorf("lockPath = %q", got)
	}
}

func TestByteSize_Set(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"1MiB", 1 << 20, true},
		{"512KiB", 512 << 10, true},
		{"2 mib", 2 << 20, true},
		{"100B", 100, true},
		{"1GiB", 1 << 30, true},
		{"0", 0, false},
		{"-1", 0, false},
		{"1MB", 0, false},
		{"lots", 0, false},
		{"3GiB", 0, false},
	} {
		var b byteSize
		err := b.Set(tt.in)
		if (err == nil) != tt.ok || (tt.ok && int(b) != tt.want) {
			t.Errorf("Set(%q) = %d, %v; want %d, ok %v", tt.in, b, err, tt.want, tt.ok)
		}
	}
	if s := byteSize(1 << 20); s.String() != "1MiB" {
		t.Errorf("String() = %q, want 1MiB", s.String())
	}
}

func TestQueueConfigFromEnv_MaxArgsSize(t *testing.T) {
	env := map[string]string{"SNAPPEA_MAX_ARGS_SIZE": "256KiB"}
	cfg, err := QueueConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || cfg.MaxArgsSize != 256<<10 {
		t.Errorf("MaxArgsSize = %d, %v; want %d", cfg.MaxArgsSize, err, 256<<10)
	}
	env["SNAPPEA_MAX_ARGS_SIZE"] = "big"
	if _, err := QueueConfigFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "SNAPPEA_MAX_ARGS_SIZE") {
		t.Errorf("a bad SNAPPEA_MAX_ARGS_SIZE: %v, want an error naming it", err)
	}
}

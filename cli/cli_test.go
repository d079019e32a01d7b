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

package cli

import (
	"fmt"
	"io"
	"log/slog"

	"flag"
	"github.com/snappea/snappea/registry"
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
	cfg, err = QueueConfigFromEnv(mapEnv(map[string]string{
		"SNAPPEA_DATABASE_URL": "postgres://app@db:5432/app", "SNAPPEA_SCHEMA": "jobs",
	}))
	if err != nil || cfg.DatabaseURL != "postgres://app@db:5432/app" || cfg.Schema != "jobs" {
		t.Errorf("PostgreSQL from env = %+v, %v", cfg, err)
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

func TestRun_usageErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string // the whole of stderr
	}{
		{"duration", nil, []string{"run", "--dir", dir, "--graceful-timeout", "soon"},
			`snappea run: --graceful-timeout "soon": want a duration such as 5s; see snappea run -h`},
		{"whole number", nil, []string{"run", "--dir", dir, "--workers", "many"},
			`snappea run: --workers "many": want a whole number; see snappea run -h`},
		{"bool", nil, []string{"stop", "--dir", dir, "--wait=maybe"},
			`snappea stop: --wait "maybe": want true or false; see snappea stop -h`},
		{"negative", nil, []string{"enqueue", "--dir", dir, "--max-backlog", "-1", "snappea.noop"},
			`snappea enqueue: --max-backlog "-1": want zero or more, a whole number; see snappea enqueue -h`},
		{"choice", nil, []string{"run", "--dir", dir, "--log-format", "xml"},
			`snappea run: --log-format "xml": want text or json; see snappea run -h`},
		{"unknown flag", nil, []string{"status", "--dir", dir, "--bogus"},
			`snappea status: unknown flag --bogus; see snappea status -h`},
		{"missing value", nil, []string{"status", "--dir"},
			`snappea status: --dir needs a value; see snappea status -h`},
		{"missing duration", nil, []string{"status", "--dir", dir, "--busy-timeout"},
			`snappea status: --busy-timeout needs a value: a duration such as 5s; see snappea status -h`},
		{"range from a flag", nil, []string{"run", "--dir", dir, "--workers", "0"},
			`snappea run: --workers 0: want 1 to 10000; see snappea run -h`},
		{"range from the environment", map[string]string{"SNAPPEA_WORKERS": "0"}, []string{"run", "--dir", dir},
			`snappea run: environment variable SNAPPEA_WORKERS="0": want 1 to 10000; see snappea run -h`},
		{"environment", map[string]string{"SNAPPEA_BUSY_TIMEOUT": "5"}, []string{"status", "--dir", dir},
			`snappea status: environment variable SNAPPEA_BUSY_TIMEOUT="5": want a duration such as 5s; see snappea status -h`},
		{"bad flag after the arguments", nil, []string{"cancel", "12", "--dir", dir, "--busy-timeout", "x"},
			`snappea cancel: --busy-timeout "x": want a duration such as 5s; see snappea cancel -h`},
		{"failed subcommand", nil, []string{"failed", "list", "--dir", dir, "--limit", "ten"},
			`snappea failed list: --limit "ten": want zero or more, a whole number; see snappea failed list -h`},
		{"count", nil, []string{"enqueue", "--dir", dir, "--count", "0", "snappea.noop"},
			`snappea enqueue: --count 0: want at least 1; see snappea enqueue -h`},
		{"replace without a key", nil, []string{"enqueue", "--dir", dir, "--replace", "snappea.noop"},
			`snappea enqueue: --replace needs --key K: the pending task it replaces is the one holding K; see snappea enqueue -h`},
		{"debounce without replace", nil, []string{"enqueue", "--dir", dir, "--key", "k", "--debounce", "5s", "snappea.noop"},
			`snappea enqueue: --debounce needs --replace: it pushes back the pending task a replace keeps; see snappea enqueue -h`},
		{"debounce and delay", nil, []string{"enqueue", "--dir", dir, "--key", "k", "--replace", "--debounce", "5s", "--delay", "1m", "snappea.noop"},
			`snappea enqueue: --debounce and --delay both say when the task may run; give one of them; see snappea enqueue -h`},
		{"debounce and at", nil, []string{"enqueue", "--dir", dir, "--key", "k", "--replace", "--debounce", "5s", "--at", "2030-01-02T15:04:05Z", "snappea.noop"},
			`snappea enqueue: --debounce and --at both say when the task may run; give one of them; see snappea enqueue -h`},
		{"negative debounce", nil, []string{"enqueue", "--dir", dir, "--key", "k", "--replace", "--debounce", "-5s", "snappea.noop"},
			`snappea enqueue: --debounce "-5s": want zero or more, a duration such as 5s; see snappea enqueue -h`},
		{"help for no such command", nil, []string{"help", "nosuch"},
			`snappea help: unknown command "nosuch"; run 'snappea help' for the list`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.env, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if got := strings.TrimSuffix(stderr, "\n"); got != tt.want {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

func TestRun_help(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"help", "run"}, {"run", "-h"}, {"run", "--help"},
		{"enqueue", "snappea.noop", "-h"}, {"failed", "show", "-h"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != ExitOK || stderr != "" || !strings.Contains(stdout, "Usage: snappea") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout only", args, code, stdout, stderr)
		}
	}
}

// TestEnvTwins_oneMeaning: a variable means one thing whichever command
// reads it: the flags it sets have one type and one default everywhere.
func TestEnvTwins_oneMeaning(t *testing.T) {
	c := &cmdEnv{Env: Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: mapEnv(nil)}, reg: registry.New()}
	type meaning struct{ cmd, typ, def string }
	seen := map[string]meaning{}
	for _, cmd := range c.commands() {
		cmd.flags().VisitAll(func(f *flag.Flag) {
			if !strings.Contains(f.Usage, envMark) {
				return
			}
			m := meaning{cmd.name, fmt.Sprintf("%T", f.Value), f.DefValue}
			name := envName(f.Name)
			if was, ok := seen[name]; ok && (was.typ != m.typ || was.def != m.def) {
				t.Errorf("%s means %s (default %q) for %s but %s (default %q) for %s",
					name, was.typ, was.def, was.cmd, m.typ, m.def, m.cmd)
			}
			seen[name] = m
		})
	}
	// Options of one invocation have none (bench's measurement settings
	// aside, which no other command reads).
	for _, cmd := range c.commands() {
		if cmd.name == "bench" {
			continue
		}
		for _, opt := range []string{"count", "json", "no-check", "wait", "since", "limit"} {
			if f := cmd.flags().Lookup(opt); f != nil && strings.Contains(f.Usage, envMark) {
				t.Errorf("%s --%s has an environment variable: an option of one invocation has none", cmd.name, opt)
			}
		}
		if f := cmd.flags().Lookup("batch"); f != nil && cmd.name != "run" && strings.Contains(f.Usage, envMark) {
			t.Errorf("%s --batch reads SNAPPEA_BATCH, which is run's", cmd.name)
		}
	}
}

func TestLogFlags_durations(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var b strings.Builder
		l := logFlags{format: format, level: "info"}
		log, _, err := l.logger(&b)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x", "duration", 1500*time.Microsecond, slog.Group("g", "graceful_timeout", 10*time.Second))
		for _, want := range []string{"1.5ms", "10s"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s: %q does not write a duration as %q", format, b.String(), want)
			}
		}
		if format == "json" && strings.Contains(b.String(), "1500000") {
			t.Errorf("json: %q writes nanoseconds", b.String())
		}
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
		{"2 MiB", 2 << 20, true},
		{"100B", 100, true},
		{"1GiB", 1 << 30, true},
		{"0", 0, false},
		{"-1", 0, false},
		{"1MB", 1000000, true},
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

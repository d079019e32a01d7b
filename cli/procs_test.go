package cli

import (
	"context"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snappea/snappea/registry"
)

// The process pool's flags: bad values are usage errors naming the flag as
// given, from the command line or the environment, before anything is
// created.
func TestRun_procsUsageErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string // the whole of stderr
	}{
		{"isolation", nil, []string{"run", "--dir", dir, "--isolation", "thread"},
			`snappea run: --isolation "thread": want goroutine or process; see snappea run -h`},
		{"min over max", nil, []string{"run", "--dir", dir, "--procs-min", "3", "--procs-max", "2"},
			`snappea run: --procs-min 3: more than --procs-max 2; see snappea run -h`},
		{"min over the default max", nil, []string{"run", "--dir", dir, "--workers", "2", "--procs-min", "3"},
			`snappea run: --procs-min 3: more than --procs-max, whose default is --workers (2); see snappea run -h`},
		{"max zero from the environment", map[string]string{"SNAPPEA_PROCS_MAX": "0"}, []string{"run", "--dir", dir},
			`snappea run: environment variable SNAPPEA_PROCS_MAX="0": want 1 to 10000; see snappea run -h`},
		{"negative min", nil, []string{"run", "--dir", dir, "--procs-min", "-1"},
			`snappea run: --procs-min "-1": want zero or more, a whole number; see snappea run -h`},
		{"rss", nil, []string{"run", "--dir", dir, "--max-rss-per-proc", "lots"},
			`snappea run: --max-rss-per-proc "lots": want a size such as 1MiB; see snappea run -h`},
		{"workers min over max", nil, []string{"workers", "--dir", dir, "--procs-min", "3", "--procs-max", "2"},
			`snappea workers: --procs-min 3: more than --procs-max 2; see snappea workers -h`},
		{"workers max zero", nil, []string{"workers", "--dir", dir, "--procs-max", "0"},
			`snappea workers: --procs-max 0: want 1 to 10000; see snappea workers -h`},
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

// The hidden subcommand refuses to run by hand, and is not in the help.
func TestChildCommand(t *testing.T) {
	code, _, stderr := runCLI(t, nil, childCommand)
	if code == ExitOK || !strings.Contains(stderr, "started by the process pool") {
		t.Errorf("%s by hand: exit %d, stderr %q; want a failure saying who starts it", childCommand, code, stderr)
	}
	_, help, _ := runCLI(t, nil, "help")
	if strings.Contains(help, childCommand) {
		t.Errorf("the help lists %s:\n%s", childCommand, help)
	}
}

// The pool is started only when a task is isolated; its limits default
// from --workers and take the flags.
func TestDaemon_processes(t *testing.T) {
	parse := func(t *testing.T, reg *registry.Registry, args ...string) *daemon {
		t.Helper()
		var f runFlags
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		fs.IntVar(&f.workers, "workers", 16, "")
		f.procs.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &daemon{c: &cmdEnv{Env: Env{Getenv: mapEnv(nil)}, reg: reg}, f: &f}
	}
	plain := registry.New()
	if cfg := parse(t, plain).processes(); cfg != nil {
		t.Errorf("no task isolated: pool %+v, want none", cfg)
	}
	cfg := parse(t, plain, "--isolation", "process", "--workers", "6").processes()
	if cfg == nil || cfg.Min != 1 || cfg.Max != 6 || cfg.Idle != time.Minute || cfg.MaxRSS != 0 {
		t.Errorf("--isolation process: pool %+v, want min 1, max --workers, idle 1m", cfg)
	}
	isolated := registry.New()
	registry.Register(isolated, "x", func(context.Context, struct{}) error { return nil }, registry.Options{Isolated: true})
	cfg = parse(t, isolated, "--procs-min", "0", "--procs-max", "3", "--procs-idle", "0", "--max-rss-per-proc", "1MiB").processes()
	if cfg == nil || cfg.Min != -1 || cfg.Max != 3 || cfg.Idle != -1 || cfg.MaxRSS != 1<<20 {
		t.Errorf("an isolated task: pool %+v, want on demand (Min -1), max 3, never idle out (-1), 1MiB", cfg)
	}
}

package integration_test

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// unitSettings reads the [Service] settings of a systemd unit: the last
// value of each key.
func unitSettings(t *testing.T, unit string) map[string]string {
	t.Helper()
	m := map[string]string{}
	section := ""
	for line := range strings.Lines(unit) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q: want KEY=VALUE", line)
			}
			m[k] = v
		}
	}
	return m
}

// gracefulDefault is the default of 'snappea run --graceful-timeout', read
// from the binary's help.
func gracefulDefault(t *testing.T) time.Duration {
	t.Helper()
	r := snappea(t, "run", "-h")
	m := regexp.MustCompile(`(?s)-graceful-timeout duration\n[^\n]*\(default ([^)]+)\)`).FindStringSubmatch(r.stdout + r.stderr)
	if m == nil {
		t.Fatalf("no default of --graceful-timeout in 'snappea run -h':\n%s%s", r.stdout, r.stderr)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("default of --graceful-timeout %q: %v", m[1], err)
	}
	return d
}

func TestContrib_SystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../contrib/systemd/snappea.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	s := unitSettings(t, unit)
	for k, want := range map[string]string{
		"Type": "notify", "KillMode": "mixed", "ExecReload": "/bin/kill -HUP $MAINPID",
		"StateDirectory": "snappea", "Environment": "SNAPPEA_DIR=%S/snappea", "Restart": "on-failure",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
	} {
		if s[k] != want {
			t.Errorf("%s=%q, want %q", k, s[k], want)
		}
	}
	// Stopping must leave the graceful timeout, plus the second the daemon
	// waits after cancelling, to the daemon.
	grace := gracefulDefault(t)
	stop, err := time.ParseDuration(s["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("TimeoutStopSec=%q: %v", s["TimeoutStopSec"], err)
	}
	if stop < grace+5*time.Second {
		t.Errorf("TimeoutStopSec=%v, want at least the graceful timeout (%v) + 5s", stop, grace)
	}
	if wd, err := time.ParseDuration(s["WatchdogSec"]); err != nil || wd <= grace {
		t.Errorf("WatchdogSec=%q, want a duration above the graceful timeout (%v) a reload may drain for", s["WatchdogSec"], grace)
	}
	exec0 := strings.Fields(s["ExecStart"])
	if len(exec0) < 2 || exec0[1] != "run" {
		t.Fatalf("ExecStart=%q, want PROGRAM run ...", s["ExecStart"])
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found; the unit's syntax is not checked")
	}
	// verify wants ExecStart's program to exist: point it at the binary
	// the tests built.
	path := filepath.Join(t.TempDir(), "snappea.service")
	if err := os.WriteFile(path, []byte(strings.Replace(unit, "ExecStart="+exec0[0], "ExecStart="+bin, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// verify exits 0 on unknown keys and bad values, only saying so.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}

// dockerfile is the Dockerfile at the root, as its instructions.
type dockerfile struct {
	args                    map[string]string // ARG defaults
	build                   string            // the RUN line that builds the program
	healthcheck, entrypoint []string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{args: map[string]string{}}
	jsonArray := func(what, s string) []string {
		var v []string
		if err := json.Unmarshal([]byte(s), &v); err != nil || len(v) == 0 {
			t.Fatalf("Dockerfile %s %q: want the exec form, a JSON array", what, s)
		}
		return v
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		instr, rest, _ := strings.Cut(line, " ")
		switch instr {
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			df.args[k] = v
		case "RUN":
			if strings.Contains(rest, "go build") {
				if df.build != "" {
					t.Fatal("Dockerfile: more than one RUN line with 'go build'")
				}
				df.build = rest
			}
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(rest, "CMD ")
			if !ok {
				t.Fatalf("Dockerfile HEALTHCHECK %q: no CMD", rest)
			}
			df.healthcheck = jsonArray("HEALTHCHECK", cmd)
		case "ENTRYPOINT":
			df.entrypoint = jsonArray("ENTRYPOINT", rest)
		}
	}
	if df.build == "" || df.healthcheck == nil || df.entrypoint == nil {
		t.Fatalf("Dockerfile: want a RUN line with 'go build', a HEALTHCHECK and an ENTRYPOINT")
	}
	return df
}

// buildCommand turns the Dockerfile's build line, VAR=value ... go build
// ... -o OUT ..., into a command that writes the program to out.
func (df dockerfile) buildCommand(t *testing.T, out string) *exec.Cmd {
	t.Helper()
	var env, args []string
	words := strings.Fields(df.build)
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env = append(env, words[0])
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile build line %q: want [VAR=value...] go build ...", df.build)
	}
	args = append(args, "build")
	for i := 2; i < len(words); i++ {
		w := words[i]
		if strings.ContainsAny(w, `"'\`) {
			t.Fatalf("Dockerfile build line %q: quoting is not understood here; keep the words plain", df.build)
		}
		switch {
		case w == "-o" && i+1 < len(words):
			args = append(args, "-o", out)
			i++
		case strings.HasPrefix(w, "$"):
			v, ok := df.args[strings.Trim(w, "${}")]
			if !ok {
				t.Fatalf("Dockerfile build line: %s has no ARG default", w)
			}
			args = append(args, v)
		default:
			args = append(args, w)
		}
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// isStatic reports why the ELF file at path is not statically linked, or
// "" if it is.
func isStatic(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			return "it names a program interpreter (PT_INTERP)", nil
		case elf.PT_DYNAMIC:
			return "it has a dynamic section (PT_DYNAMIC)", nil
		}
	}
	return "", nil
}

func TestContrib_DockerfileBuildsAStaticDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary; skipped under -short")
	}
	df := readDockerfile(t)
	if !strings.HasPrefix(df.build, "CGO_ENABLED=0 ") {
		t.Errorf("Dockerfile build line %q: want CGO_ENABLED=0 first, for a static binary", df.build)
	}
	prog := filepath.Join(t.TempDir(), "snappea")
	build := df.buildCommand(t, prog)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v (in %s, with %v): %v\n%s", build.Args, build.Dir, build.Env[len(os.Environ()):], err, out)
	}
	why, err := isStatic(prog)
	if err != nil {
		t.Fatal(err)
	}
	if why != "" {
		t.Fatalf("the Dockerfile's build is not static: %s", why)
	}

	// The image runs ENTRYPOINT with CMD, and HEALTHCHECK beside it, with
	// SNAPPEA_DIR set: the same here, with this build.
	dir := dataDir(t)
	d := launchProgram(t, prog, dir)
	d.waitFor(30*time.Second, "the static daemon to start", isMsg("foreman started"))
	health := exec.Command(prog, df.healthcheck[1:]...)
	health.Env = append(cleanEnv(), "SNAPPEA_DIR="+dir)
	if out, err := health.CombinedOutput(); err != nil {
		t.Errorf("the Dockerfile's HEALTHCHECK %v on a running daemon: %v\n%s", df.healthcheck, err, out)
	}
	stop := exec.Command(prog, "stop", "--wait", "--dir", dir)
	stop.Env = cleanEnv()
	if out, err := stop.CombinedOutput(); err != nil {
		t.Fatalf("snappea stop: %v\n%s", err, out)
	}
	if code := d.wait(30 * time.Second); code != 0 {
		t.Errorf("static daemon exited %d after stop, want 0\n%s", code, d.output())
	}
	// With no daemon, the health check fails: it is a real check.
	health = exec.Command(prog, df.healthcheck[1:]...)
	health.Env = append(cleanEnv(), "SNAPPEA_DIR="+dir)
	if out, err := health.CombinedOutput(); err == nil {
		t.Errorf("HEALTHCHECK %v with no daemon passed, want a failure\n%s", df.healthcheck, out)
	}
}

func TestContrib_IsStaticSeesADynamicBinary(t *testing.T) {
	const sh = "/bin/sh" // dynamically linked on every distribution with a C library
	if _, err := os.Stat(sh); err != nil {
		t.Skip(sh, " not found")
	}
	why, err := isStatic(sh)
	if err != nil {
		t.Skip(sh, " is not an ELF file: ", err)
	}
	if why == "" {
		t.Errorf("isStatic(%s) found it static; it is dynamically linked", sh)
	}
}

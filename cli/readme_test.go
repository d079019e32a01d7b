package cli

import (
	"flag"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/snappea/snappea/registry"
)

// readmeTable is one flag table of the README: its rows by flag name.
type readmeTable map[string]readmeRow

type readmeRow struct {
	env  []string // the environment column's variables
	line string
}

var (
	backticked = regexp.MustCompile("`([^`]+)`")
	envVar     = regexp.MustCompile(`\b(?:SNAPPEA|SENTRY)_[A-Z0-9_]*[A-Z0-9]\b`)
	flagRef    = regexp.MustCompile(`--([a-z][a-z0-9-]*)`)
)

// tableAfter parses the first flag table ("| flag | environment | ...")
// after the line starting with marker.
func tableAfter(t *testing.T, readme, marker string) readmeTable {
	t.Helper()
	i := strings.Index(readme, "\n"+marker)
	if i < 0 {
		t.Fatalf("README has no line starting %q", marker)
	}
	lines := strings.Split(readme[i+1:], "\n")
	tab := readmeTable{}
	inTable := false
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "| flag | environment |"):
			inTable = true
		case inTable && strings.HasPrefix(l, "| ---"):
		case inTable && strings.HasPrefix(l, "| `--"):
			cells := strings.Split(l, "|")
			name := strings.Trim(strings.TrimSpace(cells[1]), "`-")
			tab[name] = readmeRow{env: envVar.FindAllString(cells[2], -1), line: l}
		case inTable:
			return tab
		}
	}
	if !inTable {
		t.Fatalf("no flag table after %q", marker)
	}
	return tab
}

func readREADME(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testCommands() *cmdEnv {
	return &cmdEnv{Env: Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }},
		reg: registry.New()}
}

// envOf lists the environment variables a flag is read from.
func envOf(f *flag.Flag) []string {
	if !strings.Contains(f.Usage, envMark) {
		return nil
	}
	return append([]string{envName(f.Name)}, envAliases[f.Name]...)
}

// TestREADME_agreesWithHelp: the README's flag tables, its command
// synopses and the variables it names agree with the commands' FlagSets,
// whose usage is the help.
func TestREADME_agreesWithHelp(t *testing.T) {
	readme := readREADME(t)
	c := testCommands()
	checkRow := func(where string, tab readmeTable, f *flag.Flag) {
		t.Helper()
		row, ok := tab[f.Name]
		if !ok {
			t.Errorf("%s: README has no row for --%s", where, f.Name)
			return
		}
		if got, want := row.env, envOf(f); !slices.Equal(got, want) {
			t.Errorf("%s --%s: README gives environment %v, the help %v", where, f.Name, got, want)
		}
	}

	// The data flags: which commands take them, and their variables.
	shared := tableAfter(t, readme, "Flags of every command that uses the data directory")
	para := readme[strings.Index(readme, "Flags of every command that uses the data directory"):]
	para = para[:strings.Index(para, "\n\n")]
	noData, noBusy := []string{}, []string{}
	notBy := strings.Index(para, "not by")
	for _, m := range backticked.FindAllStringSubmatchIndex(para, -1) {
		name := para[m[2]:m[3]]
		if strings.HasPrefix(name, "-") {
			continue
		}
		if m[0] > notBy {
			noBusy = append(noBusy, name)
		} else {
			noData = append(noData, name)
		}
	}
	var wantNoData, wantNoBusy []string
	for _, cmd := range c.commands() {
		fs := cmd.flags()
		if fs.Lookup("dir") == nil {
			wantNoData = append(wantNoData, cmd.name)
			continue
		}
		if fs.Lookup("busy-timeout") == nil {
			wantNoBusy = append(wantNoBusy, cmd.name)
		}
		for name := range shared {
			if f := fs.Lookup(name); f != nil {
				checkRow("data flags of "+cmd.name, shared, f)
			}
		}
	}
	wantNoData = append(wantNoData, "version")
	slices.Sort(noData)
	slices.Sort(wantNoData)
	slices.Sort(noBusy)
	slices.Sort(wantNoBusy)
	if !slices.Equal(noData, wantNoData) {
		t.Errorf("README: the commands without the data flags are %v; they are %v", noData, wantNoData)
	}
	if !slices.Equal(noBusy, wantNoBusy) {
		t.Errorf("README: the commands without --busy-timeout are %v; they are %v", noBusy, wantNoBusy)
	}

	// The tables of run and enqueue list each of their own flags; enqueue's
	// task options are in the Task options table.
	options := readme[strings.Index(readme, "| option | flag of `snappea enqueue` |"):]
	options = options[:strings.Index(options, "\n\n")]
	for _, tt := range []struct{ cmd, marker string }{
		{"run", "**`snappea run`**"},
		{"enqueue", "**`snappea enqueue [flags] TASK [JSON | - | @FILE]`**"},
	} {
		tab := tableAfter(t, readme, tt.marker)
		fs := c.lookup(tt.cmd).flags()
		fs.VisitAll(func(f *flag.Flag) {
			if _, ok := shared[f.Name]; ok {
				return
			}
			if tt.cmd == "enqueue" && strings.Contains(options, "`--"+f.Name) {
				if envOf(f) != nil {
					t.Errorf("enqueue --%s, a task option, has an environment variable", f.Name)
				}
				return
			}
			checkRow(tt.cmd, tab, f)
		})
		for name := range tab {
			if fs.Lookup(name) == nil {
				t.Errorf("README: %s has no flag --%s", tt.cmd, name)
			}
		}
	}

	// The synopses of the operating table name every flag of their
	// command but the data flags, and only flags it has.
	synopsis := regexp.MustCompile("(?m)^\\| `snappea ([a-z]+)([^`]*)`")
	seen := 0
	for _, m := range synopsis.FindAllStringSubmatch(readme, -1) {
		cmd := c.lookup(m[1])
		if cmd == nil {
			t.Errorf("README: no command %q", m[1])
			continue
		}
		seen++
		var named []string
		for _, f := range flagRef.FindAllStringSubmatch(m[2], -1) {
			named = append(named, f[1])
			if cmd.flags().Lookup(f[1]) == nil {
				t.Errorf("README: snappea %s has no flag --%s", m[1], f[1])
			}
		}
		cmd.flags().VisitAll(func(f *flag.Flag) {
			if _, ok := shared[f.Name]; !ok && !slices.Contains(named, f.Name) {
				t.Errorf("README: the synopsis of snappea %s leaves out --%s", m[1], f.Name)
			}
		})
	}
	if seen < 6 {
		t.Errorf("found %d command synopses in the README's operating table, want them all", seen)
	}

	// Every variable the README names is a flag's, but the one the tests
	// read to find a PostgreSQL server.
	known := map[string]bool{"SNAPPEA_TEST_DATABASE_URL": true}
	for _, cmd := range c.commands() {
		cmd.flags().VisitAll(func(f *flag.Flag) {
			for _, e := range envOf(f) {
				known[e] = true
			}
		})
	}
	for _, e := range envVar.FindAllString(readme, -1) {
		if !known[e] {
			t.Errorf("README names %s, which no flag reads", e)
		}
	}
}

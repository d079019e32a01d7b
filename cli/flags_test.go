package cli

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestFlagProblem: flags registered with the standard library's own types,
// as well as ours, get one line naming the flag and the form wanted.
func TestFlagProblem(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.Duration("timeout", time.Second, "")
	fs.Int("n", 0, "")
	fs.Int64("big", 0, "")
	fs.Uint("u", 0, "")
	fs.Float64("rate", 0, "")
	fs.Bool("wait", false, "")
	fs.String("name", "", "")
	var size sizeFlag
	fs.Var(&size, "max-args-size", "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--timeout", "3"}, `--timeout "3": want a duration such as 5s`},
		{[]string{"--n", "x"}, `--n "x": want a whole number`},
		{[]string{"--big", "99999999999999999999"}, `--big "99999999999999999999": want a whole number (out of range)`},
		{[]string{"--u", "-1"}, `--u "-1": want a whole number`},
		{[]string{"--rate", "fast"}, `--rate "fast": want a number such as 2.5`},
		{[]string{"--wait=perhaps"}, `--wait "perhaps": want true or false`},
		{[]string{"--max-args-size", "1 lot"}, `--max-args-size "1 lot": want a size such as 1MiB`},
		{[]string{"--nope"}, `unknown flag --nope`},
		{[]string{"-name"}, `--name needs a value`},
		{[]string{"--timeout"}, `--timeout needs a value: a duration such as 5s`},
	} {
		err := fs.Parse(tt.args)
		if err == nil {
			t.Errorf("%q parsed", tt.args)
			continue
		}
		if got := flagProblem(fs, err); got != tt.want {
			t.Errorf("%q: %s, want %s", tt.args, got, tt.want)
		}
	}
}

func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"1MiB": 1 << 20, "512KiB": 512 << 10, "2GiB": 2 << 30, "1000": 1000,
		"1MB": 1e6, "10 B": 10, "0": 0} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "1TB", "99999999999GiB"} {
		var s sizeFlag
		if err := s.Set(in); err == nil || !strings.Contains(err.Error(), "want a size such as 1MiB") {
			t.Errorf("Set(%q): %v, want an error", in, err)
		}
	}
	if s := sizeFlag(1 << 20); s.String() != "1MiB" {
		got := s.String()
		t.Errorf("String = %q", got)
	}
}

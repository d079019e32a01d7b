package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A bad flag or environment value is one line: what was given, the form
// wanted, and where to read more. The form comes from the flag's type,
// so that a flag registered anywhere, with the standard library's
// fs.IntVar as well as with the types below, gets the same error.

// wanter is a flag value that names the form it wants ("a duration such
// as 5s"), for values whose type alone does not say.
type wanter interface{ Want() string }

// Forms of the common flag types, for the "want ..." of an error.
const (
	wantDuration = "a duration such as 5s"
	wantInt      = "a whole number"
	wantBool     = "true or false"
	wantFloat    = "a number such as 2.5"
	wantSize     = "a size such as 1MiB"
)

// wantOf is the form v wants, "" when any string will do.
func wantOf(v flag.Value) string {
	if w, ok := v.(wanter); ok {
		return w.Want()
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return wantDuration
	case int, int64, uint, uint64:
		return wantInt
	case bool:
		return wantBool
	case float64:
		return wantFloat
	}
	return ""
}

// errWant is a Set error that is just the form wanted, said by the type.
type errWant string

func (e errWant) Error() string { return "want " + string(e) }

// reason explains a failed Set of v: the value's own error when it says
// more than "parse error", else the form v wants.
func reason(v flag.Value, err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "want ") {
		return msg
	}
	if w := wantOf(v); w != "" {
		switch msg {
		case "parse error", "":
			return "want " + w
		case "value out of range":
			return "want " + w + " (out of range)"
		}
		if strings.HasPrefix(msg, "strconv.") || strings.HasPrefix(msg, "time: ") {
			return "want " + w
		}
		return msg + "; want " + w
	}
	return msg
}

// usageError is a mistake on the command line or in the environment: one
// line, then where to read more.
type usageError struct {
	cmd, msg string
}

func (e *usageError) Error() string {
	return fmt.Sprintf("snappea %s: %s; see snappea %s -h", e.cmd, e.msg, e.cmd)
}

// usagef prints a usage error of command cmd and returns ExitUsage.
func (c *cmdEnv) usagef(cmd, format string, args ...any) int {
	fmt.Fprintln(c.Stderr, (&usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}).Error())
	return ExitUsage
}

// The flag package's messages, turned into ours.
var (
	invalidValueRE = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-([^:\s]+): (.*)$`)
	invalidBoolRE  = regexp.MustCompile(`^invalid boolean flag ([^:\s]+): (.*)$`)
	undefinedRE    = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	needsArgRE     = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
)

// flagProblem turns an error of fs.Parse into one line naming the flag and
// the form it wants.
func flagProblem(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if m := invalidValueRE.FindStringSubmatch(msg); m != nil {
		if f := fs.Lookup(m[2]); f != nil {
			return fmt.Sprintf("--%s %s: %s", m[2], m[1], reason(f.Value, errors.New(m[3])))
		}
	}
	if m := invalidBoolRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s: want %s", m[1], wantBool)
	}
	if m := undefinedRE.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("unknown flag --%s", m[1])
	}
	if m := needsArgRE.FindStringSubmatch(msg); m != nil {
		if f := fs.Lookup(m[1]); f != nil {
			if w := wantOf(f.Value); w != "" {
				return fmt.Sprintf("--%s needs a value: %s", m[1], w)
			}
		}
		return fmt.Sprintf("--%s needs a value", m[1])
	}
	return msg
}

// parseFlags parses args with fs: anywhere among the arguments when
// interspersed, else before the first argument (for a command whose first
// argument is a subcommand with flags of its own). It returns the
// arguments that are not flags, or nil and the exit code when parsing ends
// the command: help asked for is printed on stdout with ExitOK, a mistake
// is one line on stderr with ExitUsage.
func (c *cmdEnv) parseFlags(cmd string, fs *flag.FlagSet, args []string, interspersed bool) ([]string, int) {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	var (
		rest []string
		err  error
	)
	if interspersed {
		rest, err = parseInterspersed(fs, args)
	} else if err = fs.Parse(args); err == nil {
		rest = fs.Args()
	}
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(c.Stdout)
		fs.Usage()
		fs.SetOutput(out)
		return nil, ExitOK
	case err != nil:
		return nil, c.usagef(cmd, "%s", flagProblem(fs, err))
	}
	if rest == nil {
		rest = []string{}
	}
	return rest, ExitOK
}

// parseInterspersed parses fs's flags anywhere among args, so that
// 'failed show 3 --json' works as 'failed show --json 3' does, and returns
// the arguments that are not flags ("--" ends the flags).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	rest := []string{}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if n := len(args) - len(left); n > 0 && args[n-1] == "--" {
			return append(rest, left...), nil
		}
		if len(left) == 0 {
			return rest, nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// given names a flag as the user set it, with its value: "--workers 0"
// from the command line, "environment variable SNAPPEA_WORKERS="0"" from
// the environment, for
// errors about values that parse but do not fit.
func (c *cmdEnv) given(fs *flag.FlagSet, name string) string {
	f := fs.Lookup(name)
	if f == nil {
		return "--" + name
	}
	onLine := false
	fs.Visit(func(v *flag.Flag) { onLine = onLine || v.Name == name })
	if !onLine && c.Getenv != nil && strings.Contains(f.Usage, envMark) {
		for _, env := range append([]string{envName(name)}, envAliases[name]...) {
			if v := c.Getenv(env); v != "" {
				return fmt.Sprintf("environment variable %s=%q", env, v)
			}
		}
	}
	return fmt.Sprintf("--%s %s", name, f.Value)
}

// nonNegativeDuration is a duration flag that refuses values below zero,
// so that the mistake is a usage error naming the flag.
type nonNegativeDuration time.Duration

func (d *nonNegativeDuration) String() string { return time.Duration(*d).String() }

func (d *nonNegativeDuration) Want() string { return wantDuration }

func (d *nonNegativeDuration) Get() any { return time.Duration(*d) }

func (d *nonNegativeDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errWant(wantDuration)
	}
	if v < 0 {
		return errWant("zero or more, " + wantDuration)
	}
	*d = nonNegativeDuration(v)
	return nil
}

// nonNegativeInt is an int flag that refuses values below zero, so that
// the mistake is a usage error naming the flag.
type nonNegativeInt int

func (n *nonNegativeInt) String() string { return strconv.Itoa(int(*n)) }

func (n *nonNegativeInt) Want() string { return "zero or more, " + wantInt }

func (n *nonNegativeInt) Get() any { return int(*n) }

func (n *nonNegativeInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return errWant(n.Want())
	}
	*n = nonNegativeInt(v)
	return nil
}

// sizeFlag is a size in bytes: a whole number with an optional unit, B,
// KB, KiB, MB, MiB, GB or GiB ("1MiB", "512KiB", "1000000").
type sizeFlag int64

func (s *sizeFlag) String() string { return formatSize(int64(*s)) }

func (s *sizeFlag) Want() string { return wantSize }

func (s *sizeFlag) Get() any { return int64(*s) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return errWant(wantSize)
	}
	*s = sizeFlag(n)
	return nil
}

var sizeUnits = []struct {
	name string
	n    int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1},
}

// parseSize parses a size such as 1MiB into bytes.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(s, u.name); ok {
			s, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// formatSize writes n bytes in the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits[:3] {
		if n != 0 && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// choiceFlag is a string flag that takes one of a few words, in any case.
type choiceFlag struct {
	p       *string
	choices []string
}

func (c *choiceFlag) String() string {
	if c.p == nil {
		return ""
	}
	return *c.p
}

func (c *choiceFlag) Want() string {
	if len(c.choices) == 0 {
		return ""
	}
	return strings.Join(c.choices[:len(c.choices)-1], ", ") + " or " + c.choices[len(c.choices)-1]
}

func (c *choiceFlag) Get() any { return *c.p }

func (c *choiceFlag) Set(s string) error {
	for _, ch := range c.choices {
		if strings.EqualFold(s, ch) {
			*c.p = ch
			return nil
		}
	}
	return errWant(c.Want())
}

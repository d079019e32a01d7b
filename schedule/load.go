package schedule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/snappea/snappea/registry"
)

// fileEntry is one schedule in a schedules file; see Load.
type fileEntry struct {
	Name        string          `json:"name"`
	Spec        string          `json:"spec"`
	Task        string          `json:"task"`
	Args        json.RawMessage `json:"args"`
	Priority    int             `json:"priority"`
	Delay       string          `json:"delay"`
	Timeout     string          `json:"timeout"`
	MaxAttempts int             `json:"max_attempts"`
	Key         string          `json:"key"`
	CatchUp     bool            `json:"catch_up"`
}

const fileFields = "name, spec, task, args, priority, delay, timeout, max_attempts, key, catch_up"

// Load reads a schedules file: a JSON array of objects with the keys
//
//	name          string, required: the schedule's Name
//	spec          string, required: the Spec ("*/5 * * * *", "@hourly", "@every 30s")
//	task          string, required: the task name
//	args          any JSON: the task's arguments (default null)
//	priority      integer: Options.Priority
//	delay         duration string such as "10s": Options.Delay
//	timeout       duration string such as "30s": Options.Timeout
//	max_attempts  integer: Options.MaxAttempts
//	key           string: Options.Key
//	catch_up      boolean: CatchUp
//
// Other keys are an error, so that a misspelt one is not silently
// ignored. Each entry is checked as Validate does without a registry; an
// error names the file, the line and the entry. "[]" holds no schedules;
// an empty file is an error.
func Load(path string) ([]Schedule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schedules file: %w", err)
	}
	out, err := parseFile(b, time.Now())
	if err != nil {
		return nil, fmt.Errorf("schedules file %s%w", path, err)
	}
	return out, nil
}

// parseFile parses a schedules file's contents; errors start with ", line
// N" or ":", to follow the file's name.
func parseFile(b []byte, now time.Time) ([]Schedule, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	switch {
	case err == io.EOF:
		return nil, errors.New(`: empty; want a JSON array of schedules ("[]" for none)`)
	case err != nil:
		return nil, syntaxError(b, err)
	case tok != json.Delim('['):
		return nil, fmt.Errorf(`, line %d: want a JSON array of schedules, found %s`, lineAt(b, 0), describe(tok))
	}
	var out []Schedule
	first := make(map[string]int) // name: entry number
	for n := 1; dec.More(); n++ {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntaxError(b, err)
		}
		line := lineAt(b, start)
		s, err := parseEntry(raw, now)
		if err != nil {
			if s.Name != "" {
				return nil, fmt.Errorf(", line %d: entry %d (%q): %w", line, n, s.Name, err)
			}
			return nil, fmt.Errorf(", line %d: entry %d: %w", line, n, err)
		}
		if m, dup := first[s.Name]; dup {
			return nil, fmt.Errorf(", line %d: entry %d (%q): %w", line, n, s.Name,
				bad("the name is taken by entry %d", m))
		}
		first[s.Name] = n
		out = append(out, s)
	}
	if _, err := dec.Token(); err != nil {
		return nil, syntaxError(b, err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, syntaxError(b, err)
		}
		return nil, fmt.Errorf(", line %d: unexpected %s after the array", lineAt(b, dec.InputOffset()), describe(tok))
	}
	return out, nil
}

// parseEntry decodes and checks one entry. The Schedule it returns with
// an error has the entry's name when it could be read, for the message.
func parseEntry(raw json.RawMessage, now time.Time) (Schedule, error) {
	var named struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(raw, &named) // only for the message; the strict decode below reports errors
	partial := Schedule{Name: named.Name}

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var fe fileEntry
	if err := dec.Decode(&fe); err != nil {
		return partial, decodeError(err)
	}
	if fe.Name == "" {
		return partial, bad("name is missing")
	}
	s := Schedule{Name: fe.Name, Spec: fe.Spec, Task: fe.Task, Args: fe.Args, CatchUp: fe.CatchUp,
		Options: registry.Options{Priority: fe.Priority, MaxAttempts: fe.MaxAttempts, Key: fe.Key}}
	var err error
	if s.Options.Delay, err = parseDuration("delay", fe.Delay); err != nil {
		return s, err
	}
	if s.Options.Timeout, err = parseDuration("timeout", fe.Timeout); err != nil {
		return s, err
	}
	if _, err := s.check(now); err != nil {
		return s, err
	}
	return s, nil
}

func parseDuration(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, bad(`%s %q: want a duration such as "30s" or "5m"`, field, v)
	}
	return d, nil
}

// decodeError says what is wrong with an entry in the file's terms.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return bad("want a JSON object, found %s", te.Value)
		}
		return bad("%s: want %s, found %s", te.Field, want(te.Field, te.Type), te.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return bad("unknown key %s; the keys are %s", f, fileFields)
	}
	return bad("%v", err)
}

func want(field string, t reflect.Type) string {
	switch {
	case field == "delay" || field == "timeout":
		return `a duration string such as "30s"`
	case t.Kind() == reflect.Int:
		return "a whole number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.String:
		return "a string"
	}
	return t.String()
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return fmt.Sprintf("the string %q", v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// syntaxError places a JSON syntax error in the file.
func syntaxError(b []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf(", line %d: %v", lineOf(b, se.Offset), se)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return fmt.Errorf(", line %d: unexpected end of file", lineOf(b, int64(len(b))))
	}
	return fmt.Errorf(": %v", err)
}

// lineAt is the line number of the first character at or after off that
// is not a space or a comma.
func lineAt(b []byte, off int64) int {
	off = min(max(off, 0), int64(len(b)))
	for off < int64(len(b)) && strings.IndexByte(" \t\r\n,", b[off]) >= 0 {
		off++
	}
	return lineOf(b, off)
}

// lineOf is the line number of the byte at off.
func lineOf(b []byte, off int64) int {
	off = min(max(off, 0), int64(len(b)))
	return 1 + bytes.Count(b[:off], []byte("\n"))
}

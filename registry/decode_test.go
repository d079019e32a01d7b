package registry

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// secretArgs has a field of every kind a handler's arguments commonly
// have.
type secretArgs struct {
	Name   string            `json:"name"`
	Count  int               `json:"count"`
	Small  int8              `json:"small"`
	Ratio  float32           `json:"ratio"`
	Ok     bool              `json:"ok"`
	Tags   []string          `json:"tags"`
	Labels map[string]int    `json:"labels"`
	Nested struct{ ID uint } `json:"nested"`
	At     time.Time         `json:"at"`
	Quoted int               `json:"quoted,string"`
	Raw    json.RawMessage   `json:"raw"`
	Any    any               `json:"any"`
}

// A decoding error names the field and the type wanted, never the value:
// its text is logged, stored with the failed task and reported.
func TestDecode_ErrorsWithholdValues(t *testing.T) {
	const secret = "hunter2"
	const num = "98765432109876543210" // a secret that is a number
	r := New()
	Register(r, "t", func(context.Context, secretArgs) error { return nil })
	Register(r, "n", func(context.Context, int8) error { return nil })
	tests := []struct {
		name, args string
		want       []string // in the message
	}{
		{"string into int", `{"count":"` + secret + `"}`, []string{`"count"`, "string", "int"}},
		{"huge number into int8", `{"small":` + num + `}`, []string{`"small"`, "int8"}},
		{"fraction into int", `{"count":1.` + num + `}`, []string{`"count"`, "int"}},
		{"huge number into float32", `{"ratio":1e` + num[:5] + `}`, []string{`"ratio"`, "float32"}},
		{"object into string", `{"name":{"password":"` + secret + `"}}`, []string{`"name"`, "object", "string"}},
		{"number into string", `{"name":` + num + `}`, []string{`"name"`, "number", "string"}},
		{"string into bool", `{"ok":"` + secret + `"}`, []string{`"ok"`, "bool"}},
		{"number in a list of strings", `{"tags":["a",` + num + `]}`, []string{"tags", "string"}},
		{"string in a map of ints", `{"labels":{"a":"` + secret + `"}}`, []string{"labels", "int"}},
		{"negative into a nested uint", `{"nested":{"ID":-` + num + `}}`, []string{"nested.ID", "uint"}},
		{"not a time", `{"at":"` + secret + `"}`, []string{"time.Time"}},
		{"bad ,string", `{"quoted":"` + secret + `"}`, []string{"registry.secretArgs"}},
		{"invalid JSON", `{"name":"x", ` + secret + `}`, []string{"not valid JSON"}},
		{"invalid JSON in raw", `{"raw":` + secret + `}`, []string{"not valid JSON"}},
		{"truncated", `{"name":"` + secret, []string{"not valid JSON"}},
		{"top-level string into int8", `"` + secret + `"`, []string{"the arguments", "string", "int8"}},
		{"top-level huge number", num, []string{"the arguments", "int8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := "t"
			if strings.HasPrefix(tt.name, "top-level") {
				task = "n"
			}
			err := r.Run(context.Background(), task, []byte(tt.args))
			if !errors.Is(err, ErrBadArgs) {
				t.Fatalf("Run(%s) = %v, want ErrBadArgs", tt.args, err)
			}
			msg := err.Error()
			t.Log(msg)
			for _, s := range []string{secret, num, num[:5]} {
				if strings.Contains(msg, s) {
					t.Errorf("error %q quotes the value %q", msg, s)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if cerr := r.Check(task, []byte(tt.args)); cerr == nil || cerr.Error() != msg {
				t.Errorf("Check = %v, want the same error as Run", cerr)
			}
		})
	}
}

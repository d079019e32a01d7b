package registry

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type sendArgs struct {
	To    string `json:"to"`
	Count int    `json:"count"`
}

func TestRegistry_Run(t *testing.T) {
	r := New()
	var got sendArgs
	Register(r, "email.send", func(_ context.Context, a sendArgs) error {
		got = a
		return nil
	})
	tests := []struct {
		name string
		task string
		args string
		want error
	}{
		{"decodes", "email.send", `{"to":"a@b","count":2}`, nil},
		{"unknown fields are ignored", "email.send", `{"to":"a@b","extra":true}`, nil},
		{"empty args are the zero value", "email.send", ``, nil},
		{"null is the zero value", "email.send", `null`, nil},
		{"unknown task", "email.sned", `{}`, ErrUnknownTask},
		{"not JSON", "email.send", `{to:`, ErrBadArgs},
		{"wrong type", "email.send", `{"count":"two"}`, ErrBadArgs},
		{"trailing garbage", "email.send", `{} {}`, ErrBadArgs},
		{"array for a struct", "email.send", `[1]`, ErrBadArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Run(context.Background(), tt.task, []byte(tt.args))
			if !errors.Is(err, tt.want) {
				t.Errorf("Run = %v, want %v", err, tt.want)
			}
			if cerr := r.Check(tt.task, []byte(tt.args)); !errors.Is(cerr, tt.want) {
				t.Errorf("Check = %v, want %v", cerr, tt.want)
			}
		})
	}
	r.Run(context.Background(), "email.send", []byte(`{"to":"x","count":3}`))
	if got != (sendArgs{"x", 3}) {
		t.Errorf("handler got %+v", got)
	}
}

func TestRegistry_BadArgsMessageHasNoValues(t *testing.T) {
	r := New()
	Register(r, "t", func(context.Context, sendArgs) error { return nil })
	err := r.Run(context.Background(), "t", []byte(`{"to": 12345678, "count": "hunter2"}`))
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "12345678") {
		t.Errorf("error %q must not quote argument values", err)
	}
	if !strings.Contains(err.Error(), `"t"`) {
		t.Errorf("error %q should name the task", err)
	}
}

func TestRegistry_HandlerErrorPassesThrough(t *testing.T) {
	r := New()
	sentinel := errors.New("smtp down")
	Register(r, "t", func(context.Context, struct{}) error { return sentinel })
	if err := r.Run(context.Background(), "t", nil); err != sentinel {
		t.Errorf("Run = %v, want the handler's error as is", err)
	}
}

func TestRegister_Panics(t *testing.T) {
	r := New()
	Register(r, "t", func(context.Context, struct{}) error { return nil })
	for name, f := range map[string]func(){
		"duplicate":   func() { Register(r, "t", func(context.Context, int) error { return nil }) },
		"empty name":  func() { Register(r, "", func(context.Context, int) error { return nil }) },
		"nil handler": func() { Register[int](r, "u", nil) },
		"two sets of defaults": func() {
			Register(r, "v", func(context.Context, int) error { return nil }, Options{}, Options{Priority: 1})
		},
		"invalid defaults": func() {
			Register(r, "w", func(context.Context, int) error { return nil }, Options{Timeout: -time.Second})
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

func TestRegistry_NamesAndTypes(t *testing.T) {
	r := New()
	RegisterBuiltins(r)
	RegisterBuiltins(r) // twice is harmless
	Register(r, "a.task", func(context.Context, sendArgs) error { return nil })
	want := []string{"a.task", EchoTask, FailTask, NoopTask, PanicTask, SleepTask}
	if got := r.Names(); !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	if typ, ok := r.ArgType("a.task"); !ok || typ != reflect.TypeFor[sendArgs]() {
		t.Errorf("ArgType = %v, %v", typ, ok)
	}
	if _, ok := r.ArgType("nope"); ok || r.Has("nope") {
		t.Error("unknown task reported as known")
	}
}

func TestBuiltins(t *testing.T) {
	r := New()
	RegisterBuiltins(r)
	ctx := context.Background()
	if err := r.Run(ctx, NoopTask, nil); err != nil {
		t.Errorf("noop: %v", err)
	}
	if err := r.Run(ctx, EchoTask, []byte(`{"msg":"hi"}`)); err != nil {
		t.Errorf("echo: %v", err)
	}
	if err := r.Run(ctx, FailTask, []byte(`{"msg":"boom"}`)); err == nil || err.Error() != "boom" {
		t.Errorf("fail: %v, want boom", err)
	}
	func() {
		defer func() {
			if v := recover(); v != "oh no" {
				t.Errorf("panic recovered %v, want oh no", v)
			}
		}()
		r.Run(ctx, PanicTask, []byte(`{"msg":"oh no"}`))
	}()
	// sleep returns early, with the cause, when its context ends.
	cause := errors.New("stopping")
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(cause)
	start := time.Now()
	if err := r.Run(cctx, SleepTask, []byte(`{"ms":60000}`)); err != cause {
		t.Errorf("cancelled sleep = %v, want the cause", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("cancelled sleep did not return promptly")
	}
	if err := r.Run(ctx, SleepTask, []byte(`{"ms":1}`)); err != nil {
		t.Errorf("sleep: %v", err)
	}
}

func TestInfo(t *testing.T) {
	ctx := context.Background()
	if _, ok := InfoFrom(ctx); ok {
		t.Error("Info outside a task")
	}
	if Logger(ctx) == nil {
		t.Error("Logger outside a task is nil")
	}
	info := Info{ID: 7, Name: "t"}
	got, ok := InfoFrom(WithInfo(ctx, info))
	if !ok || got.ID != 7 || got.Name != "t" {
		t.Errorf("InfoFrom = %+v, %v", got, ok)
	}
}

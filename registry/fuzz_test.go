package registry

import (
	"context"
	"errors"
	"testing"
)

// FuzzRun feeds arbitrary argument bytes to a handler: decoding either
// succeeds and the handler runs, or fails with ErrBadArgs. Nothing else,
// and never a panic. The seed corpus is in testdata/fuzz/FuzzRun.
func FuzzRun(f *testing.F) {
	for _, seed := range []string{``, `null`, `{}`, `{"to":"a@b","count":1}`, `{"count":"x"}`, `[`, `{"to":null}`, "\xff"} {
		f.Add([]byte(seed))
	}
	r := New()
	Register(r, "t", func(context.Context, sendArgs) error { return nil })
	f.Fuzz(func(t *testing.T, args []byte) {
		err := r.Run(context.Background(), "t", args)
		if err != nil && !errors.Is(err, ErrBadArgs) {
			t.Fatalf("Run(%q) = %v, want nil or ErrBadArgs", args, err)
		}
		if cerr := r.Check("t", args); (cerr == nil) != (err == nil) {
			t.Fatalf("Check(%q) = %v, but Run = %v", args, cerr, err)
		}
	})
}

func BenchmarkRun(b *testing.B) {
	r := New()
	RegisterBuiltins(r)
	Register(r, "t", func(context.Context, sendArgs) error { return nil })
	ctx := context.Background()
	for _, bc := range []struct{ name, task, args string }{
		{"noop", NoopTask, ``},
		{"struct", "t", `{"to":"ada@example.com","count":3}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			args := []byte(bc.args)
			b.ReportAllocs()
			for b.Loop() {
				if err := r.Run(ctx, bc.task, args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

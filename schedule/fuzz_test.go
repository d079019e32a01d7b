package schedule

import (
	"testing"
	"time"
)

// The cron parser panics on some inputs; parseSpec must not, and a spec it
// accepts must yield ticks that move forward.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"*/5 * * * *", "0 6 * * 1-5", "@hourly", "@every 30s", "@every 1h30m", "CRON_TZ=UTC 0 9 * * *",
		"TZ=0", "TZ=TZ=TZ=", "TZ= * * * * *", "CRON_TZ=", "@every ", "@every -1s", "", " ", "0 0 30 2 *",
		"1-5/0 * * * *", "*/0 * * * *", "59-0 * * * *", "? ? ? ? ?",
	} {
		f.Add(s)
	}
	start := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		sched, err := parseSpec(spec)
		if err != nil {
			return
		}
		if next := sched.Next(start); !next.IsZero() && !next.After(start) {
			t.Errorf("parseSpec(%q).Next(%v) = %v, not after", spec, start, next)
		}
	})
}

// Load's parser must not panic on any file.
func FuzzParseFile(f *testing.F) {
	for _, s := range []string{
		`[]`, `[{"name": "a", "spec": "@hourly", "task": "t", "args": {"x": 1}, "timeout": "1s"}]`,
		`[{"name": "a"}`, `{}`, `[1, 2]`, `[] x`, "[\n{\"name\": \"a\", \"spec\": \"TZ=0\", \"task\": \"t\"}]",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := parseFile(b, now)
		if err != nil {
			return
		}
		if _, err := compile(out, nil, now); err != nil {
			t.Errorf("parseFile(%q) accepted schedules that compile refuses: %v", b, err)
		}
	})
}

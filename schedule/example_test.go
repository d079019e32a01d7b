package schedule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/snappea/snappea/foreman"
	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
	"github.com/snappea/snappea/schedule"
)

// A daemon declares its schedules in code and runs the Scheduler as one of
// the foreman's services. Here the clock is fixed, and List shows when each
// schedule fires first: a new schedule waits for its first tick.
func Example() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	reg := registry.New()
	registry.Register(reg, "report.daily", func(ctx context.Context, a struct{ To string }) error { return nil })
	registry.RegisterBuiltins(reg)
	q, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	now := time.Date(2024, 5, 1, 12, 1, 30, 0, time.UTC)
	s, err := schedule.New(schedule.Config{
		Queue:    q,
		Registry: reg, // checks task names and arguments now, not at the first tick
		Schedules: []schedule.Schedule{
			{Name: "daily-report", Spec: "CRON_TZ=UTC 0 6 * * *", Task: "report.daily",
				Args: json.RawMessage(`{"To": "ops@example.com"}`), Options: registry.Options{MaxAttempts: 3}},
			{Name: "cleanup", Spec: "*/5 * * * *", Task: registry.NoopTask},
			{Name: "heartbeat", Spec: "@every 30s", Task: registry.EchoTask, Args: json.RawMessage(`{"msg": "alive"}`)},
		},
		Now: func() time.Time { return now },
	})
	if err != nil {
		log.Fatal(err)
	}
	// In the daemon: the foreman runs s.Run until it stops.
	_ = foreman.Service{Name: "scheduler", Run: s.Run}

	entries, err := s.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Printf("%-12s %-22s %-13s next %s\n", e.Name, e.Spec, e.Task, e.Next.UTC().Format(time.DateTime))
	}
	// Output:
	// daily-report CRON_TZ=UTC 0 6 * * *  report.daily  next 2024-05-02 06:00:00
	// cleanup      */5 * * * *            snappea.noop  next 2024-05-01 12:05:00
	// heartbeat    @every 30s             snappea.echo  next 2024-05-01 12:02:00
}

// The stock daemon reads its schedules from the file given with 'snappea
// run --schedules FILE'.
func ExampleLoad() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "schedules.json")
	os.WriteFile(path, []byte(`[
  {"name": "cleanup", "spec": "*/5 * * * *", "task": "app.cleanup",
   "args": {"older_than": "24h"}, "timeout": "30s", "max_attempts": 3},
  {"name": "heartbeat", "spec": "@every 30s", "task": "snappea.echo",
   "args": {"msg": "alive"}, "catch_up": false}
]`), 0o600)

	schedules, err := schedule.Load(path)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range schedules {
		fmt.Println(s.Name, s.Spec, s.Task, string(s.Args), s.Options.Timeout, s.Options.MaxAttempts)
	}
	// Output:
	// cleanup */5 * * * * app.cleanup {"older_than": "24h"} 30s 3
	// heartbeat @every 30s snappea.echo {"msg": "alive"} 0s 0
}

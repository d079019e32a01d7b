// Package schedule enqueues periodic tasks: each [Schedule] names a task,
// its arguments and when it fires, as a cron spec ("*/5 * * * *"), a
// descriptor ("@hourly") or a fixed interval ("@every 30s"), parsed with
// github.com/robfig/cron/v3.
//
// A [Scheduler] runs beside the foreman, as a foreman.Service:
//
//	s, err := schedule.New(schedule.Config{Queue: q, Registry: reg, Schedules: []schedule.Schedule{
//		{Name: "cleanup", Spec: "*/5 * * * *", Task: "app.cleanup"},
//		{Name: "heartbeat", Spec: "@every 30s", Task: "snappea.echo", Args: json.RawMessage(`{"msg":"alive"}`)},
//	}})
//	...
//	foreman.Config{..., Services: []foreman.Service{{Name: "scheduler", Run: s.Run}}}
//
// The stock daemon reads schedules from the JSON file of 'snappea run
// --schedules FILE' (see [Load]); a program built on package cli can also
// declare them in code with cli.Schedules.
//
// # Exactly one task per tick
//
// Each schedule's next due time is kept in the snappea_schedules table,
// under its name. A scheduler takes a tick in one transaction: it moves
// next_run on with a compare-and-set update (WHERE next_run = the tick it
// saw due) and, only if that changed the row, enqueues the task. So a tick
// is enqueued once, even across restarts and reloads, and when several
// schedulers share a database (daemons in turn, or at once on a backend
// that allows it) the first to take a tick wins and the others learn the
// new due time. A crash either commits both the new due time and the task,
// or neither.
//
// # Starting, changing and missing ticks
//
// A schedule new to the database first fires at its first tick after the
// start, not at once. One whose spec changed starts over from the start.
// Rows of schedules no longer configured are left alone, and a schedule
// that comes back resumes from its stored due time.
//
// Ticks that passed while no scheduler ran (or while the database could
// not be written) fire once, as soon as the scheduler runs, and the next
// due time becomes the first tick after now. With [Schedule.CatchUp], each
// missed tick enqueues a task instead, at most [CatchUpLimit].
//
// # Time
//
// Cron fields are read in the local time zone unless the spec starts with
// CRON_TZ=Zone. Ticks are wall-clock times; Run sleeps on a timer until the
// earliest, at most a minute at a time, so a step of the wall clock is
// noticed within a minute. A handler that wants to know its tick can read
// registry.Info's EnqueuedAt: the arguments are the same for every tick.
package schedule

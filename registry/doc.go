// Package registry maps task names to typed handlers and decodes task
// arguments.
//
// A program defines its tasks once, in a package that both the web server
// (which enqueues) and the daemon (which runs) import:
//
//	var Tasks = registry.New()
//
//	var SendEmail = registry.Register(Tasks, "email.send",
//		func(ctx context.Context, a SendArgs) error { ... })
//
// Arguments travel as JSON: the producer encodes them with encoding/json and
// the daemon decodes them into the handler's argument type before the
// handler runs. Arguments that are not valid JSON or do not fit the type
// fail with [ErrBadArgs]; a name nobody registered fails with
// [ErrUnknownTask]. The daemon counts both as discarded, never as a crash.
//
// # Options
//
// A task is enqueued with [Options]: a priority, a delay or a time to run
// at, a timeout for its handler, a number of attempts, and a key that makes
// it unique among pending tasks. A definition may give defaults, which
// every enqueue of the task starts from and its own options override field
// by field ([Options.Merge]):
//
//	var Report = registry.Register(Tasks, "report.nightly", runReport,
//		registry.Options{Timeout: 10 * time.Minute, MaxAttempts: 3, Key: "report.nightly"})
//
// Priority is strict: while higher-priority tasks are ready, lower ones wait,
// however long. Zero fields mean "not set", so a call cannot set a field
// back to zero over a non-zero default; a negative Priority lowers a task
// below the default 0.
//
// A handler receives a context that carries its task's [Info] (id, name,
// attempt, a logger with the id and name as attributes) and that is
// cancelled when the daemon stops for good or the task's time is up.
package registry

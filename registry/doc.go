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
// A handler receives a context that carries its task's [Info] (id, name,
// a logger with both as attributes) and that is cancelled when the daemon
// stops for good or the task's time is up.
package registry

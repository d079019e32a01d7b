// Package report sends the errors the foreman reports to Sentry, through
// sentry-go. [Sentry] implements foreman.Reporter; the daemon creates one
// when it is given a DSN and calls [Sentry.Flush] when it stops.
//
// # What an event holds
//
// Each Report call sends one event at level error. Its exception's type is
// the Go type of the innermost error of the chain (following Unwrap), its
// value and the event's message are err.Error(). Tags:
//
//   - task and task_id: the task's name and ID, when there is a task;
//   - outcome: "panicked" for a *foreman.PanicError, "discarded" for errors
//     matching registry.ErrUnknownTask or registry.ErrBadArgs, "failed"
//     otherwise;
//   - component "foreman" instead, for an error of the daemon's loop (no
//     task), such as a failed claim.
//
// A "task" context holds the task's id, name and enqueued_at. A panic's
// exception carries the stack of the panicking goroutine, built from
// PanicError.PCs so that it ends in the handler that panicked, with
// mechanism "panic", unhandled. Other errors carry a stack only if one of
// them records where it was created (as github.com/pkg/errors does): the
// stack of the Report call would be the foreman's, the same for every task.
// Events are grouped per task name on top of Sentry's default grouping, so
// that two tasks failing with the same error are two issues.
//
// # What is never sent
//
// Task arguments can hold secrets: they are not sent in any form, nor is
// PanicError.Stack (the PCs give the same frames). No user data is
// attached (SendDefaultPII is off) and breadcrumbs are disabled. Error
// messages are sent as they are, so handlers must not put secrets in them.
//
// # Isolation
//
// Each Sentry has its own sentry-go client and hub; the global hub is
// never used, so two instances in one process, or a program that also uses
// sentry-go itself, do not interfere. sentry-go still reads its own
// environment variables where Config leaves a gap: SENTRY_ENVIRONMENT when
// Environment is empty, SENTRY_RELEASE and the like when no release is
// known (it then also tries the build's VCS revision and `git describe` in
// the working directory), and SENTRY_TAGS_* as extra tags.
package report

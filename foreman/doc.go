// Package foreman runs snappea's daemon loop: it waits for wakeups, claims
// tasks in batches no larger than its free worker slots, and runs each in a
// goroutine of a bounded pool.
//
// The foreman is one loop goroutine; nothing else claims or counts. It
// depends only on small interfaces it declares ([Source], [Waker],
// [Runner], [Reporter]), which package queue, package wakeup, package
// registry and an error reporter satisfy, and a test can fake.
//
// # Delivery
//
// A task's row is deleted, and the deletion committed, before its handler
// starts (see queue.Queue.Claim). The foreman claims only as many tasks as
// it has free slots, so a crash loses at most the tasks that were running,
// never queued ones: delivery is at-most-once.
//
// # Stopping
//
// Cancelling Run's context, or calling Shutdown, stops intake at once: no
// claim starts after it. Running tasks may finish until the graceful
// deadline (Config.GracefulTimeout after a cancelled context; the end of
// Shutdown's context); then their contexts are cancelled, the foreman waits
// Config.HardStopWait more, and Run returns. Tasks still queued stay queued
// for the next start. A final "stopped" log record counts what was done,
// failed, panicked, discarded and interrupted.
package foreman

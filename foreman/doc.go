// Package foreman runs snappea's daemon loop: it waits for wakeups, claims
// tasks in batches no larger than its free worker slots, and runs each in a
// goroutine of a bounded pool.
//
// The foreman is one loop goroutine; nothing else claims or counts. It
// depends only on small interfaces it declares ([Source], [Waker],
// [Runner], [Reporter], [Store], [Observer]), which package queue, package
// wakeup, package registry, an error reporter, stats and metrics satisfy,
// and a test can fake.
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
// failed, panicked, discarded, interrupted and cancelled.
//
// # Operating
//
// While Run runs, [Foreman.Pause] and [Foreman.Resume] stop and restart
// claiming (running tasks go on), [Foreman.SetWorkers] resizes the pool
// (growing at once, shrinking as running tasks finish), [Foreman.Cancel]
// cancels one running task's context, [Foreman.Snapshot] describes the
// state, running tasks and services, and [Foreman.Ping] tells a live loop
// from a stuck one.
//
// # Delays, timeouts and retries
//
// Delayed tasks are not claimable until [Source] promotes them; the
// foreman promotes on every wake and poll and arms one timer for the next
// due time, so it sleeps until then rather than polling. A task with a
// timeout (its own, or its definition's default from [Runner]) gets a
// context deadline; a handler that ignores it keeps its slot, and
// [Config.HardStopWait] later it is marked overdue, counted and logged once.
// A task that returns an error with attempts left is enqueued again through
// [Store] after an exponential backoff with jitter; panics and discarded
// tasks are not retried. What fails for good is recorded through Store and
// reported. A stop, a cancel or a crash loses the attempt that was running:
// retries cover errors, not crashes.
//
// # Tasks in child processes
//
// A task whose definition says Isolated (registry.Options), or every task
// with [Config.IsolateAll], runs through [Config.Processes] instead of on
// a goroutine: in the daemon, a child process of package prefork's pool,
// which can be killed. It takes a worker slot like any task, its context
// carries the same timeout and cancel, and its error goes through the same
// outcomes, retries, record and report; a child that died fails the task
// with the cause. The child's pid is in [ActiveTask] while it runs.
//
// # Services
//
// [Config.Services] are long-running functions supervised beside the
// workers: started with Run, restarted with backoff after an error or a
// panic, and stopped in parallel with the workers.
package foreman

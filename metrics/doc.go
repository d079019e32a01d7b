// Package metrics exposes snappea's daemon to Prometheus, with
// client_golang and a registry of its own (never the global default one),
// so that embedding snappea adds nothing to a program's own /metrics.
//
// # Metrics
//
// Counted as tasks finish, by [Metrics.Finished] (a foreman.Observer):
//
//	snappea_tasks_finished_total{task,outcome}  counter; outcome is done, failed, panicked, discarded, interrupted, ...
//	snappea_task_duration_seconds{task}          histogram, buckets from 1ms to 5min
//
// Every outcome's series exists from a task name's first finish, at 0 if
// need be. At most [MaxTasks] task names get series of their own; the rest
// share the task label [OtherTask].
//
// Read at scrape time from Config.Snapshot:
//
//	snappea_up                       1 if the snapshot was read, 0 if it failed
//	snappea_tasks_pending            tasks in the queue
//	snappea_tasks_ready              of those, the ones due now
//	snappea_oldest_task_age_seconds  how long the oldest one has waited
//	snappea_workers_busy             tasks running
//	snappea_workers_total            the worker pool's size
//	snappea_paused                   1 if paused
//	snappea_reloads_total            configuration reloads (a counter)
//
// A failing snapshot does not fail the scrape: snappea_up is 0 and the
// other seven are left out, so that no stale value is graphed; alert on
// snappea_up == 0. Besides, the Go runtime (go_*) and process (process_*)
// collectors are registered.
//
// # Serving
//
// [Metrics.Listen] opens the address first, so that a busy port stops the daemon
// from starting with an error naming it, and the caller can print the
// address bound for port 0; [Metrics.Serve] then serves /metrics on it
// until its context ends. [Metrics.Handler] is the bare handler, for a
// server of your own.
package metrics

// Package bench measures a snappea binary end to end, the way it runs in
// production: the daemon is the binary's own `run` in a subprocess, the
// producers are further processes of the same binary (its hidden
// `bench internal-producer` role, which calls [Produce]), the tasks are the
// built-in snappea.noop, and everything happens in a temporary data
// directory that is removed afterwards.
//
// [Run] makes the measurements a [Config] selects and returns a [Result]
// holding the medians over Config.Runs repetitions; [Result.WriteTable]
// prints it for people and [Plot] charts it.
//
// # What is measured, and how
//
//   - Enqueue: producers enqueue Config.Tasks no-ops, one per transaction
//     (as web requests do) and in batches, from one producer process and from
//     Config.Producers at once, with no daemon running: the producer's own
//     cost. Each producer times only its enqueue loop, after start-up, and
//     they start together.
//   - Burn-down: a backlog of Config.Tasks no-ops (plus a snappea.echo marker
//     queued last) is enqueued in batches, then the daemon is started. The
//     time runs from its "foreman started" log record to the marker's
//     record: FIFO puts the marker last. Repeated for each worker count of
//     Config.WorkerSweep.
//   - Latency: the daemon runs with debug JSON logs, whose "task started"
//     record is timed right before the handler starts. A producer records
//     the wall time just before each Enqueue; the two are joined by task
//     id. Both processes read the same CLOCK_REALTIME, so the figure spans
//     the producer's insert and commit, the wakeup and the claim. Idle: one
//     task every 5ms. Loaded: paced at Config.Rate for Config.Duration. The
//     sweep doubles the rate from Rate/4 until p99 exceeds Config.SweepP99
//     or the producer achieves less than 90% of the rate.
//   - Resources: the peak RSS (wait4's ru_maxrss) and CPU time
//     (utime+stime) of the burn-down daemon, and the CPU time of an idle
//     daemon over Config.IdlePeriod, from the kernel's per-thread run time.
//
// Subprocesses get their own process group (a Ctrl-C reaches only the
// caller, which stops them in order) and are killed by the kernel if the
// benchmarking process dies. Cancelling Run's context stops the daemon
// with TERM, then KILL after a timeout, and removes the data directory.
package bench

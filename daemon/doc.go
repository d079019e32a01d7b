// Package daemon assembles snappea's daemon from a queue and a registry:
// everything 'snappea run' runs, without the command line, for a program
// that embeds the daemon in a process of its own.
//
//	d, err := daemon.New(daemon.Config{Queue: q, Registry: tasks.Registry})
//	if err != nil { ... }
//	err = d.Run(ctx) // until ctx ends or d.Shutdown
//
// [New] wires together:
//
//   - the single-instance lock on DIR/snappea.lock (package pidfile), so a
//     second daemon on the data directory, embedded or 'snappea run', is
//     refused with an error matching pidfile.ErrLocked ([Config.Lock] for
//     one the caller holds, [Config.NoLock] to do without);
//   - the wakeup watch on the queue's wakeup directory (package wakeup), on
//     SQLite; on another backend (PostgreSQL) the backend's Waker instead
//     (LISTEN), which also brings the cancel requests of other processes
//     ('snappea cancel' on any host) to the running task;
//   - the ledger of tasks in flight: every claim records its tasks in
//     flight for this daemon in the claim's own statement, within the
//     limits (the definitions' MaxRunning and [Config.MaxRunning], serial
//     keys); at start the tasks a dead daemon left in flight are recorded
//     lost (failed records, "lost: the daemon died while it ran", reported
//     once each), or enqueued again for tasks with RetryLost
//     ([Config.RetryLost]), and at the stop so are the tasks still running
//     at the graceful deadline;
//   - the foreman (package foreman) claiming from the queue, with the queue
//     as its Store: a task that fails with attempts left is retried after a
//     backoff, one that fails for good is kept in the failed record
//     ('snappea failed');
//   - the checkpoints of the database's write-ahead log, so that producers'
//     commits never do them, and its truncation when Run starts, which
//     gives back the space of a log left large (by producers while no
//     daemon ran, or by a full disk); on another backend its Maintenance
//     instead (PostgreSQL: VACUUM of the task table, gone daemons removed);
//   - on a shared database (PostgreSQL), the daemon's row in the table of
//     daemons: added when Run starts, a heartbeat every [HeartbeatInterval]
//     (workers, busy, paused, generation), removed at a clean stop, so that
//     'snappea status' lists the cluster;
//   - the per-minute statistics (package stats), written once a minute and
//     once more when the daemon stops;
//   - the failed record's retention (age and count);
//   - the schedules (package schedule), the metrics (package metrics), the
//     caller's own services and observers;
//   - the watch on the data directory's files: the daemon stops when its
//     database (on SQLite) or lock file leaves its path, and [Daemon.Run] returns an
//     error matching [ErrDataDirGone].
//
// Every Config field's zero value means the default of the matching flag of
// 'snappea run'. Package cli builds 'snappea run' on this package and adds
// only what belongs to a command line: flags and environment, signals, the
// control socket, systemd's notify protocol and reloading in place.
//
// # Stopping
//
// Like http.Server: [Daemon.Run] blocks. Cancelling its context, or calling
// [Daemon.Shutdown], stops intake at once: no claim starts after it.
// Running tasks may finish until the graceful deadline (Config.
// GracefulTimeout after a cancelled context; the end of Shutdown's
// context); then their contexts are cancelled. A Shutdown with a context
// already cancelled is a hard stop. Then the last statistics are written,
// within what is left of the deadline (at least half a second, so that a
// database another process keeps locked cannot hold up the stop), a
// reporter with a Flush method is flushed, and Run releases the wakeup
// watch and the lock it took and returns. Stopping twice is harmless, and
// never extends the first deadline. Queued tasks stay queued for the next
// start.
//
// With [Config.Processes], isolated tasks run in a pool of child
// processes (package prefork), started with Run. The pool stops after the
// foreman, under the same deadline: the children's tasks drain in
// parallel with the others; at the deadline every child still running one
// gets SIGTERM at once, SIGKILL soon after, and all are reaped before Run
// returns, so a reload re-executes with no child left.
//
// Delivery is at-most-once: a task's row is deleted before its handler
// starts (see package foreman); tasks defined with RetryLost are
// at-least-once instead.
package daemon

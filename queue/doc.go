// Package queue is snappea's client: it opens the database that holds the
// queue, enqueues tasks from any process, and claims them for the daemon.
// It issues no SQL itself: every statement lives in a storage backend
// (storage.Backend), the SQLite one of package storage/sqlite, which Open
// opens from Config.Dir, or the one given as Config.Backend (PostgreSQL,
// storage/postgres). What follows describes SQLite.
//
// # Enqueueing and the wakeup
//
// A task is one row. [Queue.Enqueue] inserts it (one statement, committed on
// return) and then drops the wake file that wakes an idle daemon at once. A
// producer that enqueues inside its own transaction uses [Queue.EnqueueTx]
// and owes the wakeup after its commit: call [Queue.Notify] once the
// transaction has committed, or let [Queue.InTx] run the transaction and do
// both. A wakeup sent before the commit could let the daemon look before the
// row is visible; one never sent leaves the task to the daemon's fallback
// poll (a few seconds), so neither loses the task, but only the order above
// is prompt.
//
// # Options: priority, delay, key
//
// [Queue.EnqueueWith] and its twins take [registry.Options], merged over the
// task definition's defaults when [Config.Registry] is set (the plain
// Enqueue methods apply those defaults too).
//
// Priority is strict: the daemon claims the highest priority first and, within
// a priority, the oldest first (by id), so a steady flood of high-priority
// tasks starves lower ones.
//
// A delayed task (Delay, or RunAt in the future) is written with its due
// time in run_at; a ready task has run_at 0. [Queue.Claim] takes only ready
// tasks, and [Queue.Promote], which the daemon calls before claiming, makes
// the due ones ready and says when the next one is due. Once promoted, a
// task takes its place among the ready ones by priority and id, not by due
// time. Producers wake the daemon for delayed tasks too, so that it learns
// of an earlier due time than the one it sleeps until.
//
// A Key is unique among pending tasks (ready or delayed): the insert and the
// check are one statement under the database's write lock, so producers in
// different processes never write two pending tasks with one key. A
// duplicate writes nothing and reports the pending task's id with
// Duplicate set; it is not an error. The key is free again once its task is
// claimed (or cancelled), so a running task may enqueue its successor.
//
// With OnDuplicate Replace a duplicate overwrites the pending task instead,
// in the same write under the same lock (on PostgreSQL, INSERT ... ON
// CONFLICT DO UPDATE): the task keeps its id and takes the newest
// enqueue's arguments and options, and with Debounce its due time becomes
// now+Debounce. The Result has Replaced set. A running task holds no key,
// so an enqueue meanwhile is a new pending task.
//
// # Claiming and at-most-once
//
// [Queue.Claim] deletes up to n ready rows and returns them, in one statement
// inside one IMMEDIATE transaction, and the daemon starts a handler only
// after that transaction has committed. A task therefore runs at most once:
// a crash can lose tasks whose rows were claimed (they had started, or were
// about to), never a task still queued. A retry is not the same row run
// again: [Queue.Retry] enqueues a new task with Attempt one higher. A task
// that fails for good is recorded with [Queue.Fail], for an operator to list
// ([Queue.Failures]), retry ([Queue.RetryFailure]) or purge.
//
// # Rows written by other programs
//
// The task table is a format other programs write too (see the README's
// "Enqueue from another language"). It is STRICT, with CHECK constraints,
// so SQLite refuses a row of the wrong types when it is written. A row that
// gets past it anyway (a table recreated by hand) never stops the daemon
// and never costs the tasks claimed with it: [Queue.Claim] hands it out
// with [Task.Err] set (matching [ErrBadRow]), for the daemon to fail
// without running it, as it does a task whose arguments exceed
// [Config.MaxArgsSize]; [Queue.Promote] fails the delayed rows whose run_at
// is not an integer; [Queue.Stats] counts what it can. Errors name the
// column and the type wanted, never the value.
//
// # Backpressure
//
// With [Config.MaxBacklog] set, an enqueue that would take the tasks waiting
// for the daemon past it fails at once with [ErrBacklogFull], so that a
// stopped or overwhelmed daemon makes producers shed load instead of growing
// the database without bound. The limit is soft, to keep it cheap: see
// [Config.MaxBacklog].
//
// # Waits
//
// No write waits without a limit. Writes take turns (see storage/sqlite): within
// the process, then with other processes through a flock beside the
// database, which a stalled holder cannot keep for more than a few
// milliseconds. Every write honours its context, and [Config.BusyTimeout]
// bounds its whole wait, turn and SQLite's lock together ([ErrBusy]). A
// write of the Queue's own called inside [Queue.InTx]'s function, which holds
// the turn, fails at once with [ErrInsideInTx]. [Queue.WriteTx] gives
// writes that enqueue nothing (the daemon's statistics) the same turn.
//
// # The database
//
// One SQLite file in WAL mode with synchronous=NORMAL (no fsync per
// commit), a busy timeout, and IMMEDIATE write transactions, created private
// to the user (0600, in a 0700 directory). The schema comes from package
// migrations and is brought up to date by Open. The claim, the promote and
// the next-due look-up are each one range of one index, on (run_at,
// priority DESC, id).
package queue

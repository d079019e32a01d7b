// Package queue is snappea's client: it opens the SQLite database that
// holds the queue, enqueues tasks from any process, and claims them for the
// daemon. Every SQL statement snappea runs against the queue is here.
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
// # Claiming and at-most-once
//
// [Queue.Claim] deletes up to n of the oldest rows and returns them, in one
// statement inside one IMMEDIATE transaction, and the daemon starts a
// handler only after that transaction has committed. A task therefore runs
// at most once: a crash can lose tasks whose rows were claimed (they had
// started, or were about to), never a task still queued.
//
// # The database
//
// One SQLite file in WAL mode with synchronous=NORMAL (no fsync per
// commit), a busy timeout, and IMMEDIATE write transactions, created private
// to the user (0600, in a 0700 directory). The schema comes from package
// migrations and is brought up to date by Open.
package queue

// Package postgres is snappea's storage backend on PostgreSQL, for the
// same snappea on many machines: several daemons, on one host or many,
// share one database, and producers enqueue from anywhere, in their own
// transactions.
//
// It goes through pgx (github.com/jackc/pgx/v5) and its database/sql
// adapter, so the transaction type is *sql.Tx: Insert with a transaction
// of the application's own *sql.DB on the same database enqueues in it,
// and the task exists only if it commits.
//
// The tables live in a schema of their own (Config.Schema, default
// "snappea"), created by the package's embedded, versioned migrations
// (migrations/NNNN_name.sql). Open applies the ones missing in one
// transaction under an advisory lock, so daemons starting at once take
// turns, and refuses a schema migrated by a newer snappea.
//
// The guarantees, and where they are enforced:
//
//   - At-most-once: Claim deletes the rows it returns in one statement
//     (DELETE ... WHERE ctid = ANY(ARRAY(SELECT ctid ... FOR UPDATE SKIP
//     LOCKED LIMIT n)) RETURNING ...), so a task is handed to exactly
//     one daemon, however many claim at once, and never more than n.
//   - Wakeups: every insert sends NOTIFY on the channel <schema>_tasks in
//     its own transaction, so it is delivered when the transaction commits
//     (identical notifications of one transaction are folded) and never
//     for a rollback; Wake is a no-op. The daemon's Waker listens on a
//     connection of its own and, when that connection or the server goes
//     away, reconnects with a backoff from 100ms up to 5s and then wakes
//     the daemon, since notifications sent meanwhile are lost.
//   - Cancel of a running task: RequestCancel sends the task id on
//     <schema>_cancel; every daemon's Waker delivers it on Cancels, and
//     the daemon running the task cancels it.
//   - Churn: the task table sees one insert and one delete per task. Its
//     autovacuum settings (see the migration) keep dead rows from piling
//     up, and claim, promote and the next-due look-up each read one range
//     of the claim index (run_at, priority DESC, id); a test checks
//     their plans.
//
// Large inserts: an Insert call of many rows is written in chunks of
// 5,000, all or none. A chunk without keys, of 1,000 rows or more, in a
// transaction of this backend's pool (DB, or none: Insert then opens
// one), is written with COPY on the transaction's own connection; in a
// transaction of another *sql.DB, with INSERT ... SELECT FROM unnest.
//
// A URL's password is never printed: errors, logs and String show it as
// xxxxx (see Redact).
//
// The tests need a server: set SNAPPEA_TEST_DATABASE_URL (for example
// postgres://user@127.0.0.1:5432/postgres?sslmode=disable), or run
// .ci/run, which starts a throwaway one. Without it they skip. Each test
// uses a schema of its own, dropped at its end.
package postgres

// Package storage is the seam between snappea and its database: the
// Backend interface that the client (package queue), the scheduler, the
// statistics and the daemon call, with one implementation per database
// (SQLite; PostgreSQL in storage/postgres), each owning its statements,
// migrations, locking and wakeups.
//
// The transaction type is *sql.Tx on every backend, so a user's own
// transaction on their own database joins an enqueue. The behaviour every
// backend must have is written once, as the conformance suite in
// storage/storagetest.
package storage

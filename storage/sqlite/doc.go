// Package sqlite is snappea's SQLite backend of storage.Backend: a
// database file in WAL mode (modernc.org/sqlite, no cgo), its migrations
// (package migrations), the writers' turn that producers and the daemon
// take on a lock file beside it (see writeLock), the checkpoints that keep
// its write-ahead log bounded, the check that the file is still the one
// opened, and the wake files of package wakeup that tell the daemon tasks
// were queued.
//
// Every SQL statement snappea runs on SQLite lives here. Package queue is
// its client; most programs use queue.Open, which opens this backend.
package sqlite

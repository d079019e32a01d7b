// Package pidfile keeps a single snappea daemon running per lock file.
//
// [Acquire] takes an exclusive flock(2) on a lock file and writes the
// daemon's pid into it and, optionally, into a separate pidfile for tools
// that expect one. The kernel releases a flock when its holder dies, so a
// stale lock file or pidfile left by kill -9 never blocks the next start: no
// pid is ever guessed to be alive or dead. A second daemon gets an error
// matching [ErrLocked] that names the holder's pid; [Running] answers the same
// question for status commands with a brief shared probe of the lock.
//
// The lock file is never removed, not even by [Lock.Release]: removing it
// would let one process lock the old file while another creates and locks a
// new one at the same path.
//
// [Lock.File] and [Inherit] hand the lock across exec, for a daemon that
// re-executes itself.
package pidfile

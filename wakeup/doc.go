// Package wakeup tells the daemon, across processes, that tasks may be
// queued, so it claims them at once instead of polling.
//
// A producer inserts a task row and, after its transaction commits, calls
// [Notify], which creates the file [FileName] in the wakeup directory. The
// daemon's [Watcher] watches that directory with inotify (through fsnotify;
// this package is the only importer of it). On every creation it removes the
// file first and then delivers a value on [Watcher.Wakes]; the daemon claims
// tasks after each value it receives.
//
// That order is what makes the protocol lose no wake: every interval during
// which the file exists begins with a create event and ends with the
// watcher's removal, and every removal is followed by a value on Wakes. A
// producer whose Notify created the file, or found it already there,
// committed before that removal, so the claim that follows the value sees its
// task. A burst of producers therefore creates one file, every producer
// after the first pays one failed open, and the daemon wakes once.
//
// The watcher heals itself: if the directory is deleted, renamed away or
// replaced, it notices (from the event on the directory, or from a check
// every [Config.CheckInterval]), recreates and watches the directory again,
// and wakes, since wakes may have been missed meanwhile.
package wakeup

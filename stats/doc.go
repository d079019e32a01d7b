// Package stats keeps per-minute task statistics in the snappea database,
// so that `snappea stats` can tell what the daemon did over the last hours
// or days without any other monitoring.
//
// A [Recorder] is a foreman.Observer: for every finished task it adds to
// an in-memory count for the current minute and the task's name (how many
// finished, how many of them failed, their total and longest run time).
// [Recorder.Run] writes each minute to the snappea_stats table shortly
// after it ends, together with a sample of the backlog (pending tasks) in
// snappea_stats_backlog, and deletes rows older than the retention (7 days
// by default).
//
// # What counts
//
// Every finished task counts, whatever its outcome, in the count and the
// run times; so does every attempt of a task that is retried. Failed,
// panicked and discarded tasks are failures (see [IsFailure]); interrupted
// and cancelled ones are not: a stop or an operator cut them off, through
// no fault of theirs.
//
// # Nothing lost on a stop or a failed write
//
// When Run's context ends, it flushes everything, the current, unfinished
// minute included. Writes add to existing rows (an UPSERT), so a minute
// written at a stop and again after a restart within the same minute adds
// up. A write that fails (a locked or read-only database) is logged and
// its counts kept in memory for the next write, a minute later.
//
// # Reading
//
// [Read] returns the rows since a time, with each minute's backlog sample;
// [Summarize] adds them up per task name.
package stats

// Package prefork runs tasks in child processes: a pre-forking pool in
// the manner of Celery's prefork pool or Apache's prefork, for the tasks
// a goroutine cannot contain. A goroutine cannot be killed; a child
// process can. A handler that ignores its context, calls os.Exit, crashes
// in cgo, or leaks memory costs only its own child.
//
// # Parent and child
//
// A child is the same binary started again ([Config.Command], normally
// with a hidden subcommand), so it has the same registry. Its side is
// [ServeChild] (or [Serve]): it reads jobs from its socket and runs them
// with a [Runner], such as *registry.Registry. The parent talks to the
// queue; a child never does. It starts with only stdin, stdout, stderr
// and its end of a unix socket pair (descriptor 3): everything Go opens
// is close-on-exec, and the child closes any descriptor its parent had
// inherited without that flag, so no database descriptor reaches it.
//
// Parent and child speak length-prefixed JSON frames over the socket:
// the child says it is ready; the parent sends a job (task id, name,
// attempt, max attempts, timeout, arguments); the child answers with the
// outcome (success, the error's text with the sentinel it matched, or a
// recovered panic with its stack). The parent may send cancel for the
// running job. Closing the parent's end asks the child to exit.
//
// # One task per child
//
// Each child runs one job at a time. Killing a child then costs only the
// job it was running, and its RSS, its crash and its stderr belong to
// that job. [Pool.Do] takes an idle child (the most recently used, so
// that the others can go idle and retire), or waits for one.
//
// # Timeouts and cancel
//
// A job's timeout is applied in the child, to the handler's context, as
// with a goroutine; cancelling Do's context sends cancel, which cancels
// the handler's context. These are the soft stops. The hard stop is the
// parent's: a job still running [Config.Grace] after its timeout, or
// after its cancel, gets its child SIGTERM and, [Config.KillWait] later,
// SIGKILL. Do then returns [TimedOut] (or [Killed]) with an [*ExitError]
// wrapping [ErrTimedOut] (or [ErrIgnoredCancel]); the child is replaced.
//
// # Death
//
// A child that exits or is killed by anyone else while it runs a job
// fails that job with outcome [Died] and an [*ExitError] naming the cause
// ("worker process died: killed by SIGKILL", "worker process died: exit
// status 3"), the tail of the child's stderr and the Go runtime's crash
// report from it (a panic on another goroutine, a fatal signal). The
// pool replaces the child; after the second death in a row with no job
// completed in between it backs off, from 100ms doubling to 10s. The pool
// never fails because a child did. Children are started from one locked
// OS thread with PR_SET_PDEATHSIG set to SIGKILL, so they die with the
// parent, even after kill -9.
//
// # Sizing and recycling
//
// [Pool.Run] keeps [Config.Min] children started and ready, starts more
// while Do calls wait for a child (up to [Config.Max], at most
// [Config.StartRate] a second above Min), and retires children above Min
// that have been idle for [Config.Idle] since they last became idle, so
// that one just started or just used is never the one to go. A child is
// also retired after its job once it has run [Config.MaxTasksPerProc]
// jobs or its resident set (from /proc/PID/statm) is above
// [Config.MaxRSS].
//
// # Stopping
//
// [Pool.Shutdown] stops intake (Do returns [ErrClosed]), retires idle
// children and lets busy ones finish, all in parallel, until its context
// ends; then it sends SIGTERM to all remaining children at once (a child
// cancels its job's context on SIGTERM and exits once the job returns),
// SIGKILL KillWait later, and reaps every one. Cancelling Run's context
// does the same with no grace.
//
// [Pool.Recycle] replaces every child (busy ones after their job), for a
// reload; [Pool.SetLimits] changes Min and Max while the pool runs.
// [Pool.Snapshot] lists each child (pid, state, running task, RSS, jobs
// done) and counts starts, deaths, kills and restarts, for status and
// metrics.
package prefork

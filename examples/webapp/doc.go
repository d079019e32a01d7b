// Package webapp is an example application built on snappea, laid out to
// be copied: a web server that enqueues, a daemon that runs the tasks, and
// the task definitions both share.
//
//   - tasks: the Registry and the typed tasks (SendWelcome, Thumbnail).
//   - cmd/webapp-web: a net/http server that opens the queue once and
//     enqueues from its handlers, one task in the same transaction as its
//     own insert.
//   - cmd/webapp-snappea: the daemon, cli.Main with the webapp's tasks.
//
// The tests show both ways of testing: the tasks package runs handlers in
// Inline mode, without a daemon; this package's test builds both binaries
// and runs them as real processes over HTTP. README.md shows how to run
// them by hand.
package webapp

// Package sentrytest is a stand-in Sentry server for tests: a loopback HTTP
// server that accepts the envelopes a Sentry SDK posts and hands each error
// event it contains to the test as an [Event].
//
// It understands only what tests of snappea's error reporting need: event
// items, plain or gzip-compressed bodies, and the fields of [Event]. Other
// items (client reports, sessions) are accepted and ignored.
//
// Point the code under test at [Receiver.DSN], make it report, and read
// [Receiver.Events] or call [Receiver.Next], which fails with a clear
// message after a deadline instead of hanging the test.
package sentrytest

// Package snappea holds the domain of the snappea task runner: the types
// that every other package speaks in, and the errors callers branch on.
//
// It imports only the standard library, so that what runs tasks, reports
// them or counts them (the foreman, the statistics, the metrics, Sentry
// reporting) links no database driver: the storage backends
// (SQLite, PostgreSQL) turn their rows into these types.
//
// The packages that do the work:
//
//   - registry: task names, their handlers and argument types, task options;
//   - queue: the client that enqueues tasks, from any process;
//   - foreman: the daemon's loop and worker pool;
//   - cli: the snappea command and the daemon's assembly.
package snappea

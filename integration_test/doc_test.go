// Package integration_test runs the real snappea binary as a subprocess:
// producers in other processes, real signals, kill -9, real files.
//
// TestMain builds cmd/snappea once (with -race when the tests run with
// -race) and every test starts it in its own t.TempDir() data directory.
package integration_test

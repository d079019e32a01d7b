package control

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them. A
// connection that net/http closes as the server shuts down lingers up to
// half a second in closeWriteAndWait after Shutdown has returned, longer
// than goleak retries: it ends on its own and is not counted.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}

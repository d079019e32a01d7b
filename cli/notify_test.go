package cli

import (
	"slices"
	"testing"
)

func TestChildEnv(t *testing.T) {
	env := []string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_USEC=30000000",
		"WATCHDOG_PID=7", "NOTIFY_SOCKET_X=kept", "SNAPPEA_DIR=/var/lib/snappea"}
	got := childEnv(env)
	want := []string{"PATH=/bin", "NOTIFY_SOCKET_X=kept", "SNAPPEA_DIR=/var/lib/snappea"}
	if !slices.Equal(got, want) {
		t.Errorf("childEnv(%q) = %q, want %q", env, got, want)
	}
}

func TestNotifier_withoutSocketDoesNothing(t *testing.T) {
	n := newNotifier(func(string) string { return "" }, nil)
	if n.enabled || n.watchdog != 0 {
		t.Fatalf("notifier without NOTIFY_SOCKET: enabled %v, watchdog %v; want off", n.enabled, n.watchdog)
	}
	// No socket, no logger: none of these may touch either.
	n.send("READY=1")
	n.reloading()
	n.stopping()
	n.run(t.Context(), nil)
}

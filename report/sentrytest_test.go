package report_test

import (
	"testing"
	"time"

	"github.com/snappea/snappea/report/sentrytest"
)

// eventTimeout bounds every wait for an event: on loopback one arrives in
// milliseconds, so reaching it means the event was never sent.
const eventTimeout = 10 * time.Second

// newReceiver starts a stand-in Sentry server for the test and stops it
// when the test ends. It returns the DSN to report to, the events as they
// arrive and a function returning the request bodies received so far.
func newReceiver(t *testing.T) (dsn string, events <-chan sentrytest.Event, raw func() [][]byte) {
	t.Helper()
	r := sentrytest.NewReceiver()
	t.Cleanup(r.Close)
	return r.DSN(), r.Events(), r.Bodies
}

// waitEvent returns the next event, failing the test if none arrives
// within eventTimeout.
func waitEvent(t *testing.T, events <-chan sentrytest.Event) sentrytest.Event {
	t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the Sentry receiver closed before an event arrived")
		}
		return ev
	case <-timer.C:
		t.Fatalf("no event reached the Sentry receiver within %v", eventTimeout)
		return sentrytest.Event{}
	}
}

// waitEvents returns the next n events, failing the test if they do not
// all arrive within eventTimeout.
func waitEvents(t *testing.T, events <-chan sentrytest.Event, n int) []sentrytest.Event {
	t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	var got []sentrytest.Event
	for len(got) < n {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the Sentry receiver closed after %d of %d events", len(got), n)
			}
			got = append(got, ev)
		case <-timer.C:
			t.Fatalf("%d of %d events reached the Sentry receiver within %v", len(got), n, eventTimeout)
		}
	}
	return got
}

// queued returns the events already received without waiting.
func queued(events <-chan sentrytest.Event) []sentrytest.Event {
	var got []sentrytest.Event
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return got
			}
			got = append(got, ev)
		default:
			return got
		}
	}
}

package sentrytest_test

import (
	"fmt"
	"log"
	"time"

	"github.com/getsentry/sentry-go"

	"github.com/snappea/snappea/report/sentrytest"
)

func ExampleReceiver() {
	r := sentrytest.NewReceiver()
	defer r.Close()

	// Any Sentry SDK pointed at the receiver's DSN reports to it.
	client, err := sentry.NewClient(sentry.ClientOptions{Dsn: r.DSN(), Release: "v1.0.0"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	hub := sentry.NewHub(client, sentry.NewScope())
	hub.Scope().SetTag("task", "send_welcome")
	hub.CaptureMessage("mail server unreachable")

	ev, err := r.Next(10 * time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Level, ev.Message, ev.Tags["task"])
	// Output: info mail server unreachable send_welcome
}

package report_test

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/report"
	"github.com/snappea/snappea/report/sentrytest"
)

func ExampleSentry() {
	// A local stand-in for Sentry. The daemon takes the DSN from
	// --sentry-dsn or SENTRY_DSN instead.
	sentryServer := sentrytest.NewReceiver()
	defer sentryServer.Close()

	reporter, err := report.NewSentry(report.Config{
		DSN:         sentryServer.DSN(),
		Environment: "production",
		Release:     "v1.4.0",
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer reporter.Close()

	// The foreman reports each task that fails, panics or is discarded
	// (foreman.Config.Reporter); its arguments are never sent.
	task := &queue.Task{ID: 7, Name: "send_welcome", Args: []byte(`{"to":"ann@example.com"}`), EnqueuedAt: time.Now()}
	reporter.Report(errors.New("smtp: 451 try again later"), task)

	// When the daemon stops, queued events get a few seconds to leave.
	if !reporter.Flush(5 * time.Second) {
		fmt.Println("some error reports were not sent")
	}

	ev, err := sentryServer.Next(10 * time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ev.Exception[0].Type, ev.Exception[0].Value)
	fmt.Println(ev.Tags["task"], ev.Tags["task_id"], ev.Tags["outcome"])
	// Output:
	// *errors.errorString smtp: 451 try again later
	// send_welcome 7 failed
}

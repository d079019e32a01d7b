package registry_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
)

// SendArgs are the arguments of the email.send task. They travel as JSON.
type SendArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// Tasks is shared by the web server, which enqueues, and the daemon, which runs.
var Tasks = registry.New()

// SendEmail is a typed handle: its Enqueue accepts only SendArgs.
var SendEmail = registry.Register(Tasks, "email.send", func(ctx context.Context, a SendArgs) error {
	fmt.Printf("sending %q to %s\n", a.Subject, a.To)
	return nil
})

func ExampleRegister() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)

	// Inline mode runs the task in the caller, through the same JSON
	// encoding and decoding as the daemon: what tests use.
	q, err := queue.Open(context.Background(), queue.Config{Dir: dir, Registry: Tasks, Inline: true})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	if _, err := SendEmail.Enqueue(context.Background(), q, SendArgs{To: "ada@example.com", Subject: "Welcome"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(Tasks.Names())
	// Output:
	// sending "Welcome" to ada@example.com
	// [email.send]
}

// A definition's defaults apply to every enqueue of the task; an
// enqueue's own options win field by field.
func ExampleTask_EnqueueWith() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	tasks := registry.New()
	report := registry.Register(tasks, "report.nightly", func(context.Context, struct{}) error { return nil },
		registry.Options{Timeout: 10 * time.Minute, MaxAttempts: 3, Key: "report.nightly"})

	q, err := queue.Open(ctx, queue.Config{Dir: dir, Registry: tasks})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	first, _ := report.EnqueueWith(ctx, q, struct{}{}, registry.Options{Priority: 2})
	again, _ := report.EnqueueWith(ctx, q, struct{}{}, registry.Options{})
	fmt.Println("second is a duplicate:", again.Duplicate, again.ID == first.ID)

	claimed, _ := q.Claim(ctx, 1)
	t := claimed[0]
	fmt.Println(t.Name, t.Priority, t.Timeout, t.MaxAttempts, t.Key)
	// Output:
	// second is a duplicate: true true
	// report.nightly 2 10m0s 3 report.nightly
}

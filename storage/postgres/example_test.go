package postgres_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/snappea/snappea/storage"
	"github.com/snappea/snappea/storage/postgres"
)

// Open a backend, enqueue a task and claim it, as a producer and a
// daemon would. It needs a server, so it has no checked output.
func Example() {
	ctx := context.Background()
	b, err := postgres.Open(ctx, postgres.Config{URL: os.Getenv("SNAPPEA_DATABASE_URL")})
	if err != nil {
		log.Fatal(err) // names the server, never the password
	}
	defer b.Close()

	res, err := b.Insert(ctx, nil, []storage.Row{{Task: "send_email", Args: []byte(`{"to":"a@example.com"}`),
		CreatedAt: time.Now()}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued", res[0].ID)

	tasks, err := b.Claim(ctx, 16)
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range tasks {
		fmt.Println("run", t.ID, t.Name)
	}
}

// A redacted URL, for logs and status.
func ExampleRedact() {
	fmt.Println(postgres.Redact("postgres://app:hunter2@db.internal:5432/shop"))
	// Output: postgres://app:xxxxx@db.internal:5432/shop
}

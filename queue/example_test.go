package queue_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"

	"github.com/snappea/snappea/queue"
)

func ExampleQueue_Enqueue() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	q, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	// One task: committed and the daemon woken when Enqueue returns.
	if _, err := q.Enqueue(ctx, "email.send", map[string]string{"to": "ada@example.com"}); err != nil {
		log.Fatal(err)
	}
	s, _ := q.Stats(ctx)
	fmt.Println("pending:", s.Pending)
	// Output: pending: 1
}

// A task enqueued together with the caller's own writes: both commit or
// neither does, and InTx wakes the daemon after the commit.
func ExampleQueue_InTx() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	q, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	if _, err := q.DB().ExecContext(ctx, `CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)`); err != nil {
		log.Fatal(err)
	}

	err = q.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO users (email) VALUES (?)`, "ada@example.com")
		if err != nil {
			return err
		}
		id, _ := res.LastInsertId()
		_, err = q.EnqueueTx(ctx, tx, "email.welcome", map[string]int64{"user_id": id})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	tasks, _ := q.Claim(ctx, 10)
	fmt.Println(tasks[0].Name, string(tasks[0].Args))
	// Output: email.welcome {"user_id":1}
}

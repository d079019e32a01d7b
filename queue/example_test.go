package queue_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/snappea/snappea/queue"
	"github.com/snappea/snappea/registry"
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

// Options: a key makes a task unique among pending ones, and a delayed task
// waits until Promote, which the daemon calls, finds it due.
func ExampleQueue_EnqueueWith() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	q, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	first, _ := q.EnqueueWith(ctx, "cache.rebuild", nil, registry.Options{Key: "cache"})
	again, _ := q.EnqueueWith(ctx, "cache.rebuild", nil, registry.Options{Key: "cache"})
	fmt.Println("duplicate:", again.Duplicate, again.ID == first.ID)

	if _, err := q.EnqueueWith(ctx, "email.reminder", nil, registry.Options{Delay: time.Hour, Priority: 5}); err != nil {
		log.Fatal(err)
	}
	tasks, _ := q.Claim(ctx, 10)
	fmt.Println("claimed now:", len(tasks), tasks[0].Name)

	// An hour later, as the daemon sees it.
	if _, err := q.Promote(ctx, time.Now().Add(time.Hour)); err != nil {
		log.Fatal(err)
	}
	tasks, _ = q.Claim(ctx, 10)
	fmt.Println("claimed later:", len(tasks), tasks[0].Name, tasks[0].Priority)
	// Output:
	// duplicate: true true
	// claimed now: 1 cache.rebuild
	// claimed later: 1 email.reminder 5
}

// Keep the newest: each enqueue of a key replaces the pending task's
// arguments, and a debounce makes it run once the enqueues pause.
func ExampleQueue_EnqueueWith_replace() {
	dir, _ := os.MkdirTemp("", "snappea-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	q, err := queue.Open(ctx, queue.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	opts := registry.Options{Key: "reindex:42", OnDuplicate: registry.Replace, Debounce: time.Minute}
	for _, doc := range []string{"a", "b", "c"} {
		res, err := q.EnqueueWith(ctx, "search.reindex", map[string]string{"last": doc}, opts)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("replaced:", res.Replaced)
	}
	tasks, _ := q.Claim(ctx, 10)
	fmt.Println("claimed now:", len(tasks))

	// A minute after the newest enqueue, as the daemon sees it.
	if _, err := q.Promote(ctx, time.Now().Add(time.Minute)); err != nil {
		log.Fatal(err)
	}
	tasks, _ = q.Claim(ctx, 10)
	fmt.Println("claimed later:", len(tasks), string(tasks[0].Args))
	// Output:
	// replaced: false
	// replaced: true
	// replaced: true
	// claimed now: 0
	// claimed later: 1 {"last":"c"}
}

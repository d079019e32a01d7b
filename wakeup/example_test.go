package wakeup_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/snappea/snappea/wakeup"
)

func Example() {
	tmp, err := os.MkdirTemp("", "snappea-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "wakeup")

	// The daemon watches the directory, then drains its backlog.
	w, err := wakeup.New(wakeup.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	// A producer, usually another process, after its transaction commits.
	if err := wakeup.Notify(dir); err != nil {
		log.Fatal(err)
	}

	// The daemon claims tasks after each wake.
	select {
	case <-w.Wakes():
		fmt.Println("woken: claim tasks")
	case <-time.After(5 * time.Second):
		fmt.Println("no wake")
	}
	// Output: woken: claim tasks
}

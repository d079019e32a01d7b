// Command webapp-snappea is the example's task daemon: the stock snappea
// command line (run, enqueue, status, stop, migrate, tasks) with the
// webapp's tasks registered. Run it beside webapp-web on the same data
// directory:
//
//	webapp-snappea run --dir snappea-data
package main

import (
	"os"

	"github.com/snappea/snappea/cli"
	"github.com/snappea/snappea/examples/webapp/tasks"
)

func main() {
	os.Exit(cli.Main(tasks.Registry))
}

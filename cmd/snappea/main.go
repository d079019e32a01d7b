// Command snappea is the stock snappea binary: the daemon and its command
// line with the built-in snappea.* tasks, and charts for 'snappea bench'.
// A program with its own tasks builds its daemon with cli.Main in the same
// way (see package cli).
package main

import (
	"os"

	"github.com/snappea/snappea/bench/chart"
	"github.com/snappea/snappea/cli"
)

func main() {
	os.Exit(cli.MainProgram(cli.Program{Chart: chart.Write}))
}

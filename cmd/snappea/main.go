// Command snappea is the stock snappea binary: the daemon, its control
// commands, and the built-in snappea.* tasks. A program with its own tasks
// builds the same binary around its own registry; see package cli.
package main

import (
	"os"

	"github.com/snappea/snappea/cli"
	"github.com/snappea/snappea/registry"
)

func main() {
	os.Exit(cli.Main(registry.New()))
}

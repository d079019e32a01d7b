package cli_test

import (
	"context"
	"fmt"
	"os"

	"github.com/snappea/snappea/cli"
	"github.com/snappea/snappea/registry"
)

// A daemon binary for your own tasks is one call: main would be
// os.Exit(cli.Main(tasks)). Here the same entry point lists the tasks.
func ExampleRun() {
	tasks := registry.New()
	registry.Register(tasks, "email.send", func(ctx context.Context, a struct{ To string }) error { return nil })

	code := cli.Run(context.Background(), []string{"tasks"},
		cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: func(string) string { return "" }}, tasks)
	fmt.Println("exit", code)
	// Output:
	// email.send     {"To": string}
	// snappea.echo   {"msg": string}
	// snappea.fail   {"msg": string}
	// snappea.noop   {}
	// snappea.panic  {"msg": string}
	// snappea.sleep  {"ms": number}
	// exit 0
}
